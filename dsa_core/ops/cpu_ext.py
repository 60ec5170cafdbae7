"""Just-in-time build and autograd wrapper of the multi-scale deformable attention CPU kernel
(``csrc/ms_deform_attn_cpu.cpp``).

Why a kernel: in CPU training the grid_sample path spent ~40 % of the forward and a large, slow part of the
backward in the deformable attention (per-level GridSample on [N*M, D, H, W] planes, whose CPU backward is slow).
The kernel reads each bilinear corner as one contiguous vector of D channels and computes all three gradients in
one pass. Built with ``torch.utils.cpp_extension.load`` on first use (g++ only, no CUDA) and cached on disk like
the CUDA extension (``cuda_ext.extensions_root``). ``cpu_function()`` is what the dispatcher uses: ``None`` (reason
logged once) when the build fails, so callers fall back to the grid_sample path.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from dsa_core.ops.cuda_ext import extensions_root  # one cache directory for both extensions

logger = logging.getLogger(__name__)

EXTENSION_NAME = "dsa_ms_deform_attn_cpu"
SOURCES = (Path(__file__).resolve().parent / "csrc" / "ms_deform_attn_cpu.cpp",)
# Portable flags: the build cache may be shared between machines, so no -march=native. -fopenmp-simd honours the
# kernel's `omp simd` reductions (vectorised channel sums) without linking OpenMP.
CFLAGS = ("-O3", "-fopenmp-simd")

_load_lock = threading.Lock()
_extension: ModuleType | None = None
_cpu_function_state: dict[str, object] = {}


def build_directory() -> Path:
    """Cache directory keyed by torch version and flags (cpp_extension itself rebuilds when the source changes)."""
    key = hashlib.sha1(f"{torch.__version__}|{' '.join(CFLAGS)}".encode()).hexdigest()[:10]
    return extensions_root() / f"{EXTENSION_NAME}_{key}"


def load_extension(verbose: bool = False) -> ModuleType:
    """Compile (if needed), link and import the extension; raises when it cannot."""
    global _extension
    with _load_lock:
        if _extension is not None:
            return _extension
        from torch.utils import cpp_extension

        build_dir = build_directory()
        build_dir.mkdir(parents=True, exist_ok=True)
        logger.info("loading %s from %s", EXTENSION_NAME, build_dir)
        _extension = cpp_extension.load(
            name=EXTENSION_NAME,
            sources=[str(s) for s in SOURCES],
            extra_cflags=list(CFLAGS),
            build_directory=str(build_dir),
            verbose=verbose,
        )
        return _extension


# The kernel as a torch custom op (forward, fake for tracing, autograd): eager autograd and torch.compile both call
# it, so a compiled graph keeps the one-pass kernel instead of falling back to per-level grid_sample.
@torch.library.custom_op("dsa::ms_deform_attn_cpu", mutates_args=())
def _kernel_forward(value: torch.Tensor, spatial_shapes: list[int], sampling_locations: torch.Tensor,
                    attention_weights: torch.Tensor) -> torch.Tensor:
    """Spatial shapes are the flat Python int list (H_0, W_0, H_1, ...)."""
    return load_extension().forward(value.contiguous(), spatial_shapes, sampling_locations.contiguous(),
                                    attention_weights.contiguous())


@_kernel_forward.register_fake
def _(value, spatial_shapes, sampling_locations, attention_weights):
    n, queries, heads = sampling_locations.shape[:3]
    return value.new_empty((n, queries, heads * value.shape[3]))


@torch.library.custom_op("dsa::ms_deform_attn_cpu_backward", mutates_args=())
def _kernel_backward(value: torch.Tensor, spatial_shapes: list[int], sampling_locations: torch.Tensor,
                     attention_weights: torch.Tensor, grad_output: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_value, grad_locations, grad_weights = load_extension().backward(
        value.contiguous(), spatial_shapes, sampling_locations.contiguous(), attention_weights.contiguous(),
        grad_output.contiguous())
    return grad_value, grad_locations, grad_weights


@_kernel_backward.register_fake
def _(value, spatial_shapes, sampling_locations, attention_weights, grad_output):
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


def _save_for_backward(ctx, inputs, output) -> None:
    value, spatial_shapes, sampling_locations, attention_weights = inputs
    ctx.spatial_shapes = spatial_shapes
    ctx.save_for_backward(value, sampling_locations, attention_weights)


def _backward(ctx, grad_output):
    value, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = _kernel_backward(
        value, ctx.spatial_shapes, sampling_locations, attention_weights, grad_output)
    return grad_value, None, grad_locations, grad_weights


_kernel_forward.register_autograd(_backward, setup_context=_save_for_backward)


def ms_deform_attn_cpu(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The kernel with the reference path's signature (shapes as (H, W) int pairs); float32/float64 CPU tensors
    of one dtype."""
    flat = [int(v) for hw in spatial_shapes for v in hw]
    return _kernel_forward(value, flat, sampling_locations, attention_weights)


def loaded_function() -> Callable[..., torch.Tensor] | None:
    """``ms_deform_attn_cpu`` if an earlier ``cpu_function()`` loaded it, else None; never builds, so it is safe
    while torch.compile traces (a build inside a compiled region cannot be traced)."""
    return _cpu_function_state.get("result")  # type: ignore[return-value]


def cpu_function() -> Callable[..., torch.Tensor] | None:
    """``ms_deform_attn_cpu`` when the extension builds here, else None (reason logged once)."""
    if "result" in _cpu_function_state:
        return _cpu_function_state["result"]  # type: ignore[return-value]
    result: Callable[..., torch.Tensor] | None = None
    try:
        load_extension()
        result = ms_deform_attn_cpu
    except Exception as exc:  # noqa: BLE001 - any build/import failure means: fall back, but say why
        logger.warning("ms_deform_attn: CPU extension unavailable (%s: %s); using the grid_sample path",
                       type(exc).__name__, exc)
    _cpu_function_state["result"] = result
    return result
