"""ONNX export: graphs pass onnx.checker, contain only ops TensorRT 10 parses, the manifest describes and hashes
them, and ONNX Runtime agrees with PyTorch (DSAModel.predict, an independent path) on random and scene-like
images for dsa_nano (all three graphs) and dsa_tiny (fused graph)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dsa_core import build_model
from dsa_core.config import DSAConfig
from dsa_core.export.graphs import FEATURE_NAMES
from dsa_core.export.manifest import sha256_file
from dsa_core.labels import CITYSCAPES_PALETTE
from dsa_core.export.onnx_export import export_model_dir
from dsa_core.export.trt_onnx_ops import TENSORRT10_ONNX_OPS, graph_op_types, ops_unsupported_by_tensorrt

from exported_nano import H, W


def scene_image(h: int, w: int, seed: int) -> np.ndarray:
    """A road-scene-like uint8 RGB frame: sky, buildings, road with lane marks, cars, one odd object."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    horizon = h * 2 // 5
    img[:horizon] = (70, 130, 180)
    for x0 in range(0, w, w // 6):
        top = int(rng.integers(horizon // 3, horizon))
        img[top:horizon, x0:x0 + w // 8] = rng.integers(50, 120, 3)
    img[horizon:] = (128, 64, 128)
    img[horizon + (h - horizon) // 2: horizon + (h - horizon) // 2 + 2, w // 2 - 1: w // 2 + 1] = 255
    for _ in range(2):
        y, x = int(rng.integers(horizon, h - 8)), int(rng.integers(0, w - 16))
        img[y:y + 8, x:x + 16] = (0, 0, 142)
    y, x = int(rng.integers(horizon + 4, h - 6)), int(rng.integers(w // 4, 3 * w // 4))
    img[y:y + 6, x:x + 6] = (255, 200, 0)
    noise = rng.integers(-8, 9, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def parity_inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    random = rng.integers(0, 256, (1, 3, H, W), dtype=np.uint8)
    scenes = [scene_image(H, W, s).transpose(2, 0, 1)[None] for s in (0, 1)]
    return [random, *scenes]


@pytest.fixture(scope="module")
def nano(exported_nano) -> tuple[Path, torch.nn.Module, dict]:
    return exported_nano.model_dir, exported_nano.model, exported_nano.manifest


def _reference(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        pred = model.predict(torch.from_numpy(images))
    return pred["semantic"].argmax(1).numpy().astype(np.uint8), pred["anomaly"].numpy()


def _assert_parity(ids, anomaly, ref_ids, ref_anomaly) -> None:
    assert ids.dtype == np.uint8 and anomaly.dtype == np.float32 and ids.shape == ref_ids.shape
    assert np.abs(anomaly - ref_anomaly).max() <= 1e-3
    assert (ids == ref_ids).mean() >= 0.999


def test_graphs_pass_checker_and_use_only_tensorrt_ops(nano) -> None:
    out, _, manifest = nano
    for name in ("backbone.onnx", "head.onnx", "fused.onnx"):
        proto = onnx.load(str(out / name))
        onnx.checker.check_model(proto, full_check=True)
        ops = graph_op_types(proto)
        assert set(ops) <= TENSORRT10_ONNX_OPS, f"{name}: {sorted(set(ops) - TENSORRT10_ONNX_OPS)}"
        assert ops_unsupported_by_tensorrt(proto) == []
        assert manifest["files"][name]["op_types"] == dict(sorted(ops.items()))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    head_ops = graph_op_types(out / "head.onnx")
    assert head_ops["GridSample"] > 0  # MSDeformAttn went through the grid_sample path, no custom op
    assert "ArgMax" in head_ops


def test_op_checker_flags_unsupported_ops() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Hardmax", ["a"], ["b"]),
             helper.make_node("MSDA", ["b"], ["y"], domain="custom")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]))
    assert ops_unsupported_by_tensorrt(model) == ["Hardmax", "custom::MSDA"]


def test_graph_io_is_fixed_size_uint8_in_ids_and_scores_out(nano) -> None:
    out, _, _ = nano
    sess = ort.InferenceSession(str(out / "head.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in sess.get_inputs()}
    assert inputs["image"] == ("tensor(uint8)", [1, 3, H, W])
    assert list(inputs) == ["image", *FEATURE_NAMES]
    outputs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    assert outputs == {"class_ids": ("tensor(uint8)", [1, H, W]), "anomaly": ("tensor(float)", [1, H, W])}


def test_manifest_hashes_and_describes_the_model_dir(nano) -> None:
    out, model, manifest = nano
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest["files"]) == {"backbone.onnx", "head.onnx", "fused.onnx", "model.pt"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(out / name) and entry["bytes"] == (out / name).stat().st_size
    assert manifest["input"]["height"] == H and manifest["input"]["width"] == W and manifest["input"]["dtype"] == "uint8"
    assert manifest["normalization"]["mean"] == list(model.cfg.pixel_mean)
    assert [c["name"] for c in manifest["classes"]] == list(model.cfg.class_names)
    assert manifest["classes"][0]["color"] == [128, 64, 128] and len(CITYSCAPES_PALETTE) == 19
    assert manifest["score"] == "msp" and "operating_point" not in manifest  # dsa calibrate measures it
    assert manifest["opset"] == 17 and manifest["versions"]["torch"] == torch.__version__
    assert DSAConfig.from_dict(manifest["config"]) == model.cfg


def test_onnxruntime_matches_pytorch_nano_fused_and_split(nano) -> None:
    out, model, _ = nano
    fused = ort.InferenceSession(str(out / "fused.onnx"), providers=["CPUExecutionProvider"])
    backbone = ort.InferenceSession(str(out / "backbone.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(out / "head.onnx"), providers=["CPUExecutionProvider"])
    for images in parity_inputs():
        ref_ids, ref_anomaly = _reference(model, images)
        ids, anomaly = fused.run(["class_ids", "anomaly"], {"image": images})
        _assert_parity(ids, anomaly, ref_ids, ref_anomaly)
        feats = backbone.run(list(FEATURE_NAMES), {"image": images})
        with torch.no_grad():
            x, _ = model.preprocess(torch.from_numpy(images))
            ref_feats = model.backbone_features(x)
        for f, rf in zip(feats, ref_feats):
            np.testing.assert_allclose(f, rf.numpy(), atol=1e-4, rtol=1e-4)
        ids, anomaly = head.run(["class_ids", "anomaly"], {"image": images, **dict(zip(FEATURE_NAMES, feats))})
        _assert_parity(ids, anomaly, ref_ids, ref_anomaly)


@pytest.mark.slow
def test_onnxruntime_matches_pytorch_tiny(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("dsa_tiny").eval()
    export_model_dir(model, tmp_path, H, W, batch=1, graphs=("fused",))
    sess = ort.InferenceSession(str(tmp_path / "fused.onnx"), providers=["CPUExecutionProvider"])
    assert ops_unsupported_by_tensorrt(tmp_path / "fused.onnx") == []
    for images in parity_inputs():
        ref_ids, ref_anomaly = _reference(model, images)
        ids, anomaly = sess.run(["class_ids", "anomaly"], {"image": images})
        _assert_parity(ids, anomaly, ref_ids, ref_anomaly)


def test_export_argument_errors(tmp_path: Path) -> None:
    model = build_model("dsa_nano")
    with pytest.raises(ValueError, match="opset"):
        export_model_dir(model, tmp_path, H, W, opset=15)
    with pytest.raises(ValueError, match="only useful together"):
        export_model_dir(model, tmp_path, H, W, graphs=("backbone",))
    with pytest.raises(ValueError, match="positive"):
        export_model_dir(model, tmp_path, 0, W)


def test_export_size_defaults_to_the_models_training_scale(tmp_path: Path, caplog) -> None:
    """`dsa export` without --height/--width: dsa_nano at 256x512 (its test_short_side on a 2:1 frame); a paper preset's
    config (no training scale) at 512x1024; another size is refused when not positive and warned about for nano."""
    import json
    import logging

    from dsa_core.cli import main
    from dsa_core.config import get_config
    from dsa_core.export.onnx_export import DEFAULT_EXPORT_SIZE, default_export_size

    assert default_export_size(get_config("dsa_nano")) == (256, 512)
    assert default_export_size(get_config("dsa_tiny")) == DEFAULT_EXPORT_SIZE == (512, 1024)
    assert main(["export", "--preset", "dsa_nano", "--out", str(tmp_path / "nano"), "--graphs", "fused"]) == 0
    manifest = json.loads((tmp_path / "nano" / "manifest.json").read_text())
    assert (manifest["input"]["height"], manifest["input"]["width"]) == (256, 512)
    with caplog.at_level(logging.WARNING, logger="dsa_core.commands.export"):
        assert main(["export", "--preset", "dsa_nano", "--out", str(tmp_path / "big"), "--graphs", "fused",
                     "--height", "128", "--width", "256"]) == 0
    assert "not at its training scale 256x512" in caplog.text
    manifest = json.loads((tmp_path / "big" / "manifest.json").read_text())
    assert (manifest["input"]["height"], manifest["input"]["width"]) == (128, 256)
    assert main(["export", "--preset", "dsa_nano", "--out", str(tmp_path / "bad"), "--height", "0"]) == 2


def test_head_with_scores_outputs_are_consistent() -> None:
    """The optional semantic-score output: class ids are its argmax and the MSP anomaly is 1 - its max (Eq. 2)."""
    from dsa_core.export.graphs import BackboneGraph, HeadGraph

    model = build_model("dsa_nano").eval()
    image = torch.from_numpy(parity_inputs()[1])
    with torch.no_grad():
        ids, anomaly, semantic = HeadGraph(model, with_scores=True)(image, *BackboneGraph(model)(image))
    assert semantic.shape == (1, 19, H, W) and ids.dtype == torch.uint8
    torch.testing.assert_close(ids, semantic.argmax(1).to(torch.uint8))
    torch.testing.assert_close(anomaly, 1.0 - semantic.max(1).values)
