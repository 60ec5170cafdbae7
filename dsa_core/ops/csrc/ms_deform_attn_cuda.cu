// Multi-scale deformable attention: CUDA forward and backward kernels.
//
// Conventions (Deformable-DETR): value [N, S, M, D], spatial_shapes [L, 2] int64 (H, W), level_start_index [L] int64,
// sampling_locations [N, Lq, M, L, P, 2] in [0, 1] as (x, y), attention_weights [N, Lq, M, L, P],
// output [N, Lq, M * D]. Bilinear sampling with zero padding and the align_corners=False convention
// (pixel centres at (i + 0.5) / W, so h = y * H - 0.5), identical to F.grid_sample(align_corners=False).
//
// Work layout: one warp per (batch, query, head) triple; the 32 lanes stride over the D channels. Value reads are
// coalesced over channels (D is innermost in memory), the per-point location and weight loads are warp-wide
// broadcasts, and in the backward pass the gradients w.r.t. locations and weights (sums over channels) are
// reduced with warp shuffles, so only grad_value needs atomics. No im2col buffer is needed, so the whole batch
// runs in one launch.

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;

struct Dims {
  int64_t batch, num_keys, num_heads, channels, num_queries, num_levels, num_points;
};

template <typename scalar_t>
struct BilinearCorners {
  // Flat offsets (in elements) of the four neighbours relative to the head/channel base, -1 when outside the map.
  int64_t offset[4];
  scalar_t weight[4];
  // d(sample)/d(h) and d(sample)/d(w) per corner value: sample = sum_k weight[k] * v_k.
  scalar_t dweight_dh[4];
  scalar_t dweight_dw[4];
  bool any_inside;
};

template <typename scalar_t>
__device__ __forceinline__ BilinearCorners<scalar_t> bilinear_corners(scalar_t h, scalar_t w, int height, int width,
                                                                      int64_t level_start, int64_t key_stride) {
  BilinearCorners<scalar_t> c;
  // NaN fails every comparison and so counts as outside.
  c.any_inside = h > scalar_t(-1) && w > scalar_t(-1) && h < scalar_t(height) && w < scalar_t(width);
  if (!c.any_inside) return c;  // callers read nothing else then; avoids float->int casts of huge values
  const scalar_t h_floor = floor(h);
  const scalar_t w_floor = floor(w);
  const int h_low = static_cast<int>(h_floor);
  const int w_low = static_cast<int>(w_floor);
  const int h_high = h_low + 1;
  const int w_high = w_low + 1;
  const scalar_t lh = h - h_floor;
  const scalar_t lw = w - w_floor;
  const scalar_t hh = scalar_t(1) - lh;
  const scalar_t hw = scalar_t(1) - lw;
  const int ys[4] = {h_low, h_low, h_high, h_high};
  const int xs[4] = {w_low, w_high, w_low, w_high};
  c.weight[0] = hh * hw;
  c.weight[1] = hh * lw;
  c.weight[2] = lh * hw;
  c.weight[3] = lh * lw;
  c.dweight_dh[0] = -hw;
  c.dweight_dh[1] = -lw;
  c.dweight_dh[2] = hw;
  c.dweight_dh[3] = lw;
  c.dweight_dw[0] = -hh;
  c.dweight_dw[1] = hh;
  c.dweight_dw[2] = -lh;
  c.dweight_dw[3] = lh;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const bool inside = ys[k] >= 0 && ys[k] < height && xs[k] >= 0 && xs[k] < width;
    c.offset[k] = inside ? (level_start + static_cast<int64_t>(ys[k]) * width + xs[k]) * key_stride : -1;
  }
  return c;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t x) {
#pragma unroll
  for (int delta = kWarpSize / 2; delta > 0; delta /= 2) {
    x += __shfl_down_sync(0xffffffffu, x, delta);
  }
  return x;
}

