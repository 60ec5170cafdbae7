// Python binding and input validation for the multi-scale deformable attention CUDA kernels.
//
// Interface identical to the `MultiScaleDeformableAttention` extension of Deformable-DETR / Mask2Former /
// ViT-Adapter: ms_deform_attn_forward(value, spatial_shapes, level_start_index, sampling_locations,
// attention_weights, im2col_step) and ms_deform_attn_backward(..., grad_output, im2col_step).
// im2col_step is accepted for that compatibility; these kernels need no im2col buffer, so it only has to be > 0.

#include <torch/extension.h>

#include <vector>

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights);

std::vector<at::Tensor> ms_deform_attn_cuda_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                     const at::Tensor& level_start_index,
                                                     const at::Tensor& sampling_locations,
                                                     const at::Tensor& attention_weights,
                                                     const at::Tensor& grad_output);

namespace {

void check_cuda_contiguous(const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK(t.is_cuda(), "ms_deform_attn: ", name, " must be a CUDA tensor, got a tensor on ", t.device(),
              " (the CUDA kernel does not run on CPU tensors; use ms_deform_attn_pytorch there)");
  TORCH_CHECK(t.device() == device, "ms_deform_attn: ", name, " is on ", t.device(), " but value is on ", device);
  TORCH_CHECK(t.is_contiguous(), "ms_deform_attn: ", name, " must be contiguous, got strides ", t.strides());
}

void check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                  const at::Tensor& sampling_locations, const at::Tensor& attention_weights, int64_t im2col_step) {
  TORCH_CHECK(value.is_cuda(), "ms_deform_attn: value must be a CUDA tensor, got a tensor on ", value.device(),
              " (the CUDA kernel does not run on CPU tensors; use ms_deform_attn_pytorch there)");
  const at::Device device = value.device();
  check_cuda_contiguous(value, "value", device);
  check_cuda_contiguous(spatial_shapes, "spatial_shapes", device);
  check_cuda_contiguous(level_start_index, "level_start_index", device);
  check_cuda_contiguous(sampling_locations, "sampling_locations", device);
  check_cuda_contiguous(attention_weights, "attention_weights", device);

  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "ms_deform_attn: value must be float32 or float64 (cast half inputs to float32), got ", dtype);
  TORCH_CHECK(sampling_locations.scalar_type() == dtype && attention_weights.scalar_type() == dtype,
              "ms_deform_attn: value, sampling_locations and attention_weights must share one dtype, got ", dtype, ", ",
              sampling_locations.scalar_type(), ", ", attention_weights.scalar_type());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64, got ", spatial_shapes.scalar_type(),
              " and ", level_start_index.scalar_type());

  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be [N, S, M, D], got shape ", value.sizes());
  const int64_t n = value.size(0), m = value.size(2);
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be [L, 2], got shape ", spatial_shapes.sizes());
  const int64_t levels = spatial_shapes.size(0);
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == levels,
              "ms_deform_attn: level_start_index must be [L] with L = ", levels, ", got shape ",
              level_start_index.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(0) == n && sampling_locations.size(2) == m &&
                  sampling_locations.size(3) == levels && sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be [N=", n, ", Lq, M=", m, ", L=", levels,
              ", P, 2], got shape ", sampling_locations.sizes());
  const int64_t lq = sampling_locations.size(1), points = sampling_locations.size(4);
  TORCH_CHECK(attention_weights.dim() == 5 && attention_weights.size(0) == n && attention_weights.size(1) == lq &&
                  attention_weights.size(2) == m && attention_weights.size(3) == levels &&
                  attention_weights.size(4) == points,
              "ms_deform_attn: attention_weights must be [N=", n, ", Lq=", lq, ", M=", m, ", L=", levels,
              ", P=", points, "], got shape ", attention_weights.sizes());
  TORCH_CHECK(im2col_step > 0, "ms_deform_attn: im2col_step must be positive, got ", im2col_step);
}

at::Tensor ms_deform_attn_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                  const at::Tensor& attention_weights, int64_t im2col_step) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step);
  return ms_deform_attn_cuda_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
}

std::vector<at::Tensor> ms_deform_attn_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                const at::Tensor& level_start_index,
                                                const at::Tensor& sampling_locations,
                                                const at::Tensor& attention_weights, const at::Tensor& grad_output,
                                                int64_t im2col_step) {
  check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step);
  check_cuda_contiguous(grad_output, "grad_output", value.device());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "ms_deform_attn: grad_output dtype ",
              grad_output.scalar_type(), " differs from value dtype ", value.scalar_type());
  const std::vector<int64_t> expected{value.size(0), sampling_locations.size(1), value.size(2) * value.size(3)};
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), "ms_deform_attn: grad_output must have shape ",
              at::IntArrayRef(expected), ", got ", grad_output.sizes());
  return ms_deform_attn_cuda_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                                      grad_output);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-scale deformable attention CUDA kernels (dsa_core)";
  m.def("ms_deform_attn_forward", &ms_deform_attn_forward, "MSDA forward -> output [N, Lq, M*D]",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("im2col_step"));
  m.def("ms_deform_attn_backward", &ms_deform_attn_backward,
        "MSDA backward -> (grad_value, grad_sampling_locations, grad_attention_weights)", py::arg("value"),
        py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
        py::arg("attention_weights"), py::arg("grad_output"), py::arg("im2col_step"));
}
