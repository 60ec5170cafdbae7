"""Run a DSA model over a benchmark and accumulate its metrics (the engine behind ``dsa eval``).

Evaluation resolution (docs/eval_reference.md §2.6, pitfall 4), batch 1, ``EvalOptions.eval_size``:

* ``"model"`` (default): each image is resized so that its short side is the model's ``cfg.test_short_side``, the
  scale it was trained at (detectron2's ResizeShortestEdge at test time); a model without one (the paper presets,
  trained on Cityscapes at its own resolution) and an image already at that scale are fed at their native resolution.
  Why: a model trained on 256-px frames scores 1024x2048 frames 4x out of scale (dsa_nano: FS L&F AuPRC 47.5 / FPR95
  96.8 native against 63.5 / 3.5 at its scale), and the node always feeds it at its export size;
* ``"native"``: every image at its own resolution;
* ``(H, W)``: every image resized to H x W.

The model pads its input to a multiple of ``cfg.size_divisor`` (32) and crops its scores back. A resized image's
anomaly / semantic scores are resized back to the LABEL resolution (bilinear) before any metric is computed: labels
are never resized, so pixel counts always equal the official ones.

Metrics: pooled anomaly AuPRC / FPR95 / AUROC over all valid pixels of all images (exact, streaming:
``AnomalyMetricAccumulator``); mIoU from one pooled confusion matrix for ``cityscapes`` (whose anomaly metrics are
undefined: it has no anomaly pixels); SMIYC component metrics (sIoU, PPV, mean F1) for the SMIYC sets. Those need
the dataset's best-F1 pixel threshold first, so the SMIYC score maps and labels are kept in memory until the pass
ends (10 + 30 frames; float32 scores + uint8 labels).

Baselines: from the same forward pass, every anomaly set is also scored with the zero-cost baselines of
dsa_core.eval.baselines (pixel metrics only; the SMIYC component metrics and overlays are for the model's score).
Their maps are computed at the model's output resolution and resized like the model's score.

Every frame of the set is accounted for: a frame that fails to load or predict is recorded by name with its error
(``failures``) and the run goes on; ``num_evaluated + len(failures) == num_selected`` always holds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dsa_core.data.anomaly_sets import BenchmarkDataset, Sample
from dsa_core.eval import report
from dsa_core.eval.baselines import BASELINES, baseline_scores, model_score_name
from dsa_core.eval.bootstrap import FrameScores, frame_bootstrap
from dsa_core.eval.metrics import AnomalyMetricAccumulator, ConfusionMatrix

log = logging.getLogger(__name__)

SMIYC_KEYS = ("smiyc_ra21", "smiyc_ro21")
MODEL_SCORE = "model"  # the model's score among the baselines' in the bootstrap


EVAL_SIZE_MODES = ("model", "native")


@dataclass(frozen=True)
class EvalOptions:
    """How to run: the evaluation size (EVAL_SIZE_MODES or (H, W), module docstring), an image cap, device, and how
    many overlays to draw."""

    eval_size: tuple[int, int] | str = "model"
    max_images: int | None = None
    device: str = "cpu"
    overlays: int = 3
    progress: bool = True
    baselines: bool = True
    bootstrap: int = 0  # resamples of the frames for intervals of AuPRC / FPR95 (dsa_core.eval.bootstrap); 0 = none

    def __post_init__(self) -> None:
        check_eval_size(self.eval_size)
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0 resamples, got {self.bootstrap}")


def check_eval_size(eval_size: tuple[int, int] | str) -> None:
    if isinstance(eval_size, str):
        if eval_size not in EVAL_SIZE_MODES:
            raise ValueError(f"eval_size must be one of {EVAL_SIZE_MODES} or (H, W), got {eval_size!r}")
    elif len(eval_size) != 2 or min(eval_size) < 1:
        raise ValueError(f"eval_size must be (H, W) with positive sides, got {eval_size!r}")


def image_eval_size(image_hw: tuple[int, int], eval_size: tuple[int, int] | str,
                    short_side: int | None) -> tuple[int, int] | None:
    """The H x W one image of ``image_hw`` is fed at (None = its own), for an ``eval_size`` mode and the model's
    ``cfg.test_short_side``."""
    check_eval_size(eval_size)
    if eval_size == "native" or (eval_size == "model" and short_side is None):
        return None
    if eval_size == "model":
        h, w = image_hw
        scale = short_side / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        size = (int(eval_size[0]), int(eval_size[1]))
    return None if size == tuple(image_hw) else size


def resolution_note(eval_size: tuple[int, int] | str, short_side: int | None = None) -> str:
    native = ("each image at its own resolution (batch 1), padded to a multiple of 32 inside the model and cropped "
              "back; scores compared with labels at label resolution")
    resized = ("(bilinear, antialiased), scores resized back to label resolution (bilinear) before comparison; labels "
               "never resized")
    check_eval_size(eval_size)
    if eval_size == "native":
        return "native: " + native
    if eval_size == "model":
        if short_side is None:
            return "native (the model's own scale: it has no test_short_side): " + native
        return (f"model scale: each image resized so that its short side is {short_side} px, the scale the model was "
                f"trained at (an image already at it is not resized) " + resized)
    return f"resized: each image resized to {eval_size[0]}x{eval_size[1]} " + resized


@dataclass
class PredictedMaps:
    """One image's maps at its own resolution: anomaly score, semantic argmax (optional), baselines (optional)."""

    anomaly: np.ndarray  # float32 HxW
    pred: np.ndarray | None = None  # int64 HxW train ids
    baselines: dict[str, np.ndarray] | None = None  # name -> float32 HxW


