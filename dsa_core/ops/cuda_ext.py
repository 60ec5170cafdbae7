"""Just-in-time build and autograd wrapper of the multi-scale deformable attention CUDA kernel (``csrc/``).

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` so that a plain ``pip install``
needs no compiler; the build is cached on disk. ``cuda_function()`` is what the dispatcher uses: it returns
``None`` (and logs why, once) when the kernel cannot be used, so callers fall back to the grid_sample path.
``load_extension()`` builds without a GPU (CI compile + link + import check) and raises when it cannot.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

EXTENSION_NAME = "dsa_ms_deform_attn"
CSRC_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = (CSRC_DIR / "ms_deform_attn.cpp", CSRC_DIR / "ms_deform_attn_cuda.cu")
# Jetson Orin (sm_87) and Hopper (sm_90), the deployment and training targets.
DEFAULT_CUDA_ARCH_LIST = "8.7;9.0"
BUILD_DIR_ENV = "DSA_EXTENSIONS_DIR"
DEFAULT_CUDA_HOME = Path("/usr/local/cuda")

_load_lock = threading.Lock()
_extension: ModuleType | None = None
_cuda_function_state: dict[str, object] = {}


def _cuda_home() -> Path:
    """CUDA toolkit root. cpp_extension guesses it from nvcc's location, which fails for /usr/local/cuda/bin
    symlinked into PATH (it then looks for libcudart under /usr/local), so prefer the canonical location."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return Path(env)
    if (DEFAULT_CUDA_HOME / "bin" / "nvcc").exists():
        return DEFAULT_CUDA_HOME
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError(
            "cannot build the ms_deform_attn CUDA extension: no CUDA toolkit found "
            f"(CUDA_HOME unset, no {DEFAULT_CUDA_HOME}/bin/nvcc, no nvcc on PATH)"
        )
    return Path(nvcc).resolve().parent.parent


def _wheel_cuda_include_dirs() -> list[str]:
    """Headers of torch's CUDA wheels (nvidia/cu13/include): the system toolkit may lack cuBLAS/cuSPARSE headers
    that the ATen CUDA headers include."""
    dirs = []
    for entry in sys.path:
        candidate = Path(entry) / "nvidia" / "cu13" / "include"
        if candidate.is_dir() and str(candidate) not in dirs:
            dirs.append(str(candidate))
    return dirs


def extensions_root() -> Path:
    """Where every JIT-built extension of the project (this one and ``cpu_ext``) is cached: $DSA_EXTENSIONS_DIR or
    ~/.cache/dsa_perception/torch_extensions."""
    root = os.environ.get(BUILD_DIR_ENV)
    return Path(root) if root else Path.home() / ".cache" / "dsa_perception" / "torch_extensions"


def build_directory(arch_list: str) -> Path:
    """Cache directory keyed by torch version and target architectures, so builds for different setups coexist."""
    base = extensions_root()
    key = hashlib.sha1(f"{torch.__version__}|{torch.version.cuda}|{arch_list}".encode()).hexdigest()[:10]
    return base / f"{EXTENSION_NAME}_{key}"


def load_extension(verbose: bool = False) -> ModuleType:
    """Compile (if needed), link and import the extension; works without a GPU.

    Raises RuntimeError naming what is missing when torch has no CUDA support or no CUDA toolkit is found.
    """
    global _extension
    with _load_lock:
        if _extension is not None:
            return _extension
        if torch.version.cuda is None:
            raise RuntimeError(
                f"cannot build the ms_deform_attn CUDA extension: torch {torch.__version__} is a CPU-only build"
            )
        cuda_home = _cuda_home()
        nvcc = cuda_home / "bin" / "nvcc"
        if not nvcc.exists():
            raise RuntimeError(f"cannot build the ms_deform_attn CUDA extension: {nvcc} does not exist")
        os.environ.setdefault("CUDA_HOME", str(cuda_home))
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCH_LIST)
        include_dirs = _wheel_cuda_include_dirs()
        if include_dirs:
            cpath = [p for p in os.environ.get("CPATH", "").split(os.pathsep) if p]
            os.environ["CPATH"] = os.pathsep.join(cpath + [d for d in include_dirs if d not in cpath])

        from torch.utils import cpp_extension

        # cpp_extension resolves CUDA_HOME once at import; it may have been imported before the env var was set.
        if cpp_extension.CUDA_HOME is None or Path(cpp_extension.CUDA_HOME) != Path(os.environ["CUDA_HOME"]):
            cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]

        build_dir = build_directory(os.environ["TORCH_CUDA_ARCH_LIST"])
        build_dir.mkdir(parents=True, exist_ok=True)
        logger.info("loading %s (arch %s) from %s", EXTENSION_NAME, os.environ["TORCH_CUDA_ARCH_LIST"], build_dir)
        _extension = cpp_extension.load(
            name=EXTENSION_NAME,
            sources=[str(s) for s in SOURCES],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3"],
            extra_include_paths=include_dirs,
            build_directory=str(build_dir),
            verbose=verbose,
        )
        return _extension


class MSDeformAttnFunction(torch.autograd.Function):
    """Autograd wrapper of the CUDA kernels. Half/bfloat16 inputs under autocast are computed in float32
    (the kernels are float32/float64 only), as in ViT-Adapter."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(
        ctx,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int,
    ) -> torch.Tensor:
        ext = load_extension()
        if value.dtype not in (torch.float32, torch.float64):
            # custom_fwd only casts inside an autocast region; outside it half inputs still need float32.
            value = value.float()
        dtype, device = value.dtype, value.device
        value = value.contiguous()
        spatial_shapes = spatial_shapes.to(device=device, dtype=torch.int64).contiguous()
        level_start_index = level_start_index.to(device=device, dtype=torch.int64).contiguous()
        sampling_locations = sampling_locations.to(dtype).contiguous()
        attention_weights = attention_weights.to(dtype).contiguous()
        ctx.im2col_step = im2col_step
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return ext.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step
        )

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output: torch.Tensor):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = load_extension().ms_deform_attn_backward(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.to(value.dtype).contiguous(),
            ctx.im2col_step,
        )
        return grad_value, None, None, grad_locations, grad_weights, None


def cuda_function() -> Callable[..., torch.Tensor] | None:
    """``MSDeformAttnFunction.apply`` when the CUDA kernel is usable here, else None (reason logged once)."""
    if "result" in _cuda_function_state:
        return _cuda_function_state["result"]  # type: ignore[return-value]
    result: Callable[..., torch.Tensor] | None = None
    if not torch.cuda.is_available():
        logger.info("ms_deform_attn: CUDA is not available; using the grid_sample path")
    else:
        try:
            load_extension()
            result = MSDeformAttnFunction.apply
        except Exception as exc:  # noqa: BLE001 - any build/import failure means: fall back, but say why
            logger.warning("ms_deform_attn: CUDA extension unavailable (%s: %s); using the grid_sample path",
                           type(exc).__name__, exc)
    _cuda_function_state["result"] = result
    return result
