"""The one-pass (gather) deformable attention against the naive float64 loops and the grid_sample path, its
gradients, and its ONNX export running in ONNX Runtime (Gather + MatMul, no GridSample)."""
from __future__ import annotations

import pytest
import torch

from dsa_core.ops.ms_deform_attn import ms_deform_attn_gather, ms_deform_attn_pytorch

from test_ms_deform_attn import NON_SQUARE_SHAPES, make_inputs, naive_ms_deform_attn


@pytest.mark.parametrize("spread", [0.0, 0.3, 1.0])
def test_gather_matches_naive_float64_and_grid_sample_path(spread):
    value, shapes, _, locations, weights = make_inputs(NON_SQUARE_SHAPES, spread=spread, seed=int(spread * 10) + 1)
    expected = naive_ms_deform_attn(value, shapes, locations, weights)
    got = ms_deform_attn_gather(value, shapes, locations, weights)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # python-int shapes give the same; float32 within 1e-5 of float64 and of the grid_sample path
    int_shapes = tuple(tuple(s) for s in shapes.tolist())
    torch.testing.assert_close(ms_deform_attn_gather(value, int_shapes, locations, weights), got, rtol=0, atol=0)
    f32 = ms_deform_attn_gather(value.float(), int_shapes, locations.float(), weights.float())
    torch.testing.assert_close(f32.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f32, ms_deform_attn_pytorch(value.float(), int_shapes, locations.float(), weights.float()),
                               rtol=1e-5, atol=1e-5)


def test_gather_points_on_borders_and_outside():
    value, shapes, _, locations, weights = make_inputs([(4, 3)], n=1, lq=4, m=1, d=2, p=1)
    locations[0, 0, 0, 0, 0] = torch.tensor([-0.6, 0.5], dtype=torch.float64)
    locations[0, 1, 0, 0, 0] = torch.tensor([0.5, 1.3], dtype=torch.float64)
    locations[0, 2, 0, 0, 0] = torch.tensor([1.0, 0.5], dtype=torch.float64)
    locations[0, 3, 0, 0, 0] = torch.tensor([5.0 / 6.0, 0.625], dtype=torch.float64)
    weights.fill_(1.0)
    out = ms_deform_attn_gather(value, shapes, locations, weights)
    plane = value[0, :, 0].reshape(4, 3, 2)
    assert torch.equal(out[0, 0], torch.zeros(2, dtype=torch.float64)) and torch.equal(out[0, 1], out[0, 0])
    torch.testing.assert_close(out[0, 2], 0.25 * (plane[1, 2] + plane[2, 2]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[0, 3], plane[2, 2], rtol=1e-12, atol=1e-12)


def test_gather_gradcheck_float64():
    value, shapes, _, locations, weights = make_inputs([(3, 4), (2, 3)], n=1, lq=2, m=2, d=2, p=2, spread=0.2, seed=3)
    inputs = (value.requires_grad_(), locations.requires_grad_(), weights.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn_gather(v, shapes, loc, w), inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gather_exports_to_onnx_and_runs_in_onnxruntime(tmp_path):
    import onnx
    import onnxruntime as ort

    value, shapes, _, locations, weights = make_inputs(NON_SQUARE_SHAPES, n=1, lq=6, m=2, d=4, p=3,
                                                       dtype=torch.float32, spread=0.3, seed=5)
    int_shapes = tuple(tuple(s) for s in shapes.tolist())

    class Op(torch.nn.Module):
        def forward(self, v, loc, w):
            return ms_deform_attn_gather(v, int_shapes, loc, w)

    path = tmp_path / "msda.onnx"
    torch.onnx.export(Op(), (value, locations, weights), str(path), opset_version=17, dynamo=False,
                      input_names=["v", "loc", "w"])
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops and "Gather" in ops and "MatMul" in ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"v": value.numpy(), "loc": locations.numpy(), "w": weights.numpy()})[0]
    expected = naive_ms_deform_attn(value.double(), shapes, locations.double(), weights.double())
    torch.testing.assert_close(torch.from_numpy(got).double(), expected, rtol=1e-5, atol=1e-5)


def test_export_traces_the_export_implementation(tmp_path, monkeypatch):
    """The dispatcher: eager CPU calls use CPU_IMPLEMENTATION, export tracing EXPORT_IMPLEMENTATION."""
    import importlib

    import onnx

    from dsa_core.ops.ms_deform_attn import MSDeformAttn, level_starts

    msda = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the package re-exports a function of this name
    torch.manual_seed(0)
    module = MSDeformAttn(16, n_levels=2, n_heads=2, n_points=2).eval()
    shapes = ((4, 6), (2, 3))
    args = (torch.randn(1, 5, 16), torch.rand(1, 5, 2, 2), torch.randn(1, 30, 16), shapes, level_starts(list(shapes)))
    found = {}
    for impl in ("grid_sample", "gather"):
        monkeypatch.setattr(msda, "EXPORT_IMPLEMENTATION", impl)
        path = tmp_path / f"{impl}.onnx"
        torch.onnx.export(module, args, str(path), opset_version=17, dynamo=False)
        found[impl] = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "GridSample" in found["grid_sample"] and "GridSample" not in found["gather"]
    monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "gather")
    with torch.no_grad():
        gathered = module(*args)
        monkeypatch.setattr(msda, "CPU_IMPLEMENTATION", "grid_sample")
        torch.testing.assert_close(gathered, module(*args), rtol=1e-5, atol=1e-6)
