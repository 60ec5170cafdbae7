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
from dsa_core.eval.alert_curve import (CachedDrive, CurvePoint, by_family, cache_drive, cache_ground_truth, curve_rows,
                                     findable_obstacle_frames, hysteresis_mask, replay, replay_many)

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"


def _load_script():
    """scripts/alert_curve.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("alert_curve_script", SHIPPED.parents[1] / "scripts" / "alert_curve.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


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
    """A short drive: a clear street, then a cardboard box approaching from 12-16 m; cached with the shipped model."""
    root = tmp_path_factory.mktemp("curve")
    bag = root / "bag"
    summary = write_drive_bag(bag, DriveSpec(frames=16, height=256, width=512, fps=5.0, seed=11, segment_frames=8,
                                             obstacle_probability=0.5, obstacle_start_m=(12.0, 16.0)),
                              storage="sqlite3", progress=False)
    (root / "bag.json").write_text(json.dumps(summary))  # what `dsa synth bag` prints: the obstacles' families
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


def test_bag_eval_checks_the_mount_pitch_against_the_road_it_sees(drive, tmp_path: Path) -> None:
    """The mount pitch check of the offline report on the shipped model: per frame, the road's top row (the rows of
    the road's largest 8-connected region sorted, at the FARTHEST_ROAD_QUANTILE share) against the horizon of the bag's CameraInfo, recomputed
    here from the cached class maps. The drive's camera is level: at pitch 0 the road's top lies below the horizon
    and nothing is said; configured 8 degrees up, the same road lies 8 degrees higher against it, above the gate's
    margin, and the report warns."""
    from scipy import ndimage

    from dsa_core.perception.horizon_check import FARTHEST_ROAD_QUANTILE

    bag, cached = drive
    expected = []
    for f in cached.frames:
        ids = np.asarray(cached.class_ids[f["row"]])
        labels, _ = ndimage.label(ids == 0, structure=np.ones((3, 3)))  # the road surface: its largest region
        rows = np.sort(np.nonzero(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)[0])
        k = rows[int(np.floor(FARTHEST_ROAD_QUANTILE * rows.size))]
        k_cam, (fy, cy) = k * cached.image_size[0] / ids.shape[0], (f["camera_info"][0][i] for i in (4, 5))
        expected.append(math.degrees(math.atan2(cy - k_cam, fy)))
    reports = {}
    for pitch in (0.0, -8.0):
        out = tmp_path / f"pitch{pitch:g}"
        assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(SHIPPED), "--out", str(out), "--no-progress",
                         "--backend", "onnxruntime", "--mount-pitch-deg", str(pitch)]) == 0
        reports[pitch] = (json.loads((out / "report.json").read_text())["horizon_gate"]["road_top"],
                          (out / "report.md").read_text())
    (level, level_md), (up, up_md) = reports[0.0], reports[-8.0]
    topic = cached.frames[0]["topic"]
    assert level[topic]["frames"] == up[topic]["frames"] == len(cached.frames) == 16
    assert level[topic]["median_deg"] == pytest.approx(float(np.median(expected)), abs=1e-9)
    assert level[topic]["median_deg"] < 0.0 and level[topic]["warning"] is None
    assert up[topic]["median_deg"] == pytest.approx(level[topic]["median_deg"] + 8.0, abs=1e-9)
    assert up[topic]["warning"].startswith("road seen")
    assert f"mount pitch check, {topic}: the road's top lies a median {level[topic]['median_deg']:+.2f}°" in level_md
    assert "**road seen" in up_md and "**road seen" not in level_md


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
    assert distances  # the box is confirmed at this point
    assert plain["median_distance_at_alert_m"] == pytest.approx(float(np.median(distances)))
    warning = single["by_min_severity"]["warning"]
    assert plain["from_warning"]["false_alert_tracks"] == 2 * warning["false_alert_tracks"]
    assert plain["from_warning"]["obstacles_confirmed"] == warning["obstacles_confirmed"]
    assert plain["from_warning"]["obstacle_frames_alerted"] == warning["true_alert_frames"]


def test_the_script_writes_the_curve_with_the_calibrated_point(drive, tmp_path: Path) -> None:
    bag, cached = drive
    script = _load_script()
    out = tmp_path / "curve"
    assert script.main(["--model", str(SHIPPED), "--obstacles", str(bag), "--out", str(out), "--thresholds", "0.9",
                        "--areas", "20", "--ego-mask-bottom", "0.15", "--extend", "0.5",
                        "--summaries", str(bag.parent / "bag.json")]) == 0
    meta = json.loads((out / "curve.json").read_text())
    manifest = json.loads((SHIPPED / "manifest.json").read_text())["operating_point"]
    assert meta["calibrated_threshold"] == manifest["anomaly_threshold"]
    assert meta["calibrated_min_area_px"] == math.ceil(manifest["min_obstacle_area_fraction"] * 256 * 512)
    points = {(r["threshold"], r["min_area_px"], r["extend"]) for r in meta["rows"]}
    t, a = manifest["anomaly_threshold"], meta["calibrated_min_area_px"]
    assert points == {(0.9, 20, None), (0.9, a, None), (t, 20, None), (t, a, None), (t, 20, 0.5), (t, a, 0.5)}
    row = next(r for r in meta["rows"] if (r["threshold"], r["min_area_px"], r["extend"]) == (0.9, 20, None))
    direct = next(curve_rows([], [cached], [CurvePoint(0.9, 20)], ego_mask_bottom=0.15))
    assert row == {"score": "model", **direct}
    assert (out / "curve.png").stat().st_size > 0
    assert "| 0.9 | 20 | - |" in (out / "curve.md").read_text()
    # per family at the calibrated point: the drive's obstacles under their summary's family, and the row's counts
    calibrated = next(r for r in meta["rows"] if (r["threshold"], r["min_area_px"], r["extend"]) == (t, a, None))
    families = {o["family"] for o in json.loads((bag.parent / "bag.json").read_text())["obstacles"]}
    assert set(meta["by_family"]) == families and families
    fam = meta["by_family"].values()
    assert sum(f["obstacles"] for f in fam) == calibrated["obstacles"]
    assert sum(f["confirmed"] for f in fam) == calibrated["obstacles_confirmed"]
    assert sum(f["frames_with_box"] for f in fam) == calibrated["obstacle_frames_with_box_on"]
    assert "## By obstacle family, at the calibrated point" in (out / "curve.md").read_text()


def test_obstacles_are_summed_by_family() -> None:
    def obstacle(ident: int, distance: float | None, processed: int, boxed: int) -> dict:
        return {"id": ident, "frames_processed": processed, "frames_with_box": boxed,
                "confirmed": None if distance is None else {"distance_m": distance}}

    a = {"obstacles": [obstacle(1, 10.0, 20, 3), obstacle(2, None, 18, 0), obstacle(3, 14.0, 22, 5)]}
    b = {"obstacles": [obstacle(1, 8.0, 19, 2), obstacle(2, math.nan, 20, 1)]}
    got = by_family([a, b], [{1: "barrel", 2: "traffic_cone", 3: "barrel"}, {1: "traffic_cone", 2: "barrel"}])
    assert list(got) == ["barrel", "traffic_cone"]
    assert got["barrel"] == {"obstacles": 3, "confirmed": 3, "frames_processed": 62, "frames_with_box": 9,
                             "median_distance_at_alert_m": 12.0}  # the NaN distance is no distance
    assert got["traffic_cone"] == {"obstacles": 2, "confirmed": 1, "frames_processed": 37, "frames_with_box": 2,
                                   "median_distance_at_alert_m": 8.0}
    with pytest.raises(ValueError, match="no family"):
        by_family([a], [{1: "barrel"}])


def test_the_ground_truth_cache_holds_the_ground_truth(drive, tmp_path: Path) -> None:
    """Frame for frame the bag's own ground truth (read here with the bag reader), in the model cache's frame order;
    replayed, a perfect score never alerts off an obstacle, and each alerted frame's obstacle shows at least the
    minimum area above the ego mask."""
    from dsa_core.bags.reader import iter_frames, select_streams
    from dsa_core.bags.source import open_bag

    bag, cached = drive
    truth = cache_ground_truth(bag, tmp_path / "truth", progress=False)
    assert truth.frames == cached.frames and truth.image_size == cached.image_size
    source = open_bag(bag)
    visible = []  # per frame: obstacle pixels above the ego mask (the bottom 15 % of the rows)
    for f, frame in zip(truth.frames, iter_frames(source, select_streams(source.topics, None))):
        assert np.array_equal(truth.anomaly[f["row"]], (frame.gt_anomaly == 1).astype(np.float32))
        assert np.array_equal(truth.class_ids[f["row"]], frame.gt_semantic)
        rows = frame.gt_anomaly.shape[0]
        visible.append(int(np.count_nonzero(frame.gt_anomaly[:rows - round(0.15 * rows)] == 1)))
    assert max(visible) > 0 and min(visible) == 0  # the drive has clear and obstacle frames
    for area in (1, 20, 200):
        report = replay(truth, CurvePoint(0.5, area), ego_mask_bottom=0.15)
        assert report["false_alert_tracks"] == 0 and report["false_alert_frames_without_obstacle"] == 0
        assert report["true_alert_frames"] <= sum(v >= area for v in visible)
    small, large = (replay(truth, CurvePoint(0.5, a), ego_mask_bottom=0.15) for a in (1, max(visible) + 1))
    assert small["obstacles_confirmed"] == small["obstacles_total"] > 0  # this drive's box comes close enough
    assert small["true_alert_frames"] > 0
    assert large["true_alert_frames"] == 0 and large["obstacles_confirmed"] == 0  # larger than the obstacle ever is
    # reused, not rebuilt; the model's cache dir is not taken for the ground truth's, nor the other way round
    assert cache_ground_truth(bag, truth.root, progress=False).frames == truth.frames
    with pytest.raises(ValueError, match="another bag or model"):
        cache_ground_truth(bag, cached.root, progress=False)
    with pytest.raises(ValueError, match="another bag or model"):
        cache_drive(bag, SHIPPED, truth.root, progress=False)


def test_the_script_adds_the_ground_truth_rows(drive, tmp_path: Path) -> None:
    bag, cached = drive
    script = _load_script()
    out = tmp_path / "curve"
    assert script.main(["--model", str(SHIPPED), "--obstacles", str(bag), "--out", str(out), "--thresholds", "0.9",
                        "--areas", "20", "200", "--ego-mask-bottom", "0.15", "--ground-truth-score"]) == 0
    meta = json.loads((out / "curve.json").read_text())
    truth_rows = [r for r in meta["rows"] if r["score"] == "ground truth"]
    areas = {r["min_area_px"] for r in meta["rows"] if r["score"] == "model"}
    assert {r["min_area_px"] for r in truth_rows} == areas and {r["threshold"] for r in truth_rows} == {0.5}
    truth = cache_ground_truth(bag, out / "cache" / f"{bag.name}.ground_truth", progress=False)
    # findable: frames whose largest obstacle component above the ego mask has the area, recounted with scipy
    largest = []
    for f in truth.frames:
        gt = np.asarray(truth.anomaly[f["row"]]) > 0
        gt[gt.shape[0] - round(0.15 * gt.shape[0]):] = False
        labels, n = ndimage.label(gt, structure=np.ones((3, 3)))
        largest.append(max((int((labels == i).sum()) for i in range(1, n + 1)), default=0))
    for r in truth_rows:
        direct = next(curve_rows([], [truth], [CurvePoint(0.5, r["min_area_px"])], ego_mask_bottom=0.15))
        findable = sum(a >= r["min_area_px"] for a in largest)
        assert r == {"score": "ground truth", **direct, "obstacle_frames_findable": findable}
        assert r["obstacle_frames_alerted"] <= findable <= r["obstacle_frames"]
    assert [r["obstacle_frames_findable"] for r in truth_rows] == sorted(
        (r["obstacle_frames_findable"] for r in truth_rows), reverse=True) and truth_rows[0]["obstacle_frames_findable"] > 0
    with pytest.raises(ValueError, match="not a drive's ground truth"):
        findable_obstacle_frames(cached, [20])
    model_20 = next(r for r in meta["rows"] if (r["score"], r["threshold"], r["min_area_px"]) == ("model", 0.9, 20))
    truth_20 = next(r for r in truth_rows if r["min_area_px"] == 20)
    assert truth_20["false_alert_tracks"] == 0
    assert truth_20["obstacle_frames_alerted"] >= model_20["obstacle_frames_alerted"] - model_20["false_alert_frames"]
    assert (out / "ceiling.png").stat().st_size > 0 and (out / "curve.png").stat().st_size > 0
    md = (out / "curve.md").read_text()
    assert "| ground truth | 0.5 | 20 | - | 0 |" in md and "| model | 0.9 | 20 | - |" in md
    assert "## What a perfect score can get" in md


def test_the_script_runs_on_drives_without_obstacles(tmp_path: Path) -> None:
    """A drive whose streets hold no obstacle: the curve has no obstacle to confirm, and says so instead of failing."""
    bag = tmp_path / "clear"
    write_drive_bag(bag, DriveSpec(frames=4, height=256, width=512, fps=5.0, seed=3, segment_frames=4,
                                   obstacle_probability=0.0), storage="sqlite3", progress=False)
    script = _load_script()
    out = tmp_path / "curve"
    assert script.main(["--model", str(SHIPPED), "--obstacles", str(bag), "--out", str(out), "--thresholds", "0.9",
                        "--areas", "20", "--ego-mask-bottom", "0.15", "--ground-truth-score"]) == 0
    rows = json.loads((out / "curve.json").read_text())["rows"]
    assert rows and all(r["obstacles"] == r["obstacle_frames"] == 0 for r in rows)
    assert all(r["false_alert_tracks"] == 0 for r in rows if r["score"] == "ground truth")
    assert (out / "curve.png").stat().st_size > 0 and (out / "ceiling.png").stat().st_size > 0
