"""MSDeformAttn as TensorRT's OSS plugin ``MultiscaleDeformableAttnPlugin_TRT`` (one CUDA kernel per module).

The plugin graph is an extra, TensorRT-only variant of an exported graph: ONNX Runtime cannot run the custom op,
so the standard graphs (GridSample decomposition) stay the default and the fallback. onnx-tensorrt imports an
unknown op by looking its name up in the plugin registry (libnvinfer_plugin); the node carries no attributes.
Contract (TensorRT OSS plugin/multiscaleDeformableAttnPlugin, as NVIDIA TAO exports it, domain ``TRT``):
    inputs   value [N, S, M, D] float, spatial_shapes [L, 2] int32 (H, W), level_start_index [L] int32,
             sampling_locations [N, Lq, M, L, P, 2] float in [0, 1] (x, y), attention_weights [N, Lq, M, L, P] float
    output   [N, Lq, M, D] (reshaped to [N, Lq, M*D] after the node)
The shapes are int32 because the parser feeds this plugin only INT32 (onnx-tensorrt ``onlySupportInt32TRTPlugin``).
"""
from __future__ import annotations

import functools
from typing import Any

PLUGIN_DOMAIN = "TRT"
PLUGIN_OP = "MultiscaleDeformableAttnPlugin_TRT"
PLUGIN_VERSION = "1"
#: How graph_op_types names the node (domain::op); the only non-standard op a plugin graph may hold.
PLUGIN_OP_TYPE = f"{PLUGIN_DOMAIN}::{PLUGIN_OP}"
#: File suffix of a graph's plugin variant in the model dir: ``head.msda_plugin.onnx`` next to ``head.onnx``.
MSDA_PLUGIN_SUFFIX = ".msda_plugin.onnx"
#: The TensorRT backend's ``msda`` option: "auto" = the plugin graph when exported and the plugin is registered,
#: else the decomposition; "plugin" = the plugin graph or an error; "decomposition" = the standard graph.
MSDA_CHOICES = ("auto", "plugin", "decomposition")


@functools.cache
def _plugin_op() -> Any:
    """The autograd Function (defined on first use: this module stays importable without torch for the CLI)."""
    import torch

    class _PluginOp(torch.autograd.Function):
        """Eager: the reference decomposition (so tracing sees real values); ONNX: one plugin node."""

        @staticmethod
        def forward(ctx: Any, value: Any, spatial_shapes: Any, level_start_index: Any, sampling_locations: Any,
                    attention_weights: Any, out_shape: tuple[int, ...]) -> Any:
            from dsa_core.ops.ms_deform_attn import ms_deform_attn_pytorch

            return ms_deform_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights).view(out_shape)

        @staticmethod
        def symbolic(g: Any, value: Any, spatial_shapes: Any, level_start_index: Any, sampling_locations: Any,
                     attention_weights: Any, out_shape: tuple[int, ...]) -> Any:
            out = g.op(f"{PLUGIN_DOMAIN}::{PLUGIN_OP}", value, spatial_shapes, level_start_index, sampling_locations,
                       attention_weights)
            out.setType(value.type().with_sizes(list(out_shape)))  # static shapes: the tracer's ints
            return out

    return _PluginOp


def ms_deform_attn_trt_plugin(value: "torch.Tensor", shapes: list[tuple[int, int]], starts: tuple[int, ...],
                              sampling_locations: "torch.Tensor", attention_weights: "torch.Tensor") -> "torch.Tensor":
    """[N, Lq, M*D] through the plugin node (used by the ops dispatcher while exporting the plugin variant)."""
    import torch

    n, _, m, d = value.shape
    spatial = torch.tensor(shapes, dtype=torch.int32)
    level_start = torch.tensor(starts, dtype=torch.int32)
    lq = int(sampling_locations.shape[1])
    out = _plugin_op().apply(value, spatial, level_start, sampling_locations, attention_weights, (int(n), lq, int(m), int(d)))
    return out.reshape(n, lq, m * d)


def plugin_availability(trt: Any | None) -> tuple[bool, str]:
    """(available, reason): the plugin creator must be in TensorRT's registry after loading libnvinfer_plugin."""
    if trt is None:
        return False, "unavailable: tensorrt not importable"
    try:
        init = getattr(trt, "init_libnvinfer_plugins", None)
        if init is not None:
            init(trt.Logger(trt.Logger.WARNING), "")
        registry = trt.get_plugin_registry()
        creator = registry.get_creator(PLUGIN_OP, PLUGIN_VERSION, "") if hasattr(registry, "get_creator") \
            else registry.get_plugin_creator(PLUGIN_OP, PLUGIN_VERSION, "")
    except Exception as exc:  # libnvinfer_plugin missing or broken
        return False, f"unavailable: plugin registry error {type(exc).__name__}: {exc}"
    if creator is None:
        return False, f"unavailable: {PLUGIN_OP} v{PLUGIN_VERSION} not registered (libnvinfer_plugin without it)"
    return True, f"{PLUGIN_OP} v{PLUGIN_VERSION} registered (TensorRT {trt.__version__})"


def choose_onnx_graph(files: dict[str, Any], graph: str, msda: str, trt: Any | None) -> tuple[str, str]:
    """(ONNX file name in the manifest, why) for engine ``graph`` ("backbone", "head", "fused")."""
    if msda not in MSDA_CHOICES:
        raise ValueError(f"msda must be one of {MSDA_CHOICES}, got {msda!r}")
    standard, variant = f"{graph}.onnx", graph + MSDA_PLUGIN_SUFFIX
    if msda == "decomposition":
        return standard, "msda=decomposition"
    if variant not in files:
        if msda == "plugin" and graph != "backbone":
            raise ValueError(f"msda=plugin but the model dir has no {variant} (export with --msda-plugin)")
        return standard, f"no {variant} in the model dir: decomposition"
    available, reason = plugin_availability(trt)
    if not available:
        if msda == "plugin":
            raise RuntimeError(f"msda=plugin but {reason}")
        return standard, f"{reason}: decomposition"
    return variant, reason