@torch.no_grad()
def predict_maps(model: torch.nn.Module, image: np.ndarray, eval_size: tuple[int, int] | None = None,
                 device: str | torch.device = "cpu", semantic: bool = False, baselines: bool = False) -> PredictedMaps:
    """Anomaly score (+ semantic argmax, + baseline maps) of one HxWx3 uint8 RGB image, at the image's resolution;
    ``eval_size`` (H, W): the size the model is fed at (``image_eval_size``), None = the image's own."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].to(device)
    if eval_size is not None and tuple(eval_size) != (h, w):
        x = F.interpolate(x.float(), size=tuple(eval_size), mode="bilinear", align_corners=False, antialias=True)
    out = model.predict(x)
    anomaly, sem = out["anomaly"], out["semantic"]
    extra = None
    if baselines:
        maps = baseline_scores(sem[0].float().cpu().numpy())
        extra = torch.from_numpy(np.stack([maps[name] for name in BASELINES]))[None].to(anomaly.device)
    if tuple(anomaly.shape[-2:]) != (h, w):
        anomaly = F.interpolate(anomaly[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        if semantic:
            sem = F.interpolate(sem, size=(h, w), mode="bilinear", align_corners=False)
        if extra is not None:
            extra = F.interpolate(extra, size=(h, w), mode="bilinear", align_corners=False)
    return PredictedMaps(
        anomaly=anomaly[0].float().cpu().numpy(),
        pred=sem[0].argmax(0).cpu().numpy().astype(np.int64) if semantic else None,
        baselines=None if extra is None else {n: extra[0, i].float().cpu().numpy() for i, n in enumerate(BASELINES)})


def predict_scores(model: torch.nn.Module, image: np.ndarray, eval_size: tuple[int, int] | None = None,
                   device: str | torch.device = "cpu", semantic: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(anomaly scores HxW float32, semantic argmax HxW int64 or None) at the image's own resolution."""
    maps = predict_maps(model, image, eval_size, device, semantic)
    return maps.anomaly, maps.pred


