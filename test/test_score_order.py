"""Where the classes are combined (dsa_core.model.scoring.SCORE_ORDERS): each order against a float64 computation
written from its definition; an export records its order and ONNX Runtime and the torch backend agree on it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsa_core import build_model
from dsa_core.export.onnx_export import export_model_dir
from dsa_core.model.scoring import SCORE_ORDERS, semantic_at_input
from dsa_core.runtime import create_backend


def _reference(logits: torch.Tensor, masks: torch.Tensor, padded, original, order: str) -> torch.Tensor:
    """float64, one class map at a time."""
    logits, masks = logits.double(), masks.double()
    probs = torch.softmax(logits, -1)[..., :-1]  # [B, Q, K]
    if order == "mask2former":
        up = torch.sigmoid(F.interpolate(masks, size=padded, mode="bilinear", align_corners=False))
        maps = [(probs[:, :, k, None, None] * up).sum(1) for k in range(probs.shape[-1])]
        return torch.stack(maps, 1)[..., : original[0], : original[1]]
    low = torch.stack([(probs[:, :, k, None, None] * torch.sigmoid(masks)).sum(1) for k in range(probs.shape[-1])], 1)
    return F.interpolate(low, size=padded, mode="bilinear", align_corners=False)[..., : original[0], : original[1]]


@pytest.mark.parametrize("order", SCORE_ORDERS)
@pytest.mark.parametrize("original", [(32, 64), (27, 50)])
def test_each_order_matches_its_definition(order, original) -> None:
    g = torch.Generator().manual_seed(1)
    logits, masks = torch.randn(2, 6, 5, generator=g), 3 * torch.randn(2, 6, 8, 16, generator=g)
    got = semantic_at_input(logits, masks, (32, 64), original, order)
    assert got.shape == (2, 4, *original)
    torch.testing.assert_close(got.double(), _reference(logits, masks, (32, 64), original, order), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="score order"):
        semantic_at_input(logits, masks, (32, 64), original, "nope")


@pytest.mark.slow
def test_export_records_the_order_and_backends_agree(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    export_model_dir(model, tmp_path, 64, 128, graphs=("fused",), score_order="classes_first")
    assert json.loads((tmp_path / "manifest.json").read_text())["score_order"] == "classes_first"
    images = np.random.default_rng(2).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)
    ort_res = create_backend("onnxruntime", tmp_path).infer(images)
    torch_res = create_backend("torch", tmp_path).infer(images)
    assert (ort_res.class_ids == torch_res.class_ids).mean() >= 0.999
    np.testing.assert_allclose(ort_res.anomaly, torch_res.anomaly, atol=1e-4)
    with torch.no_grad():  # and it is the classes-first score, not Mask2Former's
        x, hw = model.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2))
        out = model.forward_features(x)
        ref = model.scores_from_outputs(out, tuple(x.shape[-2:]), hw, "classes_first")["anomaly"].numpy()
    np.testing.assert_allclose(torch_res.anomaly, ref, atol=1e-5)
    with pytest.raises(ValueError, match="score_order"):
        export_model_dir(model, tmp_path / "bad", 64, 128, graphs=("fused",), score_order="late")
