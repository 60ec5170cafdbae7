"""The TensorRT plugin variant of MSDeformAttn (dsa_core/export/trt_msda_plugin.py), tested without TensorRT.

The plugin graph must be well-formed ONNX (checker, custom domain declared), hold one plugin node per module with
the OSS plugin's input contract, and be the decomposition graph with the op swapped: its part before the plugin
node and its part after it run in ONNX Runtime, the node itself is replaced by the float64 reference on the very
tensors ORT computed, and the result must equal the decomposition graph's ORT output (one module to 1e-5; the whole
dsa_nano fused graph, with its chained plugin nodes, to 1e-4 in the anomaly map).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
import torch

from dsa_core import build_model
from dsa_core.export.manifest import sha256_file
from dsa_core.export.onnx_export import _export_one, export_model_dir
from dsa_core.export.trt_msda_plugin import (MSDA_PLUGIN_SUFFIX, PLUGIN_DOMAIN, PLUGIN_OP, PLUGIN_OP_TYPE,
                                             choose_onnx_graph, plugin_availability)
from dsa_core.export.trt_onnx_ops import graph_op_types, ops_unsupported_by_tensorrt
from dsa_core.ops.ms_deform_attn import MSDeformAttn, level_starts, ms_deform_attn_pytorch

SHAPES = ((8, 10), (4, 5), (2, 3))
N, LQ, C, HEADS, POINTS = 2, 7, 32, 4, 2


class OneModule(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = MSDeformAttn(C, len(SHAPES), HEADS, POINTS)

    def forward(self, query: torch.Tensor, ref: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.attn(query, ref, x, SHAPES, level_starts(list(SHAPES)))


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[onnx.ModelProto, onnx.ModelProto, dict[str, np.ndarray]]:
    torch.manual_seed(0)
    module = OneModule().eval()
    with torch.no_grad():
        for p in module.parameters():  # spread the sampling points (some fall outside the maps)
            p.normal_(0.0, 0.3)
    s = sum(h * w for h, w in SHAPES)
    inputs = {"query": torch.randn(N, LQ, C), "ref": torch.rand(N, LQ, len(SHAPES), 2), "x": torch.randn(N, s, C)}
    out = tmp_path_factory.mktemp("msda_plugin")
    args = tuple(inputs.values())
    with torch.no_grad():
        plugin = _export_one(module, args, out / "p.onnx", list(inputs), ["out"], 17, msda_plugin=True)
        decomposition = _export_one(module, args, out / "d.onnx", list(inputs), ["out"], 17)
    return plugin, decomposition, {k: v.numpy() for k, v in inputs.items()}


def test_plugin_graph_is_well_formed(graphs) -> None:
    plugin, decomposition, _ = graphs
    onnx.checker.check_model(plugin, full_check=True)
    assert {o.domain: o.version for o in plugin.opset_import}.get(PLUGIN_DOMAIN) == 1
    ops = graph_op_types(plugin)
    assert ops[PLUGIN_OP_TYPE] == 1 and "GridSample" not in ops
    assert ops_unsupported_by_tensorrt(plugin) == [PLUGIN_OP_TYPE]  # only with the plugin allowed ...
    assert ops_unsupported_by_tensorrt(plugin, frozenset({PLUGIN_OP_TYPE})) == []
    assert graph_op_types(decomposition)["GridSample"] == len(SHAPES)  # ... and the fallback is pure ONNX

    node = next(n for n in plugin.graph.node if n.op_type == PLUGIN_OP)
    assert node.domain == PLUGIN_DOMAIN and len(node.input) == 5 and len(node.output) == 1 and not node.attribute
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in plugin.graph.initializer}
    consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in plugin.graph.node if n.op_type == "Constant"})
    spatial, starts = consts[node.input[1]], consts[node.input[2]]
    assert spatial.dtype == np.int32 and spatial.tolist() == [list(hw) for hw in SHAPES]
    assert starts.dtype == np.int32 and starts.tolist() == list(level_starts(list(SHAPES)))


def _open_plugin_nodes(plugin: onnx.ModelProto) -> tuple[onnx.ModelProto, list[onnx.NodeProto]]:
    """The plugin graph without its plugin nodes: each node's float inputs become extra graph outputs and its output
    a graph input, so ORT runs everything around the nodes and the test supplies what the nodes would compute."""
    proto = onnx.ModelProto()
    proto.CopyFrom(plugin)
    nodes = [n for n in proto.graph.node if n.op_type == PLUGIN_OP]
    for node in nodes:
        proto.graph.node.remove(node)
        proto.graph.input.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
        for i in (0, 3, 4):
            if node.input[i] not in {o.name for o in proto.graph.output}:
                proto.graph.output.append(onnx.helper.make_tensor_value_info(node.input[i], onnx.TensorProto.FLOAT, None))
    del proto.opset_import[:]
    proto.opset_import.extend([o for o in plugin.opset_import if o.domain != PLUGIN_DOMAIN])
    return proto, nodes


def _run_with_reference_plugin(plugin: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Run the plugin graph in ORT with every plugin node computed by the float64 reference from the tensors ORT
    produced for its inputs (spatial shapes read from the node's int32 constants). Chained nodes are resolved by
    re-running until no plugin output changes (one more node per pass at worst). The node's output shape is the
    one the export declared (value_info)."""
    opened, nodes = _open_plugin_nodes(plugin)
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in plugin.graph.initializer}
    consts.update({n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in plugin.graph.node if n.op_type == "Constant"})
    declared = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in plugin.graph.value_info}
    session = _session(opened)
    names = list(dict.fromkeys(outputs + [n.input[i] for n in nodes for i in (0, 3, 4)]))
    given = {n.output[0]: np.zeros(declared[n.output[0]], np.float32) for n in nodes}  # first pass: placeholders
    for _ in range(len(nodes) + 1):
        results = session.run(names, {**feeds, **given})
        fed = dict(zip(names, results))
        updated = {}
        for node in nodes:
            value, locations, weights = (fed[node.input[i]] for i in (0, 3, 4))
            shapes = [tuple(hw) for hw in consts[node.input[1]].tolist()]
            out = ms_deform_attn_pytorch(torch.from_numpy(value).double(), shapes, torch.from_numpy(locations).double(),
                                         torch.from_numpy(weights).double())
            updated[node.output[0]] = out.view(value.shape[0], locations.shape[1], value.shape[2], value.shape[3]).float().numpy()
        if all(np.array_equal(given[k], v) for k, v in updated.items()):
            return results[:len(outputs)]
        given = updated
    raise AssertionError("plugin outputs did not settle")