def _component_metrics(key: str, curve, frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    from dsa_core.eval import components

    sizes = components.ANOMALY_TRACK if key == "smiyc_ra21" else components.OBSTACLE_TRACK
    thresh = components.component_threshold(curve)
    acc = components.ComponentMetricAccumulator(thresh, sizes)
    for scores, label in frames:
        acc.update(scores, label)
    result = acc.compute()
    result["thresh_p"] = thresh
    result["size_filter"] = {"min_pred_size": sizes.min_pred_size, "min_gt_size": sizes.min_gt_size}
    return result


def evaluate_dataset(model: torch.nn.Module, dataset: BenchmarkDataset, options: EvalOptions,
                     out_dir: Path | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on every selected frame of ``dataset``; writes plots / overlays under ``out_dir``."""
    key = dataset.key
    n_found = len(dataset)
    n_sel = n_found if options.max_images is None else min(n_found, int(options.max_images))
    is_semantic = key == "cityscapes"
    # exact pooled metrics; to resample frames (the bootstrap) the scores are kept per frame instead
    accumulator = FrameScores if options.bootstrap else AnomalyMetricAccumulator
    anomaly_acc = None if is_semantic else accumulator()
    baseline_accs = ({name: accumulator() for name in BASELINES} if options.baselines and not is_semantic else {})
    confusion = ConfusionMatrix(model.cfg.num_classes) if is_semantic else None
    keep_frames: list[tuple[np.ndarray, np.ndarray]] | None = [] if key in SMIYC_KEYS else None
    evaluated: list[str] = []
    failures: list[dict[str, str]] = []
    overlay_paths: list[str] = []
    t0 = time.perf_counter()
    for i in tqdm(range(n_sel), desc=f"eval {key}", unit="img", disable=not options.progress):
        name = dataset.frames[i].name
        try:
            sample: Sample = dataset[i]
            size = image_eval_size(sample.image.shape[:2], options.eval_size, model.cfg.test_short_side)
            maps = predict_maps(model, sample.image, size, options.device, is_semantic,
                                baselines=bool(baseline_accs))
            scores, pred = maps.anomaly, maps.pred
            if confusion is not None:
                confusion.update(pred, sample.semantic)
            if anomaly_acc is not None:
                anomaly_acc.update(scores, sample.label)
            for baseline, acc in baseline_accs.items():
                acc.update(maps.baselines[baseline], sample.label)
            if keep_frames is not None:
                keep_frames.append((scores, sample.label))
        except Exception as exc:  # recorded by name and reported; the run's exit status reflects it
            log.error("%s: frame %s failed: %s: %s", key, name, type(exc).__name__, exc)
            failures.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        evaluated.append(name)
        if out_dir is not None and len(overlay_paths) < options.overlays:
            path = out_dir / "overlays" / key / f"{name}.png"
            report.write_overlay(path, sample.image, scores, sample.label)
            overlay_paths.append(str(path.relative_to(out_dir)))
    seconds = time.perf_counter() - t0

    result: dict[str, Any] = {
        "key": key, "title": dataset.title, "root": str(dataset.root),
        "num_found": n_found, "num_selected": n_sel, "num_evaluated": len(evaluated), "failures": failures,
        "official_count": dataset.official_count, "seconds": seconds,
        "images_per_second": len(evaluated) / seconds if seconds > 0 else float("nan"),
        "overlays": overlay_paths,
    }
    if confusion is not None:
        sem = confusion.compute()
        names = list(model.cfg.class_names) if model.cfg.class_names else [str(c) for c in range(confusion.num_classes)]
        result.update(miou=sem["miou"], pixel_accuracy=sem["pixel_accuracy"],
                      iou={n: float(v) for n, v in zip(names, sem["iou"])})
    if anomaly_acc is not None and evaluated:
        curve = anomaly_acc.curve()
        result.update(curve.metrics())
        if curve.defined and out_dir is not None:
            plots = report.write_curve_plots(curve, out_dir / "plots", key, dataset.title)
            result["plots"] = {kind: str(Path(p).relative_to(out_dir)) for kind, p in plots.items()}
        if keep_frames is not None and curve.defined:
            result["components"] = _component_metrics(key, curve, keep_frames)
        if baseline_accs:
            result["baselines"] = {name: acc.curve().metrics() for name, acc in baseline_accs.items()}
        if options.bootstrap:
            _add_bootstrap(result, {MODEL_SCORE: anomaly_acc, **baseline_accs}, options.bootstrap)
    return result


def _add_bootstrap(result: dict[str, Any], frame_scores: dict[str, FrameScores], resamples: int) -> None:
    """Intervals of the model's and each baseline's AuPRC / FPR95 over resampled frames, and how often the model's
    AuPRC beats each baseline's; a set the bootstrap cannot resample (one frame, no anomaly) gets the reason."""
    try:
        boot = frame_bootstrap(frame_scores, resamples, reference=MODEL_SCORE)
    except ValueError as exc:
        log.warning("%s: no bootstrap: %s", result["key"], exc)
        result["bootstrap"] = {"error": str(exc)}
        return
    result["bootstrap"] = boot[MODEL_SCORE]
    for name, entry in result.get("baselines", {}).items():
        entry["bootstrap"] = boot[name]


class DatasetRootError(ValueError):
    """No directory given for a dataset to evaluate (a user error: ``dsa eval`` exits 2)."""


def dataset_roots(keys: list[str], root: Path | None, explicit: dict[str, Path]) -> dict[str, Path]:
    """Each dataset's directory: ``explicit[key]`` wins; else ``root/key`` if that folder exists (the layout
    ``dsa synth all --out DIR`` writes), else ``root`` itself."""
    roots = {}
    for key in dict.fromkeys(keys):
        if key in explicit:
            roots[key] = explicit[key]
        elif root is not None:
            roots[key] = root / key if (root / key).is_dir() else root
        else:
            raise DatasetRootError(f"no root for {key!r}: pass --root DIR or --root-for {key}=DIR")
    return roots


def run_evaluation(checkpoint: Path | str, roots: dict[str, Path], out_dir: Path | str,
                   options: EvalOptions = EvalOptions()) -> dict[str, Any]:
    """Evaluate a checkpoint on each ``roots`` dataset; writes metrics.json, table.md, plots/ and overlays/."""
    from dsa_core.checkpoint import model_from_checkpoint
    from dsa_core.data.anomaly_sets import open_benchmark

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = {key: open_benchmark(key, root) for key, root in roots.items()}  # fail fast on layout errors
    model, data = model_from_checkpoint(checkpoint, map_location=options.device)
    model.to(options.device).eval()
    results: dict[str, dict[str, Any]] = {}
    for key, dataset in datasets.items():
        log.info("evaluating %s on %s (%d frames under %s)", Path(checkpoint).name, key, len(dataset), dataset.root)
        results[key] = evaluate_dataset(model, dataset, options, out_dir)
    resolution = resolution_note(options.eval_size, model.cfg.test_short_side)
    payload = {
        "checkpoint": str(checkpoint),
        "model": model.cfg.name,
        "anomaly_score": model.cfg.score,
        "scores": {"model": model_score_name(model.cfg.score), **(BASELINES if options.baselines else {})},
        "step": data.get("step"),
        "eval_resolution": resolution,
        "eval_size": options.eval_size if isinstance(options.eval_size, str) else list(options.eval_size),
        "test_short_side": model.cfg.test_short_side,
        "max_images": options.max_images,
        "metric_conventions": {
            "auprc": "step-wise average precision (= sklearn average_precision_score), pixels pooled, void dropped",
            "fpr95": "FPR at the first (highest) threshold with TPR >= 0.95 (Fishyscapes / SMIYC rule)",
            "miou": "pooled confusion matrix over the train ids, void dropped",
        },
        "datasets": results,
        "average": report.average_anomaly(results),
        "average_baselines": {name: report.average_anomaly(results, name) for name in BASELINES} if options.baselines else {},
        "num_failures": sum(len(r["failures"]) for r in results.values()),
    }
    report.write_metrics_json(out_dir / "metrics.json", payload)
    (out_dir / "table.md").write_text(report.table_markdown(Path(checkpoint).stem, results, resolution,
                                                            model_score_name(model.cfg.score)))
    return payload
