"""CUDA kernel of multi-scale deformable attention.

Three layers, so that as much as possible runs on the CPU-only CI machine:
1. The kernels' arithmetic (csrc/ms_deform_attn_kernels.cuh, the code the GPU executes per (batch, query, head))
   compiled for the host with g++ and checked against the naive float64 reference and autograd of the
   grid_sample path.
2. The torch extension built just-in-time for sm_87 and sm_90 (compile + link + import, no GPU needed), and a call
   on CPU tensors failing cleanly.
3. Parity with the grid_sample path and gradcheck on a GPU (skipped without one).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from dsa_core.ops import cuda_ext, ms_deform_attn, ms_deform_attn_pytorch
from test_ms_deform_attn import NON_SQUARE_SHAPES, make_inputs, naive_ms_deform_attn

CSRC = Path(cuda_ext.__file__).resolve().parent / "csrc"
ARCH_LIST = "8.7;9.0"


def _nvcc_available() -> bool:
    try:
        home = cuda_ext._cuda_home()
    except RuntimeError:
        return False
    return (home / "bin" / "nvcc").exists()


requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# ---------------------------------------------------------------- 1. kernel arithmetic on the host


class HostKernels:
    """ctypes wrapper of csrc/ms_deform_attn_host.cpp (same arithmetic as the GPU kernels, one lane per warp)."""

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))

    @staticmethod
    def _sizes(value, locations) -> torch.Tensor:
        n, s, m, d = value.shape
        _, lq, _, n_levels, n_points, _ = locations.shape
        return torch.tensor([n, s, m, d, lq, n_levels, n_points], dtype=torch.int64)

    def _fn(self, direction: str, dtype: torch.dtype):
        suffix = {torch.float64: "f64", torch.float32: "f32"}[dtype]
        return getattr(self.lib, f"msda_host_{direction}_{suffix}")

    @staticmethod
    def _ptrs(*tensors):
        return [ctypes.c_void_p(t.data_ptr()) for t in tensors]

    def forward(self, value, shapes, starts, locations, weights) -> torch.Tensor:
        inputs = [t.contiguous() for t in (value, shapes, starts, locations, weights)]
        sizes = self._sizes(value, locations)
        out = torch.empty(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], dtype=value.dtype)
        self._fn("forward", value.dtype)(*self._ptrs(*inputs, sizes, out))
        return out

    def backward(self, value, shapes, starts, locations, weights, grad_output):
        inputs = [t.contiguous() for t in (value, shapes, starts, locations, weights, grad_output)]
        sizes = self._sizes(value, locations)
        grads = [torch.zeros_like(value), torch.zeros_like(locations), torch.zeros_like(weights)]
        self._fn("backward", value.dtype)(*self._ptrs(*inputs, sizes, *grads))
        return grads


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory) -> HostKernels:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++/c++) to build the host version of the kernels")
    library = tmp_path_factory.mktemp("msda_host") / "libmsda_host.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-std=c++17", "-Wall", "-Werror", str(CSRC / "ms_deform_attn_host.cpp"),
         "-o", str(library)],
        check=True,
    )
    return HostKernels(library)


@pytest.mark.parametrize("spread", [0.0, 0.4])
def test_host_kernel_forward_matches_naive_float64(host_kernels, spread):
    value, shapes, starts, locations, weights = make_inputs(NON_SQUARE_SHAPES, spread=spread, seed=11)
    expected = naive_ms_deform_attn(value, shapes, locations, weights)
    torch.testing.assert_close(host_kernels.forward(value, shapes, starts, locations, weights), expected,
                               rtol=1e-12, atol=1e-12)


def test_host_kernel_backward_matches_autograd_of_reference_float64(host_kernels):
    value, shapes, starts, locations, weights = make_inputs(NON_SQUARE_SHAPES, n=2, lq=6, m=3, d=4, p=3, spread=0.3,
                                                            seed=12)
    grad_output = torch.randn(2, 6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    ms_deform_attn_pytorch(leaves[0], shapes, leaves[1], leaves[2]).backward(grad_output)
    got = host_kernels.backward(value, shapes, starts, locations, weights, grad_output)
    for name, g, leaf in zip(("value", "sampling_locations", "attention_weights"), got, leaves):
        torch.testing.assert_close(g, leaf.grad, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")


def test_host_kernel_float32_close_to_float64(host_kernels):
    value, shapes, starts, locations, weights = make_inputs(NON_SQUARE_SHAPES, n=1, lq=9, m=2, d=5, p=4, seed=13)
    ref = host_kernels.forward(value, shapes, starts, locations, weights)
    got = host_kernels.forward(value.float(), shapes, starts, locations.float(), weights.float())
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


def test_host_kernel_far_outside_points_give_zero_output_and_gradients(host_kernels):
    value, shapes, starts, locations, weights = make_inputs([(4, 5)], n=1, lq=3, m=1, d=2, p=2)
    locations[0, 0] = 1e9
    locations[0, 1] = -1e9
    locations[0, 2, ..., 0] = 1e30  # x far right (float->int overflow territory), y inside
    out = host_kernels.forward(value, shapes, starts, locations, weights)
    assert torch.equal(out, torch.zeros_like(out))
    grads = host_kernels.backward(value, shapes, starts, locations, weights, torch.ones_like(out))
    for g in grads:
        assert torch.equal(g, torch.zeros_like(g))


# ---------------------------------------------------------------- 2. JIT build of the extension (no GPU needed)


@pytest.fixture(scope="module")
def extension():  # minutes on 2 cores when not cached; tests using it are marked slow
    """Build (or load from the cache) the extension once per session for sm_87 and sm_90."""
    if not _nvcc_available():
        pytest.skip("nvcc not found (CUDA_HOME, /usr/local/cuda/bin/nvcc, PATH): cannot build the CUDA extension")
    if torch.version.cuda is None:
        pytest.skip(f"torch {torch.__version__} is a CPU-only build: a CUDA extension cannot be linked")
    with pytest.MonkeyPatch.context() as mp:
        if cuda_ext._extension is None:  # the arch list only matters for a build done here
            mp.setenv("TORCH_CUDA_ARCH_LIST", ARCH_LIST)
        return cuda_ext.load_extension()


@pytest.mark.slow
def test_extension_built_for_orin_and_hopper(extension):
    assert callable(extension.ms_deform_attn_forward) and callable(extension.ms_deform_attn_backward)
    ninja = (Path(extension.__file__).parent / "build.ninja").read_text()  # the build that produced this module
    for arch in ("87", "90"):
        assert f"arch=compute_{arch},code=sm_{arch}" in ninja


@pytest.mark.slow
def test_extension_rejects_cpu_tensors(extension):
    value, shapes, starts, locations, weights = make_inputs([(3, 4)], dtype=torch.float32)
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        extension.ms_deform_attn_forward(value, shapes, starts, locations, weights, 64)
    grad_output = torch.zeros(2, 5, 6)
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        extension.ms_deform_attn_backward(value, shapes, starts, locations, weights, grad_output, 64)


def test_load_extension_names_missing_toolkit(monkeypatch, tmp_path):
    monkeypatch.setattr(cuda_ext, "_extension", None)  # force a fresh load attempt
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-cuda"))
    with pytest.raises(RuntimeError, match=r"no-cuda/bin/nvcc does not exist"):
        cuda_ext.load_extension()


def test_build_directory_from_env_and_keyed_by_arch(monkeypatch, tmp_path):
    monkeypatch.setenv(cuda_ext.BUILD_DIR_ENV, str(tmp_path))
    orin_hopper = cuda_ext.build_directory("8.7;9.0")
    assert orin_hopper.parent == tmp_path
    assert cuda_ext.build_directory("9.0") != orin_hopper


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a CUDA device")
def test_cuda_function_is_none_without_gpu():
    assert cuda_ext.cuda_function() is None


# ---------------------------------------------------------------- 3. on a GPU


def _cuda_inputs(shapes, dtype, n=2, lq=300, m=8, d=32, p=4, spread=0.1, seed=0):
    return [t.cuda() for t in make_inputs(shapes, n=n, lq=lq, m=m, d=d, p=p, dtype=dtype, spread=spread, seed=seed)]


REALISTIC_SHAPES = [(32, 64), (16, 32), (8, 16)]


@requires_gpu
@pytest.mark.gpu
# fp32: grid_sample computes the pixel coordinate as ((2x - 1 + 1) W - 1) / 2, the kernel as x W - 0.5; the
# rounding difference (~1e-7 relative, times W) moves samples by ~1e-5 pixels, hence 1e-4 and not 1e-6.
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("d", [32, 8, 48])
def test_cuda_forward_backward_match_grid_sample(extension, dtype, atol, d):
    fn = cuda_ext.cuda_function()
    assert fn is not None
    value, shapes, starts, locations, weights = _cuda_inputs(REALISTIC_SHAPES, dtype, d=d, seed=d)
    leaves_ref = [t.clone().requires_grad_() for t in (value, locations, weights)]
    leaves_cuda = [t.clone().requires_grad_() for t in (value, locations, weights)]
    ref = ms_deform_attn_pytorch(leaves_ref[0], shapes, leaves_ref[1], leaves_ref[2])
    out = fn(leaves_cuda[0], shapes, starts, leaves_cuda[1], leaves_cuda[2], 64)
    assert out.dtype == dtype
    assert (out - ref).abs().max().item() < atol
    grad_output = torch.randn_like(ref)
    ref.backward(grad_output)
    out.backward(grad_output)
    # Location gradients scale with H, W (up to 64) and sum over channels: relative tolerance on those.
    for name, a, b in zip(("value", "locations", "weights"), leaves_cuda, leaves_ref):
        scale = max(1.0, b.grad.abs().max().item())
        assert (a.grad - b.grad).abs().max().item() < 10 * atol * scale, name


@requires_gpu
@pytest.mark.gpu
def test_cuda_gradcheck_float64(extension):
    fn = cuda_ext.cuda_function()
    value, shapes, starts, locations, weights = _cuda_inputs([(3, 4), (2, 3)], torch.float64, n=1, lq=3, m=2, d=3,
                                                             p=2, spread=0.2, seed=7)
    inputs = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    # grad_value is accumulated with atomics, so two backward passes may differ in the last bits (nondet_tol).
    assert torch.autograd.gradcheck(lambda v, loc, w: fn(v, shapes, starts, loc, w, 64), inputs, eps=1e-6,
                                    atol=1e-5, rtol=1e-4, nondet_tol=1e-12)


@requires_gpu
@pytest.mark.gpu
def test_cuda_dispatch_accepts_half_noncontiguous_and_cpu_shapes(extension):
    value, shapes, starts, locations, weights = _cuda_inputs(REALISTIC_SHAPES, torch.float32, lq=50)
    ref = ms_deform_attn_pytorch(value, shapes, locations, weights)
    # Non-contiguous value (a transposed view of the same numbers) and index tensors on the CPU.
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3)
    assert not value_nc.is_contiguous()
    out = ms_deform_attn(value_nc, shapes.cpu(), starts.cpu(), locations, weights)
    assert (out - ref).abs().max().item() < 1e-5
    halves = [t.half() for t in (value, locations, weights)]
    with torch.autocast("cuda", dtype=torch.float16):
        out_half = ms_deform_attn(halves[0], shapes, starts, halves[1], halves[2])
    assert out_half.dtype == torch.float32  # computed in float32 from the half inputs
    ref_half = ms_deform_attn_pytorch(halves[0].float(), shapes, halves[1].float(), halves[2].float())
    assert (out_half - ref_half).abs().max().item() < 1e-4


@requires_gpu
@pytest.mark.gpu
def test_cuda_raw_op_rejects_wrong_dtype_and_noncontiguous(extension):
    value, shapes, starts, locations, weights = _cuda_inputs([(3, 4)], torch.float32, lq=4)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        extension.ms_deform_attn_forward(value.half(), shapes, starts, locations.half(), weights.half(), 64)
    with pytest.raises(RuntimeError, match="must be contiguous"):
        extension.ms_deform_attn_forward(value.transpose(2, 3), shapes, starts, locations, weights, 64)
    with pytest.raises(RuntimeError, match="int64"):
        extension.ms_deform_attn_forward(value, shapes.int(), starts, locations, weights, 64)