template <typename scalar_t>
__global__ void ms_deform_attn_forward_kernel(const scalar_t* __restrict__ value,
                                              const int64_t* __restrict__ spatial_shapes,
                                              const int64_t* __restrict__ level_start_index,
                                              const scalar_t* __restrict__ sampling_locations,
                                              const scalar_t* __restrict__ attention_weights, Dims dims,
                                              scalar_t* __restrict__ output) {
  const int64_t triple = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;  // (n, q, m)
  if (triple >= dims.batch * dims.num_queries * dims.num_heads) return;  // whole warp exits together
  const int lane = threadIdx.x;
  const int64_t m = triple % dims.num_heads;
  const int64_t n = triple / (dims.num_heads * dims.num_queries);
  const int64_t key_stride = dims.num_heads * dims.channels;  // elements between consecutive keys
  const scalar_t* value_nm = value + n * dims.num_keys * key_stride + m * dims.channels;
  const int64_t point_base = triple * dims.num_levels * dims.num_points;
  scalar_t* out = output + triple * dims.channels;

  for (int64_t d0 = 0; d0 < dims.channels; d0 += kWarpSize) {
    const int64_t d = d0 + lane;
    const bool active = d < dims.channels;
    scalar_t acc = 0;
    for (int64_t l = 0; l < dims.num_levels; ++l) {
      const int height = static_cast<int>(spatial_shapes[2 * l]);
      const int width = static_cast<int>(spatial_shapes[2 * l + 1]);
      const int64_t level_start = level_start_index[l];
      for (int64_t p = 0; p < dims.num_points; ++p) {
        const int64_t idx = point_base + l * dims.num_points + p;
        const scalar_t h = sampling_locations[2 * idx + 1] * height - scalar_t(0.5);
        const scalar_t w = sampling_locations[2 * idx] * width - scalar_t(0.5);
        const BilinearCorners<scalar_t> c = bilinear_corners(h, w, height, width, level_start, key_stride);
        if (!c.any_inside || !active) continue;
        scalar_t sample = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.offset[k] >= 0) sample += c.weight[k] * value_nm[c.offset[k] + d];
        }
        acc += attention_weights[idx] * sample;
      }
    }
    if (active) out[d] = acc;
  }
}

template <typename scalar_t>
__global__ void ms_deform_attn_backward_kernel(const scalar_t* __restrict__ value,
                                               const int64_t* __restrict__ spatial_shapes,
                                               const int64_t* __restrict__ level_start_index,
                                               const scalar_t* __restrict__ sampling_locations,
                                               const scalar_t* __restrict__ attention_weights,
                                               const scalar_t* __restrict__ grad_output, Dims dims,
                                               scalar_t* __restrict__ grad_value,
                                               scalar_t* __restrict__ grad_sampling_locations,
                                               scalar_t* __restrict__ grad_attention_weights) {
  const int64_t triple = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;  // (n, q, m)
  if (triple >= dims.batch * dims.num_queries * dims.num_heads) return;  // whole warp exits together
  const int lane = threadIdx.x;
  const int64_t m = triple % dims.num_heads;
  const int64_t n = triple / (dims.num_heads * dims.num_queries);
  const int64_t key_stride = dims.num_heads * dims.channels;
  const int64_t value_base = n * dims.num_keys * key_stride + m * dims.channels;
  const scalar_t* value_nm = value + value_base;
  scalar_t* grad_value_nm = grad_value + value_base;
  const int64_t point_base = triple * dims.num_levels * dims.num_points;
  const scalar_t* grad_out = grad_output + triple * dims.channels;

  for (int64_t l = 0; l < dims.num_levels; ++l) {
    const int height = static_cast<int>(spatial_shapes[2 * l]);
    const int width = static_cast<int>(spatial_shapes[2 * l + 1]);
    const int64_t level_start = level_start_index[l];
    for (int64_t p = 0; p < dims.num_points; ++p) {
      const int64_t idx = point_base + l * dims.num_points + p;
      const scalar_t h = sampling_locations[2 * idx + 1] * height - scalar_t(0.5);
      const scalar_t w = sampling_locations[2 * idx] * width - scalar_t(0.5);
      const scalar_t attn = attention_weights[idx];
      const BilinearCorners<scalar_t> c = bilinear_corners(h, w, height, width, level_start, key_stride);
      // Per-lane partial sums over this lane's channels; uniform control flow keeps every lane in the shuffles.
      scalar_t grad_attn = 0, grad_h = 0, grad_w = 0;
      if (c.any_inside) {
        for (int64_t d = lane; d < dims.channels; d += kWarpSize) {
          const scalar_t g = grad_out[d];
          const scalar_t g_attn = g * attn;
          scalar_t sample = 0, dsample_dh = 0, dsample_dw = 0;
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (c.offset[k] < 0) continue;
            const scalar_t v = value_nm[c.offset[k] + d];
            sample += c.weight[k] * v;
            dsample_dh += c.dweight_dh[k] * v;
            dsample_dw += c.dweight_dw[k] * v;
            atomicAdd(grad_value_nm + c.offset[k] + d, g_attn * c.weight[k]);
          }
          grad_attn += g * sample;
          grad_h += g_attn * dsample_dh;
          grad_w += g_attn * dsample_dw;
        }
      }
      grad_attn = warp_sum(grad_attn);
      grad_h = warp_sum(grad_h);
      grad_w = warp_sum(grad_w);
      if (lane == 0) {
        grad_attention_weights[idx] = grad_attn;
        // h = y * H - 0.5 and w = x * W - 0.5.
        grad_sampling_locations[2 * idx] = grad_w * width;
        grad_sampling_locations[2 * idx + 1] = grad_h * height;
      }
    }
  }
}

