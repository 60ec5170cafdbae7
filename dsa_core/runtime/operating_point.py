"""A model's operating point (anomaly threshold, minimum obstacle area) and where each value in force came from.

One rule for the node, ``dsa bag-eval`` and ``dsa demo`` (``resolve_operating_point``):
parameter set -> the parameter; else the model dir's manifest (``operating_point``, written by ``dsa calibrate``);
else the per-score fallback below. Unset means: threshold None or NaN, minimum area None or 0.

Why per-score fallbacks: the scores are not in [0, 1] (Eq. 2 drops below 0 where several queries claim one class;
RbA lies in [-K, 0]), so no single number suits every score. msp 0.5 = the best class score is below one half;
rba -0.5 = the class evidence sum_k tanh(semantic[k]) is below 0.5, about the same pixel (tanh(0.55) = 0.5).
Both are guesses, not calibrations; reports say so.

The manifest stores the minimum area as a share of the image (calibrated on frames of one size, used on cameras
of any size); the node parameter ``min_obstacle_area`` is in pixels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FALLBACK_THRESHOLD: dict[str, float] = {"msp": 0.5, "rba": -0.5}
#: about 200 px at 256 x 512 (the node's former fixed default), 3100 px at 1920 x 1080
FALLBACK_MIN_AREA_FRACTION = 0.0015
MANIFEST_KEY = "operating_point"
DEFAULT_SCORE = "msp"  # a backend without a manifest (test engines) is taken to output an msp-like score
PARAMETER, MANIFEST, FALLBACK = "parameter", "manifest", "fallback"


@dataclass(frozen=True)
class OperatingPoint:
    """Values in force. The minimum area is ``max(min_area_px, ceil(min_area_fraction * H * W))``."""

    score: str
    anomaly_threshold: float
    threshold_source: str  # parameter | manifest | fallback
    min_area_px: int
    min_area_fraction: float
    min_area_source: str
    calibration: dict[str, Any] | None = None  # the manifest's record of how the values were chosen

    def min_area_for(self, height: int, width: int) -> int:
        return max(self.min_area_px, math.ceil(self.min_area_fraction * height * width))

    def describe(self) -> dict[str, Any]:
        """For reports: each value with its source, and the calibration record if one was used."""
        area: dict[str, Any] = ({"pixels": self.min_area_px} if self.min_area_source == PARAMETER
                                else {"fraction_of_image": self.min_area_fraction})
        return {"score": self.score,
                "anomaly_threshold": {"value": self.anomaly_threshold, "source": self.threshold_source},
                "min_obstacle_area": {**area, "source": self.min_area_source},
                "calibration": self.calibration}

    def summary(self) -> str:
        area = (f"{self.min_area_px} px" if self.min_area_source == PARAMETER
                else f"{100 * self.min_area_fraction:.3g} % of the image")
        return (f"anomaly_threshold {self.anomaly_threshold:.6g} ({self.threshold_source}), "
                f"min obstacle area {area} ({self.min_area_source}), score {self.score}")


def _unset_threshold(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def resolve_operating_point(manifest: Mapping[str, Any] | None, threshold: float | None = None,
                            min_area_px: int | None = None) -> OperatingPoint:
    """Parameter -> manifest ``operating_point`` -> per-score fallback, for the threshold and the minimum area."""
    manifest = manifest or {}
    score = str(manifest.get("score", DEFAULT_SCORE))
    if score not in FALLBACK_THRESHOLD:
        raise ValueError(f"unknown anomaly score {score!r} in the manifest; known: {sorted(FALLBACK_THRESHOLD)}")
    op = manifest.get(MANIFEST_KEY) or {}
    if not isinstance(op, Mapping):
        raise ValueError(f"manifest {MANIFEST_KEY!r} must be a mapping, got {type(op).__name__}")
    if op and op.get("score", score) != score:
        raise ValueError(f"manifest {MANIFEST_KEY} was calibrated for score {op.get('score')!r} but the model "
                         f"outputs {score!r}: run dsa calibrate again")
    calibration = dict(op["calibration"]) if isinstance(op.get("calibration"), Mapping) else None

    if not _unset_threshold(threshold):
        if not math.isfinite(float(threshold)):
            raise ValueError(f"anomaly threshold must be finite (or NaN = unset), got {threshold}")
        t, t_src = float(threshold), PARAMETER
    elif op.get("anomaly_threshold") is not None:
        t, t_src = float(op["anomaly_threshold"]), MANIFEST
        if not math.isfinite(t):
            raise ValueError(f"manifest {MANIFEST_KEY}.anomaly_threshold must be finite, got {t}")
    else:
        t, t_src = FALLBACK_THRESHOLD[score], FALLBACK

    if min_area_px:
        if int(min_area_px) < 0:
            raise ValueError(f"minimum obstacle area must be >= 0 pixels (0 = unset), got {min_area_px}")
        px, frac, a_src = int(min_area_px), 0.0, PARAMETER
    elif op.get("min_obstacle_area_fraction") is not None:
        px, frac, a_src = 1, float(op["min_obstacle_area_fraction"]), MANIFEST
        if not 0.0 < frac < 1.0:
            raise ValueError(f"manifest {MANIFEST_KEY}.min_obstacle_area_fraction must be in (0, 1), got {frac}")
    else:
        px, frac, a_src = 1, FALLBACK_MIN_AREA_FRACTION, FALLBACK
    return OperatingPoint(score, t, t_src, px, frac, a_src, calibration if MANIFEST in (t_src, a_src) else None)


def write_operating_point(model_dir: str | Path, values: Mapping[str, Any]) -> dict[str, Any]:
    """Store ``values`` as the manifest's ``operating_point`` (atomic rewrite; every file is verified before and
    after, so a tampered dir is never blessed). Returns the new manifest."""
    from dsa_core.atomic import write_json_atomic
    from dsa_core.export.manifest import MANIFEST_NAME, verify_model_dir

    model_dir = Path(model_dir)
    manifest = verify_model_dir(model_dir)
    entry = dict(values)
    entry.setdefault("score", manifest.get("score", DEFAULT_SCORE))
    manifest[MANIFEST_KEY] = entry
    manifest.pop("default_anomaly_threshold", None)  # the old uncalibrated 0.5 of dsa export
    resolve_operating_point(manifest)  # refuse to write what the runtime could not read back
    write_json_atomic(model_dir / MANIFEST_NAME, manifest)
    return verify_model_dir(model_dir)
