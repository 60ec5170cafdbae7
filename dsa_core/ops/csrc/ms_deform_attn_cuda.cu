// Multi-scale deformable attention: CUDA forward and backward kernels (arithmetic in ms_deform_attn_kernels.cuh).
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

#include <vector>

#include "ms_deform_attn_kernels.cuh"

namespace {

using msda::Dims;

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;

template <typename scalar_t>
__global__ void ms_deform_attn_forward_kernel(const scalar_t* __restrict__ value,
                                              const int64_t* __restrict__ spatial_shapes,
                                              const int64_t* __restrict__ level_start_index,
                                              const scalar_t* __restrict__ sampling_locations,
                                              const scalar_t* __restrict__ attention_weights, Dims dims,
                                              scalar_t* __restrict__ output) {
  const int64_t triple = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.y;  // (n, q, m)
  if (triple >= dims.batch * dims.num_queries * dims.num_heads) return;  // whole warp exits together
  msda::forward_triple(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, dims, triple,
                       static_cast<int>(threadIdx.x), kWarpSize, output);
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
  msda::backward_triple(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output,
                        dims, triple, static_cast<int>(threadIdx.x), kWarpSize, grad_value, grad_sampling_locations,
                        grad_attention_weights);
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
