// Host build of the CUDA kernels' arithmetic (ms_deform_attn_kernels.cuh) with a C ABI, for tests on machines
// without a GPU: the per-(batch, query, head) functions run as lane 0 of a one-lane warp, so index math,
// bilinear weights and gradient formulas are exactly those the GPU executes. Not used at runtime.
// Build: g++ -O2 -shared -fPIC -std=c++17 ms_deform_attn_host.cpp -o libmsda_host.so

#include "ms_deform_attn_kernels.cuh"

namespace {

template <typename scalar_t>
void forward(const scalar_t* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
             const scalar_t* sampling_locations, const scalar_t* attention_weights, const int64_t* sizes,
             scalar_t* output) {
  const msda::Dims dims{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  const int64_t triples = dims.batch * dims.num_queries * dims.num_heads;
  for (int64_t t = 0; t < triples; ++t) {
    msda::forward_triple(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, dims, t, 0,
                         1, output);
  }
}

template <typename scalar_t>
void backward(const scalar_t* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
              const scalar_t* sampling_locations, const scalar_t* attention_weights, const scalar_t* grad_output,
              const int64_t* sizes, scalar_t* grad_value, scalar_t* grad_sampling_locations,
              scalar_t* grad_attention_weights) {
  const msda::Dims dims{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  const int64_t triples = dims.batch * dims.num_queries * dims.num_heads;
  for (int64_t t = 0; t < triples; ++t) {
    msda::backward_triple(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output,
                          dims, t, 0, 1, grad_value, grad_sampling_locations, grad_attention_weights);
  }
}

}  // namespace

// sizes = {N, S, M, D, Lq, L, P}; all arrays contiguous; grad_value must be zero-filled by the caller.
extern "C" {

void msda_host_forward_f64(const double* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
                           const double* sampling_locations, const double* attention_weights, const int64_t* sizes,
                           double* output) {
  forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, sizes, output);
}

void msda_host_forward_f32(const float* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
                           const float* sampling_locations, const float* attention_weights, const int64_t* sizes,
                           float* output) {
  forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, sizes, output);
}

void msda_host_backward_f64(const double* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
                            const double* sampling_locations, const double* attention_weights,
                            const double* grad_output, const int64_t* sizes, double* grad_value,
                            double* grad_sampling_locations, double* grad_attention_weights) {
  backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output, sizes,
           grad_value, grad_sampling_locations, grad_attention_weights);
}

void msda_host_backward_f32(const float* value, const int64_t* spatial_shapes, const int64_t* level_start_index,
                            const float* sampling_locations, const float* attention_weights, const float* grad_output,
                            const int64_t* sizes, float* grad_value, float* grad_sampling_locations,
                            float* grad_attention_weights) {
  backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output, sizes,
           grad_value, grad_sampling_locations, grad_attention_weights);
}

}  // extern "C"