Dims dims_of(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& sampling_locations) {
  return Dims{value.size(0),
              value.size(1),
              value.size(2),
              value.size(3),
              sampling_locations.size(1),
              spatial_shapes.size(0),
              sampling_locations.size(4)};
}

dim3 grid_for(const Dims& dims) {
  const int64_t triples = dims.batch * dims.num_queries * dims.num_heads;
  return dim3(static_cast<unsigned int>((triples + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard device_guard(value.device());
  const Dims dims = dims_of(value, spatial_shapes, sampling_locations);
  auto output = at::empty({dims.batch, dims.num_queries, dims.num_heads * dims.channels}, value.options());
  if (output.numel() == 0) return output;
  const dim3 block(kWarpSize, kWarpsPerBlock);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward", [&] {
    ms_deform_attn_forward_kernel<scalar_t><<<grid_for(dims), block, 0, stream>>>(
        value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr<scalar_t>(), attention_weights.data_ptr<scalar_t>(), dims,
        output.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::vector<at::Tensor> ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_locations,
                                                     const at::Tensor& attention_weights,
                                                     const at::Tensor& grad_output) {
  const c10::cuda::CUDAGuard device_guard(value.device());
  const Dims dims = dims_of(value, spatial_shapes, sampling_locations);
  auto grad_value = at::zeros_like(value);
  auto grad_sampling_locations = at::zeros_like(sampling_locations);
  auto grad_attention_weights = at::zeros_like(attention_weights);
  if (grad_output.numel() == 0) return {grad_value, grad_sampling_locations, grad_attention_weights};
  const dim3 block(kWarpSize, kWarpsPerBlock);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward", [&] {
    ms_deform_attn_backward_kernel<scalar_t><<<grid_for(dims), block, 0, stream>>>(
        value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(), level_start_index.data_ptr<int64_t>(),
        sampling_locations.data_ptr<scalar_t>(), attention_weights.data_ptr<scalar_t>(),
        grad_output.data_ptr<scalar_t>(), dims, grad_value.data_ptr<scalar_t>(),
        grad_sampling_locations.data_ptr<scalar_t>(), grad_attention_weights.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_value, grad_sampling_locations, grad_attention_weights};
}
