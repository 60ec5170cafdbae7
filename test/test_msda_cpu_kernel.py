"""C++ CPU kernel of multi-scale deformable attention (dsa_core/ops/cpu_ext.py, csrc/ms_deform_attn_cpu.cpp):
built for real (once per session, cached), forward and all three gradients against the grid_sample path in float64,
gradcheck, and the dispatcher: selected by CPU_IMPLEMENTATION / DSA_MSDA_CPU, falling back cleanly, never traced
into ONNX or torch.compile graphs."""
from __future__ import annotations

import importlib
import logging
import shutil

import pytest
import torch

from dsa_core.ops import cpu_ext, cuda_ext
from dsa_core.ops.ms_deform_attn import MSDeformAttn, level_starts, ms_deform_attn_pytorch

from test_ms_deform_attn import NON_SQUARE_SHAPES, make_inputs, naive_ms_deform_attn

msda = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the package re-exports a function of this name

# Levels of different sizes, as in the model (3 levels) plus odd ones (a 1-pixel-wide level).
SHAPES = [(8, 16), (4, 8), (3, 5), (1, 2)]


@pytest.fixture(scope="module")
def kernel():
    """The extension, built here if not cached (~50 s on 2 loaded cores, once)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler to build the CPU extension")
    cpu_ext.load_extension()
    return cpu_ext.ms_deform_attn_cpu


def _int_shapes(shapes: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(s) for s in shapes.tolist()]


def _reference_with_grads(value, shapes, locations, weights, grad_output):
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    out = ms_deform_attn_pytorch(leaves[0], shapes, leaves[1], leaves[2])
    out.backward(grad_output)
    return out.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("spread", [0.0, 0.3, 1.0])
def test_forward_matches_float64_reference(kernel, spread):
    value, shapes, _, locations, weights = make_inputs(SHAPES, n=3, lq=37, m=3, d=5, p=4, spread=spread,
                                                       seed=int(spread * 10) + 20)
    shapes = _int_shapes(shapes)
    ref = ms_deform_attn_pytorch(value, shapes, locations, weights)
    torch.testing.assert_close(kernel(value, shapes, locations, weights), ref, rtol=1e-12, atol=1e-12)
    f32 = kernel(value.float(), shapes, locations.float(), weights.float())
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), ref, rtol=1e-5, atol=1e-5)


def test_forward_matches_naive_loops(kernel):
    value, shapes, _, locations, weights = make_inputs(NON_SQUARE_SHAPES, spread=0.4, seed=21)
    expected = naive_ms_deform_attn(value, shapes, locations, weights)
    torch.testing.assert_close(kernel(value, _int_shapes(shapes), locations, weights), expected, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("d", [32, 7])
def test_backward_matches_float64_autograd_of_reference(kernel, d):
    value, shapes, _, locations, weights = make_inputs(SHAPES, n=2, lq=29, m=3, d=d, p=4, spread=0.3, seed=d)
    shapes = _int_shapes(shapes)
    grad_output = torch.randn(2, 29, 3 * d, dtype=torch.float64, generator=torch.Generator().manual_seed(d))
    _, ref_grads = _reference_with_grads(value, shapes, locations, weights, grad_output)
    names = ("value", "sampling_locations", "attention_weights")
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        leaves = [t.detach().to(dtype).requires_grad_() for t in (value, locations, weights)]
        kernel(leaves[0], shapes, leaves[1], leaves[2]).backward(grad_output.to(dtype))
        for name, leaf, ref in zip(names, leaves, ref_grads):
            assert leaf.grad.dtype == dtype
            # location gradients scale with H, W and sum over channels: tolerance relative to their size
            scale = max(1.0, ref.abs().max().item())
            err = (leaf.grad.double() - ref).abs().max().item()
            assert err <= tol * scale, f"{name} {dtype}: max error {err:.3g} (scale {scale:.3g})"


def test_gradcheck_float64(kernel):
    value, shapes, _, locations, weights = make_inputs([(3, 4), (2, 3)], n=2, lq=3, m=2, d=3, p=2, spread=0.2, seed=3)
    shapes = _int_shapes(shapes)
    inputs = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(lambda v, loc, w: kernel(v, shapes, loc, w), inputs, eps=1e-6, atol=1e-5,
                                    rtol=1e-4)


def test_far_outside_and_nan_locations_give_zero(kernel):
    value, shapes, _, locations, weights = make_inputs([(4, 5)], n=1, lq=4, m=1, d=3, p=2)
    locations[0, 0] = 1e9
    locations[0, 1] = -1e9
    locations[0, 2, ..., 0] = 1e30  # x beyond any int, y inside
    locations[0, 3, ..., 1] = float("nan")
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    out = kernel(leaves[0], _int_shapes(shapes), leaves[1], leaves[2])
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    for leaf in leaves:
        assert torch.equal(leaf.grad, torch.zeros_like(leaf.grad))


def test_threads_give_bitwise_identical_results(kernel):
    """Forward splits (n, q, m) triples and backward (n, m) pairs over threads: no atomics, so any thread count
    gives the same bits."""
    value, shapes, _, locations, weights = make_inputs(SHAPES, n=2, lq=50, m=3, d=8, p=4, dtype=torch.float32,
                                                       spread=0.2, seed=8)
    shapes = _int_shapes(shapes)
    grad_output = torch.randn(2, 50, 24, generator=torch.Generator().manual_seed(8))
    results = []
    threads = torch.get_num_threads()
    try:
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
            out = kernel(leaves[0], shapes, leaves[1], leaves[2])
            out.backward(grad_output)
            results.append([out.detach()] + [leaf.grad for leaf in leaves])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_raw_op_rejects_bad_inputs(kernel):
    ext = cpu_ext.load_extension()
    value, shapes, _, locations, weights = make_inputs([(3, 4)], dtype=torch.float32)
    flat = [3, 4]
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ext.forward(value.half(), flat, locations.half(), weights.half())
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.forward(value.transpose(2, 3), flat, locations, weights)
    with pytest.raises(RuntimeError, match="cover 6 keys"):
        ext.forward(value, [2, 3], locations, weights)


# ---------------------------------------------------------------- dispatcher


def _module_and_args(n_levels=3):
    torch.manual_seed(0)
    module = MSDeformAttn(24, n_levels=n_levels, n_heads=3, n_points=4)
    with torch.no_grad():  # non-trivial offsets and weights
        module.sampling_offsets.weight.normal_(0, 0.05)
        module.attention_weights.weight.normal_(0, 0.05)
    shapes = ((8, 16), (4, 8), (2, 4))[:n_levels]
    s = sum(h * w for h, w in shapes)
    args = (torch.randn(2, 30, 24), torch.rand(2, 30, n_levels, 2), torch.randn(2, s, 24), shapes,
            level_starts(list(shapes)))
    return module, args


def test_dispatcher_uses_kernel_when_selected(kernel, monkeypatch):
    value, shapes, starts, locations, weights = make_inputs(SHAPES, dtype=torch.float32, spread=0.2, seed=4)
    int_shapes = tuple(_int_shapes(shapes))
    for impl, uses_kernel in (("cpp", True), ("grid_sample", False), ("gather", False)):
        monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", impl)
        for spatial in (shapes, int_shapes):  # tensor or Python-int shapes
            out = msda.ms_deform_attn(value.requires_grad_(), spatial, starts, locations, weights)
            assert ("ms_deform_attn_cpu" in str(out.grad_fn.name())) == uses_kernel, (impl, out.grad_fn.name())
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    with torch.no_grad():
        torch.testing.assert_close(msda.ms_deform_attn(value, int_shapes, starts, locations, weights),
                                   kernel(value, int_shapes, locations, weights), rtol=0, atol=0)


def test_module_training_step_matches_grid_sample(kernel, monkeypatch):
    """MSDeformAttn forward + backward with the kernel: output and every parameter gradient as with grid_sample."""
    module, args = _module_and_args()
    results = {}
    for impl in ("grid_sample", "cpp"):
        monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", impl)
        module.zero_grad()
        out = module(*args)
        out.square().sum().backward()
        results[impl] = (out.detach(), {k: p.grad.clone() for k, p in module.named_parameters()})
    torch.testing.assert_close(results["cpp"][0], results["grid_sample"][0], rtol=1e-5, atol=1e-5)
    for name, g in results["grid_sample"][1].items():
        scale = max(1.0, g.abs().max().item())
        torch.testing.assert_close(results["cpp"][1][name], g, rtol=1e-4, atol=1e-5 * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_dispatcher_falls_back_on_other_dtypes(kernel, monkeypatch):
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    value, shapes, starts, locations, weights = (t.bfloat16() if t.is_floating_point() else t for t in
                                                 make_inputs(SHAPES[:2], spread=0.2, seed=5))
    out = msda.ms_deform_attn(value.requires_grad_(), shapes, starts, locations, weights)
    assert out.dtype == torch.bfloat16 and "ms_deform_attn_cpu" not in out.grad_fn.name()


def test_build_failure_logs_once_and_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    monkeypatch.setattr(cpu_ext, "_extension", None)
    monkeypatch.setattr(cpu_ext, "_cpu_function_state", {})
    monkeypatch.setattr(cpu_ext, "SOURCES", (tmp_path / "missing.cpp",))
    monkeypatch.setenv(cuda_ext.BUILD_DIR_ENV, str(tmp_path / "build"))
    value, shapes, starts, locations, weights = make_inputs(SHAPES[:2], spread=0.2, seed=6)
    with caplog.at_level(logging.WARNING, logger=cpu_ext.__name__):
        for _ in range(2):
            out = msda.ms_deform_attn(value, shapes, starts, locations, weights)
            torch.testing.assert_close(out, ms_deform_attn_pytorch(value, shapes, locations, weights), rtol=0, atol=0)
    warnings = [r for r in caplog.records if "CPU extension unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_env_var_selects_implementation(monkeypatch):
    monkeypatch.delenv("DSA_MSDA_CPU", raising=False)
    assert msda._cpu_implementation_from_env() == msda.DEFAULT_CPU_IMPLEMENTATION == "cpp"  # the default
    for impl in ("cpp", "gather", "grid_sample"):
        monkeypatch.setenv("DSA_MSDA_CPU", impl)
        assert msda._cpu_implementation_from_env() == impl
    monkeypatch.setenv("DSA_MSDA_CPU", "cuda")
    with pytest.raises(ValueError, match="DSA_MSDA_CPU"):
        msda._cpu_implementation_from_env()


def test_onnx_export_and_compile_keep_the_decomposition(kernel, monkeypatch, tmp_path):
    import onnx

    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    module, args = _module_and_args(n_levels=2)
    module.eval()
    path = tmp_path / "msda.onnx"
    torch.onnx.export(module, args, str(path), opset_version=17, dynamo=False)
    assert "GridSample" in {n.op_type for n in onnx.load(str(path)).graph.node}
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(module)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


def test_compiled_graph_keeps_the_kernel_and_matches_eager(kernel, monkeypatch):
    """Under torch.compile the kernel is one custom-op node of a single graph (no grid_sample fallback, no graph
    break); compiled forward and parameter gradients equal eager ones."""
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    assert msda.prepare_cpu_kernel()  # loaded before tracing, as the compiled torch backend does
    module, args = _module_and_args()
    explained = torch._dynamo.explain(module)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    code = explained.graphs[0].code
    assert "ms_deform_attn_cpu" in code and "grid_sample" not in code
    results = {}
    for name, fn in (("eager", module), ("compiled", torch.compile(module, backend="aot_eager", fullgraph=True))):
        module.zero_grad()
        out = fn(*args)
        out.square().sum().backward()
        results[name] = (out.detach(), {k: p.grad.clone() for k, p in module.named_parameters()})
    torch.testing.assert_close(results["compiled"][0], results["eager"][0], rtol=0, atol=0)
    for name, g in results["eager"][1].items():
        torch.testing.assert_close(results["compiled"][1][name], g, rtol=1e-6, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


def test_compiling_before_the_kernel_is_loaded_keeps_grid_sample(monkeypatch):
    """A graph traced while the kernel is not loaded must not try to build it there (a build cannot be traced): it
    keeps the grid_sample path in one graph; ``prepare_cpu_kernel`` is what loads it first."""
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "cpp")
    monkeypatch.setattr(cpu_ext, "_cpu_function_state", {})
    module, args = _module_and_args()
    with torch.no_grad():
        explained = torch._dynamo.explain(module)(*args)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    assert "grid_sample" in explained.graphs[0].code and "ms_deform_attn_cpu" not in explained.graphs[0].code
    assert "result" not in cpu_ext._cpu_function_state  # nothing was built or loaded while tracing
