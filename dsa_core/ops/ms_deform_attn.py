"""Multi-scale deformable attention (Deformable-DETR conventions).

The pure-PyTorch ``grid_sample`` formulation is the reference implementation and the path
that exports to ONNX (GridSample, opset >= 16). CUDA tensors are dispatched to the compiled kernel in
``csrc/`` when it is available (see ``dsa_core.ops.cuda_ext``); both must agree.

On CPU, ``CPU_IMPLEMENTATION`` picks the formulation: "grid_sample" (the reference), "gather" (one pass
over all levels) or "cpp" (the default: the C++ kernel of ``dsa_core.ops.cpu_ext``, forward and backward; built just in time,
falling back to grid_sample with one log line when the build fails). The environment variable ``DSA_MSDA_CPU``
sets it for a run without editing code, e.g. ``DSA_MSDA_CPU=cpp dsa train ...``. The kernel is never used while
exporting (``EXPORT_IMPLEMENTATION`` is traced); torch.compile keeps it in the graph as the custom op
``dsa::ms_deform_attn_cpu``.

Shapes:
    value               [N, S, M, D]   S = sum_l H_l * W_l, M heads, D channels per head
    spatial_shapes      [L, 2]         (H_l, W_l): a tuple of Python int pairs (what the model passes) or int64
    level_start_index   [L]            offset of level l in S: a tuple of ints or int64
Python ints keep the shapes static: ``torch.compile`` traces the model as one graph (a tensor's ``tolist()`` broke
the graph at every call, 22 times in dsa_nano, and made the compiled model slower than eager).
    sampling_locations  [N, Lq, M, L, P, 2]  in [0, 1], (x, y); outside means zero padding
    attention_weights   [N, Lq, M, L, P]
    output              [N, Lq, M * D]
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn


Shapes = "tuple[tuple[int, int], ...] | list[tuple[int, int]] | torch.Tensor"


def static_shapes(spatial_shapes: Shapes) -> list[tuple[int, int]]:
    """(H_l, W_l) as Python ints; a tensor is read back once (a graph break under torch.compile)."""
    pairs = spatial_shapes.tolist() if torch.is_tensor(spatial_shapes) else spatial_shapes
    return [(int(h), int(w)) for h, w in pairs]


def level_starts(shapes: list[tuple[int, int]]) -> tuple[int, ...]:
    """Offset of each level in the flattened value (the level start index as Python ints)."""
    starts, total = [], 0
    for h, w in shapes:
        starts.append(total)
        total += h * w
    return tuple(starts)


def ms_deform_attn_pytorch(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference path: bilinear sampling per level with ``F.grid_sample`` (zeros padding, align_corners=False).

    The attention-weighted sum runs per level as a batched matmul accumulated over levels: stacking every level's
    samples first and multiplying elementwise moved a [N*M, D, Lq, L*P] tensor through memory twice and cost 2.3x
    the time of this form on CPU (forward + backward, dsa_nano shapes).
    """
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    shapes = static_shapes(spatial_shapes)
    value_list = value.split([h * w for h, w in shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    # [N, Lq, M, L, P] -> [N*M, Lq, L, P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, lq, n_levels, n_points)
    out = None
    for lid, (h, w) in enumerate(shapes):
        # [N, HW, M, D] -> [N*M, D, H, W]
        value_l = value_list[lid].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid_l = sampling_grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        sampled = F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        # [N*M, Lq, D, P] @ [N*M, Lq, P, 1] -> [N*M, Lq, D]
        level = torch.matmul(sampled.transpose(1, 2), weights[:, :, lid, :, None]).squeeze(-1)
        out = level if out is None else out + level
    return out.view(n, m, lq, d).permute(0, 2, 1, 3).reshape(n, lq, m * d)


CPU_IMPLEMENTATIONS = ("grid_sample", "gather", "cpp")
#: cpp: a stage-1 training step 23 % faster and eager inference 487 -> 300 ms at 256x512, equal to float rounding
#: (results/bench_msda_cpu_kernel.md); grid_sample takes over wherever the kernel cannot run.
DEFAULT_CPU_IMPLEMENTATION = "cpp"


def _cpu_implementation_from_env() -> str:
    """``DSA_MSDA_CPU`` if set (an unknown value is an error, so a benchmark never measures the wrong path)."""
    value = os.environ.get("DSA_MSDA_CPU", "").strip() or DEFAULT_CPU_IMPLEMENTATION
    if value not in CPU_IMPLEMENTATIONS:
        raise ValueError(f"DSA_MSDA_CPU={value!r}: expected one of {', '.join(CPU_IMPLEMENTATIONS)}")
    return value


#: The formulation off CUDA: "grid_sample" (per-level GridSample, the reference), "gather" (one pass over all
#: levels; eager PyTorch on CPU: 1.6-2x slower, results/bench_msda.md) or "cpp" (the C++ kernel,
#: results/bench_msda_cpu_kernel.md). DEFAULT_CPU_IMPLEMENTATION unless ``DSA_MSDA_CPU`` says otherwise.
CPU_IMPLEMENTATION = _cpu_implementation_from_env()
#: The formulation ONNX export traces (what ONNX Runtime / TensorRT run); chosen by ORT profiles, results/bench_msda.md.
#: "trt_plugin" (set only while dsa_core.export writes the TensorRT plugin variant) emits one plugin node per module.
EXPORT_IMPLEMENTATION = "grid_sample"


def ms_deform_attn_gather(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """One pass over all levels: flat bilinear corner indices into the one value tensor and their weights
    (bilinear x attention, zero for corners outside the map) computed once, then one Gather and one batched MatMul
    per head (in ONNX: Gather + MatMul, no GridSample, no per-level Concat/Transpose). Same result as
    ``ms_deform_attn_pytorch`` (zeros padding, align_corners=False) up to float rounding.

    Validity is tested per axis (x0, x0+1, y0, y0+1: 8 compares, not 16) and folded into the axis weights; an
    outside corner's index is clamped into its level (its weight is zero), so no select is needed.
    """
    n, s, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    shapes = static_shapes(spatial_shapes)
    dtype, device = sampling_locations.dtype, value.device
    k = n_levels * n_points * 4
    # heads first, on the small inputs: [N, M, Lq, L, P, 2] and [N, M, Lq, L, P]
    locations = sampling_locations.transpose(1, 2)
    attention = attention_weights.transpose(1, 2)
    sizes = locations.new_tensor([(w, h) for h, w in shapes])  # [L, 2] (W, H)
    pixel = locations * sizes[:, None, :] - 0.5
    corner0 = pixel.floor()
    frac = pixel - corner0
    lo = corner0.long()  # [..., L, P, 2]: (x0, y0)
    limit = torch.tensor([(w, h) for h, w in shapes], dtype=torch.long, device=device)[:, None, :]  # [L, 1, 2]
    inside0 = ((lo >= 0) & (lo < limit)).to(dtype)
    inside1 = ((lo >= -1) & (lo < limit - 1)).to(dtype)
    w0, w1 = (1 - frac) * inside0, frac * inside1  # per-axis weights of corner 0 / 1, zero outside
    c0 = torch.minimum(lo.clamp(min=0), limit - 1)
    c1 = torch.minimum((lo + 1).clamp(min=0), limit - 1)
    starts = torch.tensor(level_starts(shapes), dtype=torch.long, device=device)[:, None]  # [L, 1]
    width = limit[..., 0]
    row0, row1 = starts + c0[..., 1] * width, starts + c1[..., 1] * width
    index = torch.stack([row0 + c0[..., 0], row0 + c1[..., 0], row1 + c0[..., 0], row1 + c1[..., 0]], -1)
    wy0, wy1 = w0[..., 1] * attention, w1[..., 1] * attention
    weight = torch.stack([wy0 * w0[..., 0], wy0 * w1[..., 0], wy1 * w0[..., 0], wy1 * w1[..., 0]], -1)
    # one value table of all levels, heads as rows: [N*M*S, D]; row of (n, m, s) = (n*M + m)*S + s
    table = value.permute(0, 2, 1, 3).reshape(n * m * s, d)
    base = (torch.arange(n * m, device=device) * s).view(n, m, 1)
    sampled = table.index_select(0, (index.reshape(n, m, lq * k) + base).reshape(-1)).view(n * m, lq, k, d)
    out = torch.matmul(weight.reshape(n * m, lq, 1, k), sampled).view(n, m, lq, d)  # [N*M, Lq, 1, K] @ [N*M, Lq, K, D]
    return out.permute(0, 2, 1, 3).reshape(n, lq, m * d)


def _cpu_kernel_applies(value: torch.Tensor, locations: torch.Tensor, weights: torch.Tensor) -> bool:
    """The C++ kernel takes float32/float64 CPU tensors of one dtype (eager, or inside a compiled graph as the
    ``dsa::ms_deform_attn_cpu`` custom op)."""
    return (
        value.device.type == "cpu"
        and value.dtype in (torch.float32, torch.float64)
        and locations.dtype == value.dtype
        and weights.dtype == value.dtype
    )


def prepare_cpu_kernel() -> bool:
    """Build or load the CPU kernel now when it is the selected CPU implementation; True when it is ready. Call it
    before torch.compile: a graph compiled while the kernel is not loaded keeps the grid_sample path."""
    if CPU_IMPLEMENTATION != "cpp":
        return False
    from dsa_core.ops import cpu_ext

    return cpu_ext.cpu_function() is not None


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: Shapes,
    level_start_index: "tuple[int, ...] | torch.Tensor",
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    im2col_step: int = 64,
) -> torch.Tensor:
    """Dispatch: CUDA kernel for CUDA tensors when the extension is available, else ``CPU_IMPLEMENTATION``
    (``EXPORT_IMPLEMENTATION`` while tracing for export); "cpp" falls back to grid_sample where the CPU kernel does
    not apply (other dtypes, torch.compile) or did not build."""
    if value.is_cuda and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        from dsa_core.ops import cuda_ext

        fn = cuda_ext.cuda_function()
        if fn is not None:
            if not torch.is_tensor(spatial_shapes):  # the kernel reads both from device memory
                spatial_shapes = torch.as_tensor(static_shapes(spatial_shapes), dtype=torch.long, device=value.device)
            if not torch.is_tensor(level_start_index):
                level_start_index = torch.as_tensor(level_start_index, dtype=torch.long, device=value.device)
            return fn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step)
    exporting = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
    implementation = EXPORT_IMPLEMENTATION if exporting else CPU_IMPLEMENTATION
    if implementation == "trt_plugin":
        from dsa_core.export.trt_msda_plugin import ms_deform_attn_trt_plugin

        shapes = static_shapes(spatial_shapes)
        return ms_deform_attn_trt_plugin(value, shapes, level_starts(shapes), sampling_locations, attention_weights)
    if implementation == "gather":
        return ms_deform_attn_gather(value, spatial_shapes, sampling_locations, attention_weights)
    if implementation == "cpp" and _cpu_kernel_applies(value, sampling_locations, attention_weights):
        from dsa_core.ops import cpu_ext

        fn = cpu_ext.loaded_function() if torch.compiler.is_compiling() else cpu_ext.cpu_function()
        if fn is not None:
            return fn(value, static_shapes(spatial_shapes), sampling_locations, attention_weights)
    return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable-DETR / Mask2Former / ViT-Adapter ``MSDeformAttn``).

    ``ratio`` scales the value projection width (ViT-Adapter's ``deform_ratio``).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4, ratio: float = 1.0):
        super().__init__()
        value_dim = int(d_model * ratio)
        if value_dim % n_heads != 0:
            raise ValueError(f"value dim {value_dim} (d_model {d_model} x ratio {ratio}) must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points, self.ratio = d_model, n_levels, n_heads, n_points, ratio
        self.im2col_step = 64
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self.sampling_offsets.weight.is_meta:
            return
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: Shapes,
        input_level_start_index: "tuple[int, ...] | torch.Tensor",
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query [N, Lq, C]; reference_points [N, Lq, L, 2] in [0,1] (x, y); input_flatten [N, S, C] -> [N, Lq, C]."""
        n, lq, _ = query.shape
        _, s, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, -1)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] != 2:
            raise ValueError(f"reference_points last dim must be 2 (x, y), got {reference_points.shape[-1]}")
        if torch.is_tensor(input_spatial_shapes):
            normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1).to(query.dtype)
        else:
            normalizer = query.new_tensor([(w, h) for h, w in input_spatial_shapes])
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        out = ms_deform_attn(value, input_spatial_shapes, input_level_start_index, locations, weights, self.im2col_step)
        return self.output_proj(out)
