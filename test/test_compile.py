"""torch.compile: the deformable attention and the whole model forward trace as one graph (level shapes as Python
ints), compiled outputs equal eager ones, and the torch backend's compile option compiles once at construction."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dsa_core import build_model
from dsa_core.export.graphs import BackboneGraph, HeadGraph
from dsa_core.ops.ms_deform_attn import MSDeformAttn, level_starts
from dsa_core.runtime import create_backend

from exported_nano import H, W

SHAPES = ((8, 16), (4, 8), (2, 4))


def _module_inputs() -> tuple[MSDeformAttn, tuple]:
    torch.manual_seed(0)
    module = MSDeformAttn(32, n_levels=3, n_heads=4, n_points=4).eval()
    with torch.no_grad():  # non-trivial offsets and weights (the init ones are a fixed pattern)
        module.sampling_offsets.weight.normal_(0, 0.05)
        module.attention_weights.weight.normal_(0, 0.05)
    s = sum(h * w for h, w in SHAPES)
    args = (torch.randn(2, 20, 32), torch.rand(2, 20, 3, 2), torch.randn(2, s, 32), SHAPES, level_starts(list(SHAPES)))
    return module, args


def test_int_shapes_equal_tensor_shapes_and_make_one_graph() -> None:
    module, args = _module_inputs()
    shapes_t = torch.tensor(SHAPES, dtype=torch.long)
    with torch.no_grad():
        out = module(*args)
        torch.testing.assert_close(out, module(*args[:3], shapes_t, torch.tensor(args[4])), rtol=0, atol=0)
        explained = torch._dynamo.explain(module)(*args)
        assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
        # the tensor form reads the shapes back (tolist): that is the graph break the ints remove
        assert torch._dynamo.explain(module)(*args[:3], shapes_t, torch.tensor(args[4])).graph_break_count >= 1


@pytest.mark.slow
def test_inductor_compiled_module_matches_eager() -> None:
    module, args = _module_inputs()
    torch._dynamo.reset()
    with torch.no_grad():
        eager = module(*args)
        compiled = torch.compile(module, backend="inductor", fullgraph=True, dynamic=False)(*args)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_model_forward_has_no_graph_break() -> None:
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    backbone, head = BackboneGraph(model).eval(), HeadGraph(model).eval()

    def forward(x: torch.Tensor):
        return head(x, *backbone(x))

    x = torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)
    with torch.inference_mode():
        explained = torch._dynamo.explain(forward)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow
def test_compiled_torch_backend_matches_eager(exported_nano) -> None:
    """aot_eager: the full capture + functionalisation path of torch.compile without C++ code generation (inductor
    on the whole model takes minutes on this CPU; the module test above runs inductor)."""
    model_dir: Path = exported_nano.model_dir
    torch._dynamo.reset()
    eager = create_backend("torch", model_dir)
    compiled = create_backend("torch", model_dir, compile="aot_eager")
    assert compiled.describe()["compile"] == "aot_eager" and compiled.describe()["compile_s"] > 0
    images = np.random.default_rng(4).integers(0, 256, (1, H, W, 3), dtype=np.uint8)
    a, b = eager.infer(images, baselines=True), compiled.infer(images, baselines=True)
    assert set(b.timings) >= {"compiled", "total"} and "backbone" not in b.timings
    assert (a.class_ids == b.class_ids).mean() >= 0.999
    np.testing.assert_allclose(b.anomaly, a.anomaly, atol=1e-5)
    for name in a.baselines:
        np.testing.assert_allclose(b.baselines[name], a.baselines[name], atol=1e-4)
    with pytest.raises(Exception):
        create_backend("torch", model_dir, compile="no_such_backend")
