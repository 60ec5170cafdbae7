"""Periodic validation during training: mIoU on a Cityscapes-format split, anomaly metrics on (image, label) pairs.

Why here and not in the evaluation command: the training loop needs a cheap in-process check of what it is
learning. Metrics come from ``dsa_core.eval.metrics`` (pooled confusion matrix; exact AuPRC / FPR95 / AUROC), so
numbers logged during training agree with ``dsa eval``. Anything with ``predict(images [1,3,H,W] 0..255) ->
{"semantic": [1,K,H,W], "anomaly": [1,H,W]}`` can be validated (DSAModel; PatchSegViT for semantic only).
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

import numpy as np
import torch

from dsa_core.labels import VOID
from dsa_core.eval.metrics import AnomalyMetricAccumulator, ConfusionMatrix


class Predictor(Protocol):
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...


def _to_batch(image: Any, device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 numpy / [3,H,W] tensor -> [1, 3, H, W] float 0..255 on ``device``."""
    t = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else torch.as_tensor(image)
    if t.dim() == 3 and t.shape[-1] == 3 and t.shape[0] != 3:
        t = t.permute(2, 0, 1)
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected an image HxWx3 or 3xHxW, got shape {tuple(t.shape)}")
    return t[None].to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate_semantic(model: Predictor, samples: Iterable[tuple[Any, Any]], num_classes: int,
                      device: torch.device | str = "cpu", ignore_index: int = VOID) -> dict[str, Any]:
    """mIoU / per-class IoU / pixel accuracy over ``samples`` of (image, train-id label HxW)."""
    device = torch.device(device)
    cm = ConfusionMatrix(num_classes, ignore_index)
    n = 0
    for image, label in samples:
        out = model.predict(_to_batch(image, device))
        pred = out["semantic"][0].argmax(0).to("cpu").numpy().astype(np.int64)
        cm.update(pred, np.asarray(label, dtype=np.int64))
        n += 1
    if n == 0:
        raise ValueError("semantic validation got no samples")
    res = cm.compute()
    return {"miou": res["miou"], "pixel_accuracy": res["pixel_accuracy"], "iou": res["iou"].tolist(), "images": n}


@torch.no_grad()
def evaluate_anomaly(model: Predictor, samples: Iterable[tuple[Any, Any]], device: torch.device | str = "cpu",
                     ignore_index: int = VOID) -> dict[str, float | int]:
    """Pooled AuPRC / FPR95 / AUROC of the model's anomaly score over (image, anomaly label 0/1/255) pairs."""
    device = torch.device(device)
    acc = AnomalyMetricAccumulator(ignore_index)
    for image, label in samples:
        out = model.predict(_to_batch(image, device))
        if "anomaly" not in out:
            raise KeyError(f"model.predict returned {sorted(out)}; anomaly validation needs an 'anomaly' score")
        acc.update(out["anomaly"][0].float().to("cpu").numpy(), np.asarray(label))
    if acc.num_images == 0:
        raise ValueError("anomaly validation got no samples")
    return {**acc.compute(), "images": acc.num_images}


def cityscapes_val_samples(root: str, split: str = "val", max_images: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, train-id label) of a Cityscapes-format split, read once (small synthetic splits)."""
    from dsa_core.data.cityscapes import CityscapesDataset

    ds = CityscapesDataset(root, split)
    n = len(ds) if max_images is None else min(len(ds), max_images)
    return [ds.load(i)[:2] for i in range(n)]


#: Seed of the pasted-outlier validation set: fixed, not the training seed, so that runs with different seeds are
#: compared on the same frames (seed 0 was the default before, so earlier seed-0 runs are unchanged).
ANOMALY_VAL_SEED = 0


def mixed_anomaly_samples(samples: list[tuple[np.ndarray, np.ndarray]], coco_root: str, seed: int = ANOMALY_VAL_SEED,
                          min_size: int = 480, scale: float = 1.0, road_prob: float = 0.0,
                          low_contrast_prob: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """A deterministic anomaly set from a val split: one COCO outlier pasted into every frame (AnomalyMix, p = 1).

    Label: as ``pasted_outlier_frame`` (1 pasted, 0 in-distribution, 255 void). Uses the same pool as stage 2
    (so it measures outlier-exposure fit, not generalisation to unseen anomaly types; a proper benchmark set is
    read by ``dsa eval``). Training validation uses the objects at their own size anywhere in the frame; ``scale``
    and ``road_prob`` (AnomalyMix's) build the same check at another fixed size or standing on the road;
    ``low_contrast_prob`` recolours that share of the objects towards what they cover (same objects, same places).
    """
    from dsa_core.data.coco_mix import AnomalyMix, CocoOutlierPool, pasted_outlier_frame

    mix = AnomalyMix(CocoOutlierPool(coco_root, min_size=min_size), p=1.0, scale_range=(scale, scale),
                     road_prob=road_prob, low_contrast_prob=low_contrast_prob)
    return [pasted_outlier_frame(mix, image, label, seed, i)[:2] for i, (image, label) in enumerate(samples)]