def test_plugin_inputs_are_what_the_decomposition_consumes(graphs) -> None:
    plugin, decomposition, feeds = graphs
    opened, (node,) = _open_plugin_nodes(plugin)
    session = _session(opened)
    d = C // HEADS
    _, value, locations, weights = session.run(None, {**feeds, node.output[0]: np.zeros((N, LQ, HEADS, d), np.float32)})
    s = sum(h * w for h, w in SHAPES)
    assert value.shape == (N, s, HEADS, d)
    assert locations.shape == (N, LQ, HEADS, len(SHAPES), POINTS, 2)
    assert weights.shape == (N, LQ, HEADS, len(SHAPES), POINTS)
    np.testing.assert_allclose(weights.sum(axis=(-2, -1)), 1.0, atol=1e-5)  # softmax over levels x points
    assert ((locations < 0) | (locations > 1)).any()  # zero padding is exercised

    reference = ms_deform_attn_pytorch(torch.from_numpy(value).double(), SHAPES, torch.from_numpy(locations).double(),
                                       torch.from_numpy(weights).double())
    plugin_out = reference.view(N, LQ, HEADS, d).float().numpy()
    result = session.run(["out"], {**feeds, node.output[0]: plugin_out})[0]
    expected = _session(decomposition).run(None, feeds)[0]
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=1e-5)


def test_no_tensorrt_is_a_clear_unavailable_state() -> None:
    available, reason = plugin_availability(None)
    assert not available and reason.startswith("unavailable")
    files = {"backbone.onnx": {}, "head.onnx": {}, "head" + MSDA_PLUGIN_SUFFIX: {}}
    name, why = choose_onnx_graph(files, "head", "auto", None)
    assert name == "head.onnx" and "unavailable" in why
    assert choose_onnx_graph(files, "backbone", "auto", None)[0] == "backbone.onnx"
    assert choose_onnx_graph(files, "head", "decomposition", None)[0] == "head.onnx"
    with pytest.raises(RuntimeError, match="unavailable"):
        choose_onnx_graph(files, "head", "plugin", None)
    with pytest.raises(ValueError, match="--msda-plugin"):
        choose_onnx_graph({"fused.onnx": {}}, "fused", "plugin", None)
    with pytest.raises(ValueError, match="msda must be one of"):
        choose_onnx_graph(files, "head", "cuda", None)


@pytest.mark.slow
def test_model_dir_plugin_variant(tmp_path: Path) -> None:
    """dsa_nano: one plugin node per MSDeformAttn module, listed and hashed in the manifest next to fused.onnx."""
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    manifest = export_model_dir(model, tmp_path, 64, 128, graphs=("fused",), msda_plugin=True)
    name = "fused" + MSDA_PLUGIN_SUFFIX
    entry = manifest["files"][name]
    assert entry["graph"] == "fused" and "TensorRT only" in entry["variant"]
    assert entry["sha256"] == sha256_file(tmp_path / name)
    modules = sum(isinstance(m, MSDeformAttn) for m in model.modules())
    plugin_ops, fused_ops = graph_op_types(tmp_path / name), graph_op_types(tmp_path / "fused.onnx")
    assert modules > 0 and plugin_ops[PLUGIN_OP_TYPE] == modules
    assert "GridSample" not in plugin_ops and PLUGIN_OP_TYPE not in fused_ops
    assert entry["inputs"] == manifest["files"]["fused.onnx"]["inputs"]
    assert entry["outputs"] == manifest["files"]["fused.onnx"]["outputs"]

    # the whole plugin graph, each node computed by the reference, against the decomposition graph in ORT
    image = np.random.default_rng(0).integers(0, 256, (1, 3, 64, 128), dtype=np.uint8)
    ids, anomaly = _run_with_reference_plugin(onnx.load(str(tmp_path / name)), {"image": image}, ["class_ids", "anomaly"])
    ref_ids, ref_anomaly = _session(onnx.load(str(tmp_path / "fused.onnx"))).run(["class_ids", "anomaly"], {"image": image})
    np.testing.assert_allclose(anomaly, ref_anomaly, atol=1e-4)
    assert (ids == ref_ids).mean() > 0.999
    assert np.ptp(ref_anomaly) > 1e-3  # a map, not a constant: the comparison can fail
