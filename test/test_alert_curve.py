"""The alert operating curve: hysteresis against a flood-fill reference, and the replay of cached maps against
bag-eval on the same drive."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dsa_core.bags.drive import DriveSpec
from dsa_core.bags.writer import write_drive_bag
from dsa_core.cli import main as dsa_main
from dsa_core.eval.alert_curve import (CachedDrive, CurvePoint, cache_drive, curve_rows, hysteresis_mask, replay,
                                     replay_many)

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"


def test_hysteresis_mask_matches_a_flood_fill() -> None:
    rng = np.random.default_rng(0)
    # smooth random fields, so regions above each level have many shapes and sizes
    field = ndimage.gaussian_filter(rng.random((64, 96)), 2.0).astype(np.float32)
    field = (field - field.min()) / (field.max() - field.min())
    for threshold, extend in [(0.8, 0.6), (0.7, 0.3), (0.9, 0.89), (0.95, 0.0)]:
        got = hysteresis_mask(field, threshold, extend) > 0
        labels, n = ndimage.label(field >= extend, structure=np.ones((3, 3)))
        expected = np.zeros_like(got)
        for i in range(1, n + 1):
            region = labels == i
            if (field[region] >= threshold).any():
                expected |= region
        assert np.array_equal(got, expected), (threshold, extend)
        assert got.sum() >= (field >= threshold).sum()
    plain = hysteresis_mask(field, 0.7, None)
    assert np.array_equal(plain > 0, field >= 0.7)
    assert np.array_equal(hysteresis_mask(field, 0.7, 0.7), plain)  # extend at the threshold: nothing grows


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> tuple[Path, CachedDrive]:
    """A short drive: a clear street, then an animal approaching from 16 m; cached with the shipped model."""
    root = tmp_path_factory.mktemp("curve")
    bag = root / "bag"
    write_drive_bag(bag, DriveSpec(frames=16, height=256, width=512, fps=5.0, seed=5, segment_frames=8,
                                   obstacle_probability=0.5, obstacle_start_m=(12.0, 16.0)),
                    storage="sqlite3", progress=False)
    return bag, cache_drive(bag, SHIPPED, root / "cache", progress=False)


@pytest.mark.parametrize("threshold,area,pitch", [(0.5, 1, 0.0), (0.9, 20, 0.0), (0.5, 1, -60.0)])
def test_replay_gives_the_alerts_of_bag_eval(drive, tmp_path: Path, threshold: float, area: int, pitch: float) -> None:
    """Pitch -60: the whole image lies above the horizon, and the horizon gate drops every alert in both."""
    bag, cached = drive
    out = tmp_path / "eval"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(SHIPPED), "--out", str(out), "--no-progress",
                     "--backend", "onnxruntime", "--threshold", str(threshold), "--min-obstacle-area", str(area),
                     "--ego-mask-bottom", "0.15", "--mount-pitch-deg", str(pitch)]) == 0
    expected = json.loads((out / "report.json").read_text())["alerts"]
    got = replay(cached, CurvePoint(threshold, area), ego_mask_bottom=0.15, mount_pitch_deg=pitch)
    # the comparison covers alerts, not only silence
    assert (expected["frames_with_alert"] > 0) == (pitch == 0.0)
    for key in ("frames_with_alert", "true_alert_frames", "false_alert_frames_without_obstacle", "obstacles_confirmed",
                "obstacles_total", "false_alert_tracks", "alert_tracks", "confirmed_boxes_on_obstacle",
                "confirmed_boxes_off_obstacle", "camera_hours"):
        assert got[key] == expected[key], key
    assert got["by_min_severity"] == expected["by_min_severity"]  # the severity of each box reaches both
    def confirmed(report):
        return [(o["id"], o["confirmed"] and (o["confirmed"]["frame"], o["confirmed"]["box_iou"])) for o in report["obstacles"]]
    assert confirmed(got) == confirmed(expected)
    # the cache is reused, not recomputed; one of another bag is refused
    assert cache_drive(bag, SHIPPED, cached.root, progress=False).frames == cached.frames
    with pytest.raises(ValueError, match="another bag"):
        cache_drive(tmp_path / "other_bag", SHIPPED, cached.root, progress=False)


def test_curve_rows_sum_over_the_drives(drive) -> None:
    _, cached = drive
    plain, grown = curve_rows([cached], [cached], [CurvePoint(0.9, 20), CurvePoint(0.9, 20, extend=0.5)],
                              ego_mask_bottom=0.15)
    single = replay(cached, CurvePoint(0.9, 20), ego_mask_bottom=0.15)
    # one pass over many points gives what one pass per point gives
    assert replay_many(cached, [CurvePoint(0.9, 20), CurvePoint(0.9, 20, extend=0.5)], ego_mask_bottom=0.15) == [
        single, replay(cached, CurvePoint(0.9, 20, extend=0.5), ego_mask_bottom=0.15)]
    assert plain["false_alert_tracks"] == 2 * single["false_alert_tracks"]  # counted once per drive list
    assert plain["camera_hours"] == pytest.approx(2 * single["camera_hours"])
    assert plain["obstacles_confirmed"] == single["obstacles_confirmed"]  # obstacles: the obstacle drives only
    assert plain["obstacles"] == single["obstacles_total"] > 0
    assert plain["false_alert_frames"] == 2 * single["false_alert_frames_without_obstacle"]
    assert (plain["obstacle_frames"], plain["obstacle_frames_alerted"], plain["obstacle_frames_with_box_on"]) == (
        single["frames_with_obstacle"], single["true_alert_frames"], single["obstacle_frames_with_box_on_obstacle"])
    assert plain["false_alerts_per_hour"] == pytest.approx(plain["false_alert_tracks"] / plain["camera_hours"])
    assert (grown["threshold"], grown["extend"]) == (0.9, 0.5)
    distances = [o["confirmed"]["distance_m"] for o in single["obstacles"] if o["confirmed"]]
    assert distances  # the animal is confirmed at this point
    assert plain["median_distance_at_alert_m"] == pytest.approx(float(np.median(distances)))
    warning = single["by_min_severity"]["warning"]
    assert plain["from_warning"]["false_alert_tracks"] == 2 * warning["false_alert_tracks"]
    assert plain["from_warning"]["obstacles_confirmed"] == warning["obstacles_confirmed"]
    assert plain["from_warning"]["obstacle_frames_alerted"] == warning["true_alert_frames"]


def test_the_script_writes_the_curve_with_the_calibrated_point(drive, tmp_path: Path) -> None:
    import importlib.util

    bag, cached = drive
    spec = importlib.util.spec_from_file_location("alert_curve_script", Path(__file__).resolve().parents[1] / "scripts"
                                                  / "alert_curve.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "curve"
    assert script.main(["--model", str(SHIPPED), "--obstacles", str(bag), "--out", str(out), "--thresholds", "0.9",
                        "--areas", "20", "--ego-mask-bottom", "0.15", "--extend", "0.5"]) == 0
    meta = json.loads((out / "curve.json").read_text())
    manifest = json.loads((SHIPPED / "manifest.json").read_text())["operating_point"]
    assert meta["calibrated_threshold"] == manifest["anomaly_threshold"]
    assert meta["calibrated_min_area_px"] == math.ceil(manifest["min_obstacle_area_fraction"] * 256 * 512)
    points = {(r["threshold"], r["min_area_px"], r["extend"]) for r in meta["rows"]}
    t, a = manifest["anomaly_threshold"], meta["calibrated_min_area_px"]
    assert points == {(0.9, 20, None), (0.9, a, None), (t, 20, None), (t, a, None), (t, 20, 0.5), (t, a, 0.5)}
    row = next(r for r in meta["rows"] if (r["threshold"], r["min_area_px"], r["extend"]) == (0.9, 20, None))
    direct = next(curve_rows([], [cached], [CurvePoint(0.9, 20)], ego_mask_bottom=0.15))
    assert row == direct
    assert (out / "curve.png").stat().st_size > 0
    assert "| 0.9 | 20 | - |" in (out / "curve.md").read_text()
