// Multi-scale deformable attention: per-(batch, query, head) arithmetic shared by the CUDA kernels and a host
// build. The functions are __host__ __device__ so the exact code the GPU runs can also be compiled with a plain
// C++ compiler (lane 0 of a 1-lane "warp") and checked against a naive reference on machines without a GPU.
//
// Conventions (Deformable-DETR): value [N, S, M, D], spatial_shapes [L, 2] int64 (H, W), level_start_index [L] int64,
// sampling_locations [N, Lq, M, L, P, 2] in [0, 1] as (x, y), attention_weights [N, Lq, M, L, P],
// output [N, Lq, M * D]. Bilinear sampling with zero padding and the align_corners=False convention
// (pixel centres at (i + 0.5) / W, so h = y * H - 0.5), identical to F.grid_sample(align_corners=False).
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MSDA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MSDA_HOST_DEVICE inline
#endif

namespace msda {

struct Dims {
  int64_t batch, num_keys, num_heads, channels, num_queries, num_levels, num_points;
};

template <typename scalar_t>
struct BilinearCorners {
  // Element offsets of the four neighbours (top-left, top-right, bottom-left, bottom-right) relative to the
  // (batch, head) base of value, -1 for neighbours outside the map. Only valid when any_inside.
  int64_t offset[4];
  scalar_t weight[4];      // sample = sum_k weight[k] * v_k
  scalar_t dweight_dh[4];  // d weight[k] / d h
  scalar_t dweight_dw[4];  // d weight[k] / d w
  bool any_inside;
};

template <typename scalar_t>
MSDA_HOST_DEVICE BilinearCorners<scalar_t> bilinear_corners(scalar_t h, scalar_t w, int height, int width,
                                                            int64_t level_start, int64_t key_stride) {
  BilinearCorners<scalar_t> c;
  // NaN fails every comparison and so counts as outside.
  c.any_inside = h > scalar_t(-1) && w > scalar_t(-1) && h < scalar_t(height) && w < scalar_t(width);
  if (!c.any_inside) return c;  // callers read nothing else then; avoids float->int casts of huge values
  const scalar_t h_floor = floor(h);
  const scalar_t w_floor = floor(w);
  const int h_low = static_cast<int>(h_floor);
  const int w_low = static_cast<int>(w_floor);
  const scalar_t lh = h - h_floor;
  const scalar_t lw = w - w_floor;
  const scalar_t hh = scalar_t(1) - lh;
  const scalar_t hw = scalar_t(1) - lw;
  const int ys[4] = {h_low, h_low, h_low + 1, h_low + 1};
  const int xs[4] = {w_low, w_low + 1, w_low, w_low + 1};
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
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int k = 0; k < 4; ++k) {
    const bool inside = ys[k] >= 0 && ys[k] < height && xs[k] >= 0 && xs[k] < width;
    c.offset[k] = inside ? (level_start + static_cast<int64_t>(ys[k]) * width + xs[k]) * key_stride : -1;
  }
  return c;
}

// Sum over the lanes of a warp (all 32 lanes must call it); identity in the host build (one lane).
template <typename scalar_t>
MSDA_HOST_DEVICE scalar_t lane_sum(scalar_t x) {
#ifdef __CUDA_ARCH__
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) {
    x += __shfl_down_sync(0xffffffffu, x, delta);
  }
#endif
  return x;
}

template <typename scalar_t>
MSDA_HOST_DEVICE void accumulate(scalar_t* address, scalar_t v) {
#ifdef __CUDA_ARCH__
  atomicAdd(address, v);
#else
  *address += v;
#endif
}

// Output channels lane, lane + lanes, ... of one (n, q, m) triple.
template <typename scalar_t>
MSDA_HOST_DEVICE void forward_triple(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                                     const int64_t* __restrict__ level_start_index,
                                     const scalar_t* __restrict__ sampling_locations,
                                     const scalar_t* __restrict__ attention_weights, const Dims& dims, int64_t triple,
                                     int lane, int lanes, scalar_t* __restrict__ output) {
  const int64_t m = triple % dims.num_heads;
  const int64_t n = triple / (dims.num_heads * dims.num_queries);
  const int64_t key_stride = dims.num_heads * dims.channels;  // elements between consecutive keys
  const scalar_t* value_nm = value + n * dims.num_keys * key_stride + m * dims.channels;
  const int64_t point_base = triple * dims.num_levels * dims.num_points;
  scalar_t* out = output + triple * dims.channels;

  for (int64_t d = lane; d < dims.channels; d += lanes) {
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
        if (!c.any_inside) continue;
        scalar_t sample = 0;
        for (int k = 0; k < 4; ++k) {
          if (c.offset[k] >= 0) sample += c.weight[k] * value_nm[c.offset[k] + d];
        }
        acc += attention_weights[idx] * sample;
      }
    }
    out[d] = acc;
  }
}

// Gradients of one (n, q, m) triple. Each lane handles channels lane, lane + lanes, ...; the sums over channels
// (gradients w.r.t. location and weight) are reduced across the lanes and written by lane 0, so they need no
// atomics. grad_value must be zero-initialised; it is accumulated atomically (several queries hit one key).
template <typename scalar_t>
MSDA_HOST_DEVICE void backward_triple(const scalar_t* __restrict__ value, const int64_t* __restrict__ spatial_shapes,
                                      const int64_t* __restrict__ level_start_index,
                                      const scalar_t* __restrict__ sampling_locations,
                                      const scalar_t* __restrict__ attention_weights,
                                      const scalar_t* __restrict__ grad_output, const Dims& dims, int64_t triple,
                                      int lane, int lanes, scalar_t* __restrict__ grad_value,
                                      scalar_t* __restrict__ grad_sampling_locations,
                                      scalar_t* __restrict__ grad_attention_weights) {
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
      // Per-lane partial sums; the control flow up to lane_sum is uniform so every lane joins the shuffles.
      scalar_t grad_attn = 0, grad_h = 0, grad_w = 0;
      if (c.any_inside) {
        for (int64_t d = lane; d < dims.channels; d += lanes) {
          const scalar_t g = grad_out[d];
          const scalar_t g_attn = g * attn;
          scalar_t sample = 0, dsample_dh = 0, dsample_dw = 0;
          for (int k = 0; k < 4; ++k) {
            if (c.offset[k] < 0) continue;
            const scalar_t v = value_nm[c.offset[k] + d];
            sample += c.weight[k] * v;
            dsample_dh += c.dweight_dh[k] * v;
            dsample_dw += c.dweight_dw[k] * v;
            accumulate(grad_value_nm + c.offset[k] + d, g_attn * c.weight[k]);
          }
          grad_attn += g * sample;
          grad_h += g_attn * dsample_dh;
          grad_w += g_attn * dsample_dw;
        }
      }
      grad_attn = lane_sum(grad_attn);
      grad_h = lane_sum(grad_h);
      grad_w = lane_sum(grad_w);
      if (lane == 0) {
        grad_attention_weights[idx] = grad_attn;
        // h = y * H - 0.5 and w = x * W - 0.5.
        grad_sampling_locations[2 * idx] = grad_w * width;
        grad_sampling_locations[2 * idx + 1] = grad_h * height;
      }
    }
  }
}

}  // namespace msda
