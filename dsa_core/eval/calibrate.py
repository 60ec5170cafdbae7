"""``dsa calibrate``: choose a model's anomaly threshold and minimum obstacle area from in-distribution data.

Why from data: the scores are not probabilities (dsa_core.runtime.operating_point), so a threshold only means
something as a rate measured on frames like the ones the vehicle sees. Scores come from the model dir through the
runtime backend, i.e. exactly what the node computes (resize to the export size, the graph, resize back).

* **Threshold**: on the in-distribution val frames (Cityscapes format), the ground-truth road pixels are all
  negatives. The threshold is the smallest value t with FPR(t) = #{road pixels with score >= t} / #{road pixels}
  <= target (default 1 %): the order statistic just above the floor(target * N)-th highest road score, exact, no
  interpolation or binning. Ties can make the achieved FPR lower than the target; it is reported.
* **Recall check** (optional): one object of the training outlier pool (COCO format, the AnomalyMix pool of
  stage 2) pasted into every val frame; pixel recall and AuPRC at that threshold. It uses the training pool only,
  never an evaluation anomaly family, so it measures fit to the outliers seen in training, not generalisation.
* **Minimum obstacle area**: on the same in-distribution frames, every component of ``score >= t`` that the node
  would turn into an obstacle (on or touching the predicted drivable area, dsa_core.perception.obstacles) is a false
  obstacle. The minimum area is the smallest share of the image that removes at least ``suppress`` (99 %) of them,
  clipped to [floor, cap] (defaults 0.005 % and 0.25 % of the image: an obstacle of 0.25 % of a 1080p frame is
  about 72 x 72 px and must stay detectable even when the threshold leaves large false blobs). When the cap binds,
  the report says how many false components survive.

The values go into the model dir's manifest (``operating_point``); the node, bag-eval and the demo use them when
their parameters are unset.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.labels import ROAD

log = logging.getLogger(__name__)

DEFAULT_TARGET_FPR = 0.01
DEFAULT_SUPPRESS = 0.99
DEFAULT_AREA_FLOOR = 5e-5
DEFAULT_AREA_CAP = 2.5e-3


def _exact(fraction: float) -> Fraction:
    """The decimal the user wrote (0.01 -> 1/100), so floor(target * N) has no rounding error."""
    return Fraction(repr(float(fraction)))


def threshold_at_fpr(negatives: np.ndarray, target: float) -> tuple[float, float]:
    """(smallest t with #{s >= t} / N <= target, the FPR at t) over negative scores; t is a float32 value."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target false-positive rate must be in (0, 1), got {target}")
    s = np.sort(np.asarray(negatives, dtype=np.float32).ravel())
    n = s.size
    if n == 0:
        raise ValueError("no negative (road) pixels to calibrate on")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    allowed = math.floor(_exact(target) * n)  # false positives the target admits
    t = np.nextafter(s[n - 1 - allowed], np.float32(np.inf), dtype=np.float32)  # just above the (allowed+1)-th highest
    flagged = n - int(np.searchsorted(s, t, side="left"))
    return float(t), flagged / n


def min_area_rule(areas_px: np.ndarray, image_px: np.ndarray, suppress: float = DEFAULT_SUPPRESS,
                  floor: float = DEFAULT_AREA_FLOOR, cap: float = DEFAULT_AREA_CAP) -> dict[str, Any]:
    """Smallest share of the image that removes >= ``suppress`` of the false components (pixel areas ``areas_px``
    found in images of ``image_px`` pixels), clipped to [floor, cap]; with what it achieves."""
    if not 0.0 < suppress <= 1.0:
        raise ValueError(f"suppress must be in (0, 1], got {suppress}")
    if not 0.0 < floor <= cap < 1.0:
        raise ValueError(f"need 0 < floor <= cap < 1, got floor {floor}, cap {cap}")
    areas = np.asarray(areas_px, dtype=np.int64)
    sizes = np.asarray(image_px, dtype=np.int64)
    if areas.shape != sizes.shape or (areas < 1).any() or (sizes < areas).any():
        raise ValueError("areas_px and image_px must be matching positive pixel counts (area <= image)")
    n = areas.size
    survivors_allowed = math.floor((1 - _exact(suppress)) * n)
    if n == 0 or survivors_allowed >= n:
        wanted = 0.0
    else:
        order = np.argsort(-(areas / sizes), kind="stable")
        k = order[survivors_allowed]  # the largest component that must go
        wanted = float((areas[k] + 1) / sizes[k])  # ceil(wanted * its image) = its area + 1
    fraction = min(max(wanted, floor), cap)
    kept = int(sum(a >= math.ceil(fraction * p) for a, p in zip(areas.tolist(), sizes.tolist())))
    return {"fraction": fraction, "wanted_fraction": wanted, "capped": wanted > cap, "floored": wanted < floor,
            "false_components": n, "false_components_kept": kept,
            "suppressed": 1.0 - kept / n if n else None, "suppress_target": suppress, "floor": floor, "cap": cap}


@dataclass(frozen=True)
class CalibrationOptions:
    target_fpr: float = DEFAULT_TARGET_FPR
    suppress: float = DEFAULT_SUPPRESS
    area_floor: float = DEFAULT_AREA_FLOOR
    area_cap: float = DEFAULT_AREA_CAP
    max_frames: int | None = None
    pool_min_size: int | None = None  # None: the training default (TrainConfig.coco_min_size)
    seed: int = 0
    progress: bool = True
    ego_mask_bottom: float = 0.0  # the val camera's ego mask (the node's ego_mask_bottom_fraction)


def _false_component_areas(anomaly: np.ndarray, class_ids: np.ndarray, threshold: float,
                           ego_mask_bottom: float = 0.0) -> list[int]:
    """Pixel areas of the components the node would report as obstacles (default drivable rule, no size filter)."""
    from dsa_core.perception.obstacles import ObstacleSettings, find_obstacles

    mask = np.where(anomaly >= np.float32(threshold), np.uint8(255), np.uint8(0))
    settings = ObstacleSettings(min_area=1, ego_mask_bottom_fraction=ego_mask_bottom)
    return [d.pixel_area for d in find_obstacles(mask, class_ids, anomaly, settings)]


def calibrate(model_dir: str | Path, val_root: str | Path, pool_root: str | Path | None = None,
              options: CalibrationOptions = CalibrationOptions(), backends: tuple[str, ...] = ("onnxruntime", "torch"),
              backend_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Compute the operating point of ``model_dir`` (nothing is written; see write_operating_point)."""
    from tqdm import tqdm

    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.runtime.chain import BackendChain, runtime_factory

    t0 = time.perf_counter()
    val = CityscapesDataset(val_root, "val")
    n = len(val) if options.max_frames is None else min(len(val), options.max_frames)
    if n == 0:
        raise ValueError(f"no val frames under {val_root}")
    chain = BackendChain(backends, runtime_factory(model_dir, backend_options))
    backend = chain.start()
    score = backend.manifest.get("score", "msp")
    road_scores: list[np.ndarray] = []
    sizes: set[tuple[int, int]] = set()
    with tempfile.TemporaryDirectory(prefix="dsa_calibrate_") as scratch:
        for i in tqdm(range(n), desc="calibrate: val frames", disable=not options.progress, unit="frame"):
            image, label, _ = val.load(i)
            res = backend.infer(image[None])
            road_scores.append(res.anomaly[0][label == ROAD])
            np.save(Path(scratch) / f"{i}_a.npy", res.anomaly[0])
            np.save(Path(scratch) / f"{i}_c.npy", res.class_ids[0])
            sizes.add(image.shape[:2])
        negatives = np.concatenate(road_scores)
        threshold, fpr = threshold_at_fpr(negatives, options.target_fpr)
        areas, image_px = [], []
        for i in range(n):
            anomaly, ids = np.load(Path(scratch) / f"{i}_a.npy"), np.load(Path(scratch) / f"{i}_c.npy")
            found = _false_component_areas(anomaly, ids, threshold, options.ego_mask_bottom)
            areas += found
            image_px += [anomaly.size] * len(found)
    area = min_area_rule(np.asarray(areas, np.int64), np.asarray(image_px, np.int64), options.suppress,
                         options.area_floor, options.area_cap)
    record: dict[str, Any] = {
        "method": "dsa calibrate",
        "backend": chain.name,
        "val_root": str(val_root), "val_frames": n, "val_sizes": sorted(list(s) for s in sizes),
        "threshold_rule": f"smallest t with road-pixel FPR(score >= t) <= {options.target_fpr} on in-distribution val",
        "target_fpr": options.target_fpr, "road_pixels": int(negatives.size), "achieved_road_fpr": fpr,
        "area_rule": (f"smallest share of the image removing >= {options.suppress:.0%} of the false obstacle "
                      f"components on in-distribution val, clipped to [{options.area_floor}, {options.area_cap}]"),
        "area": area, "ego_mask_bottom": options.ego_mask_bottom,
    }
    if pool_root is not None:
        record["pool_check"] = _pool_check(backend, val, n, pool_root, threshold, options)
    record["seconds"] = time.perf_counter() - t0
    return {"score": score, "anomaly_threshold": threshold, "min_obstacle_area_fraction": area["fraction"],
            "calibration": record}


def _pool_check(backend, val, n: int, pool_root: str | Path, threshold: float,
                options: CalibrationOptions) -> dict[str, Any]:
    """Recall / AuPRC at ``threshold`` with one training-pool object pasted into each val frame (seeded)."""
    from tqdm import tqdm

    from dsa_core.data.coco_mix import AnomalyMix, CocoOutlierPool, pasted_outlier_frame
    from dsa_core.eval.metrics import AnomalyMetricAccumulator
    from dsa_core.train.config import TrainConfig

    min_size = TrainConfig().coco_min_size if options.pool_min_size is None else options.pool_min_size
    mix = AnomalyMix(CocoOutlierPool(pool_root, min_size=min_size), p=1.0)
    acc = AnomalyMetricAccumulator()
    hit = total = 0
    for i in tqdm(range(n), desc="calibrate: pool objects", disable=not options.progress, unit="frame"):
        image, label, _ = val.load(i)
        mixed, gt, outlier = pasted_outlier_frame(mix, image, label, options.seed, i)
        scores = backend.infer(mixed[None]).anomaly[0]
        acc.update(scores, gt)
        hit += int(np.count_nonzero(scores[outlier] >= np.float32(threshold)))
        total += int(np.count_nonzero(outlier))
    metrics = acc.compute() if total else {}
    return {"pool_root": str(pool_root), "frames": n, "anomaly_pixels": total,
            "pixel_recall_at_threshold": hit / total if total else None,
            "auprc": metrics.get("auprc"), "fpr95": metrics.get("fpr95"),
            "note": "training outlier pool (seen in stage 2): fit to known outliers, not generalisation"}


def write_report(out_dir: str | Path, result: dict[str, Any], markdown: str) -> None:
    """``calibration.json`` (the result) and ``calibration.md`` (``markdown``, from report_markdown) in ``out_dir``,
    each written atomically."""
    from dsa_core.atomic import write_bytes_atomic, write_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "calibration.json", result)
    write_bytes_atomic(out / "calibration.md", markdown.encode())


def report_markdown(model_dir: str | Path, result: dict[str, Any]) -> str:
    """The calibration in a few lines: values, rules, what they achieve."""
    rec = result["calibration"]
    area = rec["area"]
    lines = [f"# Calibration of {model_dir}", "",
             f"- score: {result['score']}",
             f"- anomaly_threshold: **{result['anomaly_threshold']:.9g}** ({rec['threshold_rule']}; achieved road FPR "
             f"{100 * rec['achieved_road_fpr']:.4f} % over {rec['road_pixels']} road pixels of {rec['val_frames']} frames)",
             f"- min obstacle area: **{100 * result['min_obstacle_area_fraction']:.4g} % of the image** "
             f"({rec['area_rule']}); false components on ID val: {area['false_components']}, kept at this area: "
             f"{area['false_components_kept']}" + (" (cap reached)" if area["capped"] else "")
             + (" (floor reached)" if area["floored"] else "")]
    for h, w in rec["val_sizes"]:
        lines.append(f"  - at {w}x{h}: {math.ceil(result['min_obstacle_area_fraction'] * h * w)} px")
    pool = rec.get("pool_check")
    if pool:
        recall, auprc = (("n/a" if v is None else f"{100 * v:.2f} %") for v in (pool["pixel_recall_at_threshold"],
                                                                                pool["auprc"]))
        lines.append(f"- training-pool objects pasted into val ({pool['frames']} frames, {pool['anomaly_pixels']} px): "
                     f"pixel recall at the threshold {recall}, AuPRC {auprc} ({pool['note']})")
    lines += [f"- backend: {rec['backend']}, {rec['seconds']:.1f} s", ""]
    return "\n".join(lines)
