"""The operating point: exact calibration rules on known score distributions, `dsa calibrate` end to end against a
brute-force recount, the one resolution rule (parameter -> manifest -> per-score fallback), and its users: the
node and `dsa bag-eval` take the manifest's values when their parameters are unset."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dsa_core.cli import main as dsa_main
from dsa_core.bags.alerts import alert_rate_upper_bound
from dsa_core.eval.calibrate import (FPR_LADDER, choose_candidate, fpr_candidates, frame_area_rule, rate_upper_bound,
                                     drive_alerts, drive_tracking, sequence_area_rule, threshold_at_fpr)
from dsa_core.perception.obstacles import Detection, GroundCamera, ObstacleSettings, ObstacleTracker
from dsa_core.export.manifest import ModelIntegrityError, read_manifest, verify_model_dir
from dsa_core.runtime.operating_point import (FALLBACK_MIN_AREA_FRACTION, FALLBACK_THRESHOLD, resolve_operating_point,
                                              write_operating_point)



def _fpr_brute(scores: np.ndarray, t: float) -> float:
    return sum(1 for s in scores.tolist() if s >= t) / scores.size


# --- the rules on known distributions -----------------------------------------------------------------------------

def test_threshold_is_the_exact_order_statistic_of_a_known_distribution() -> None:
    scores = np.random.default_rng(0).permutation(np.arange(1000, dtype=np.float32) / np.float32(1000))
    t, fpr = threshold_at_fpr(scores, 0.01)
    assert fpr == 0.01 and _fpr_brute(scores, t) == 0.01  # exactly the 10 highest: 0.990 .. 0.999
    assert np.float32(0.989) < t <= np.float32(0.990)
    t5, fpr5 = threshold_at_fpr(scores, 0.05)
    assert fpr5 == 0.05 and np.float32(0.949) < t5 <= np.float32(0.950)


def test_threshold_with_ties_never_exceeds_the_target_and_is_the_lowest_that_does() -> None:
    rng = np.random.default_rng(1)
    for n, levels, target in ((997, 13, 0.01), (5000, 40, 0.05), (1000, 10, 0.05), (321, 321, 0.2)):
        scores = rng.integers(0, levels, n).astype(np.float32) / np.float32(7)
        t, fpr = threshold_at_fpr(scores, target)
        assert fpr == _fpr_brute(scores, t) <= target
        lower = [v for v in np.unique(scores).tolist() if v < t]
        if lower:  # one distinct score lower would break the target
            assert _fpr_brute(scores, max(lower)) > target, (n, levels, target)
    t, fpr = threshold_at_fpr(np.full(1000, 0.7, np.float32), 0.05)  # one value: nothing can be flagged
    assert fpr == 0.0 and t > np.float32(0.7)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        threshold_at_fpr(np.zeros(10, np.float32), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        threshold_at_fpr(np.array([0.1, np.nan], np.float32), 0.1)
    with pytest.raises(ValueError, match="no negative"):
        threshold_at_fpr(np.zeros(0, np.float32), 0.1)


def test_min_area_leaves_at_most_the_target_share_of_frames_with_a_false_obstacle() -> None:
    largest = np.r_[np.arange(1, 51), np.zeros(50, np.int64)]  # 50 frames with a largest false blob of 1..50 px
    res = frame_area_rule(largest, np.full(100, 10_000), max_false_frame_rate=0.02, floor=1e-5, cap=0.5)
    assert res["fraction"] == pytest.approx(49 / 10_000)  # 49 and 50 px survive: 2 of 100 frames
    assert res["false_frames_kept"] == 2 and res["false_frame_rate"] == 0.02 and res["false_frames"] == 50
    brute = [A for A in range(1, 60) if sum(a >= A for a in largest.tolist()) <= 2]
    assert math.ceil(res["fraction"] * 10_000) == min(brute)  # the smallest area that does it
    capped = frame_area_rule(largest, np.full(100, 10_000), max_false_frame_rate=0.02, floor=1e-5, cap=0.003)
    assert capped["capped"] and capped["fraction"] == 0.003 and capped["false_frames_kept"] == 21
    clean = frame_area_rule(np.zeros(10, np.int64), np.full(10, 100), floor=1e-4, cap=1e-3)
    assert clean["floored"] and clean["fraction"] == 1e-4 and clean["false_frames_kept"] == 0
    zero = frame_area_rule(largest, np.full(100, 10_000), max_false_frame_rate=0.0, floor=1e-5, cap=0.5)
    assert zero["false_frames_kept"] == 0 and math.ceil(zero["fraction"] * 10_000) == 51
    mixed = frame_area_rule(np.array([50, 400]), np.array([1000, 4000]), max_false_frame_rate=0.0, floor=1e-6, cap=0.5)
    assert math.ceil(mixed["fraction"] * 1000) > 50 and math.ceil(mixed["fraction"] * 4000) > 400
    with pytest.raises(ValueError, match="floor"):
        frame_area_rule(largest, np.full(100, 10_000), floor=0.1, cap=0.01)
    with pytest.raises(ValueError, match="per-frame"):
        frame_area_rule(np.array([5]), np.array([4]))


def _component(x: int, y: int, side: int) -> Detection:
    return Detection((x, y, side, side), side * side, side * side / 10_000, 0.99, 0.95, 1.0, 1.0,
                     (x + (side - 1) / 2, y + (side - 1) / 2))


def test_on_a_drive_the_min_area_counts_alerts_after_the_debounce() -> None:
    """100 frames of one camera (100 x 100): a still false component of 36 px in frames 10-19 (confirmed from its
    third frame: 8 alert frames) and one of 81 px that flickers every 4th frame in 30-69 (dropped between hits, so
    never confirmed). The single-frame rule must remove both; the alert rule only what the node would alert on."""
    frames = [[] for _ in range(100)]
    for i in range(10, 20):
        frames[i].append(_component(10, 10, 6))
    for i in range(30, 70, 4):
        frames[i].append(_component(60, 60, 9))
    drive = [[(f, (100, 100)) for f in frames]]

    def alerts(min_px: int) -> int:  # the node's tracker on the components of at least min_px
        tracker, n = ObstacleTracker(ObstacleSettings(min_area=min_px)), 0
        for f in frames:
            n += any(o.confirmed for o in tracker.update([c for c in f if c.pixel_area >= min_px], (100, 100)).obstacles)
        return n

    assert [alerts(a) for a in (1, 36, 37, 81, 82)] == [8, 8, 0, 0, 0]
    tight = sequence_area_rule(drive, max_false_frame_rate=0.05, floor=1e-4, cap=0.5)
    assert math.ceil(tight["fraction"] * 10_000) == 37 and tight["false_frames_kept"] == 0
    assert tight["false_frames"] == 8 and tight["frames"] == 100 and tight["debounce_frames"] == 3
    assert tight["false_alert_tracks"] == 0
    single = frame_area_rule(np.array([max((c.pixel_area for c in f), default=0) for f in frames]),
                             np.full(100, 10_000), max_false_frame_rate=0.05, floor=1e-4, cap=0.5)
    assert math.ceil(single["fraction"] * 10_000) == 82  # the flicker counts frame by frame
    loose = sequence_area_rule(drive, max_false_frame_rate=0.08, floor=1e-4, cap=0.5)
    assert loose["floored"] and loose["false_frames_kept"] == 8 and loose["false_alert_tracks"] == 1
    at_once = sequence_area_rule(drive, max_false_frame_rate=0.05, floor=1e-4, cap=0.5, debounce_frames=1)
    assert math.ceil(at_once["fraction"] * 10_000) == 82  # no debounce: every frame with a component alerts
    assert at_once["false_alert_tracks"] == 0
    capped = sequence_area_rule(drive, max_false_frame_rate=0.05, floor=1e-4, cap=0.003)
    assert capped["capped"] and capped["fraction"] == 0.003 and capped["false_frames_kept"] == 8
    # one tracker per camera: a component seen on frames 48-51 confirms on 50-51 in one camera, never when the
    # frames are split over two cameras (two hits each)
    span = [([_component(30, 30, 5)] if 48 <= i <= 51 else [], (100, 100)) for i in range(100)]
    assert sequence_area_rule([span], max_false_frame_rate=0.0, floor=1e-4, cap=0.5)["false_frames"] == 2
    two = sequence_area_rule([span[:50], span[50:]], max_false_frame_rate=0.0, floor=1e-4, cap=0.5)
    assert two["frames"] == 100 and two["false_frames"] == 0 and two["floored"]
    with pytest.raises(ValueError, match="floor"):
        sequence_area_rule(drive, floor=0.1, cap=0.01)


def test_on_a_drive_components_above_the_horizon_are_no_alerts() -> None:
    """The calibration counts what the node alerts on, horizon gate included: with each frame's camera (the drive's
    CameraInfo, horizon at row 50) a still 36 px component whose bottom edge lies at row 16 is no alert, one at rows
    60-65 is; without a camera both are."""
    camera = GroundCamera(fx=100.0, fy=100.0, cx=50.0, cy=50.0, height_m=0.0, pitch_rad=0.0)
    high = [([_component(10, 10, 6)] if 10 <= i < 20 else [], (100, 100), i * 200_000_000, camera) for i in range(100)]
    low = [([_component(10, 60, 6)] if 10 <= i < 20 else [], (100, 100), i * 200_000_000, camera) for i in range(100)]
    blind = [entry[:3] for entry in high]
    rule = {"max_false_frame_rate": 0.0, "floor": 1e-4, "cap": 0.5}
    assert sequence_area_rule([high], **rule)["false_frames"] == 0
    assert sequence_area_rule([low], **rule)["false_frames"] == 8
    assert sequence_area_rule([blind], **rule)["false_frames"] == 8
    assert sequence_area_rule([high], **rule, horizon_gate=False)["false_frames"] == 8  # counted without the gate
    gate_on, gate_off = (drive_tracking(None, gate) for gate in (True, False))
    assert drive_alerts([high, low], 36 / 10_000, gate_on) == (8, 1)
    assert drive_alerts([high, low], 36 / 10_000, gate_off) == (16, 2)
    assert drive_alerts([high, low], 37 / 10_000, gate_off) == (0, 0)  # both are 36 px


def test_on_a_drive_a_rate_per_hour_counts_alerts_not_frames() -> None:
    """Two cameras of 100 frames at 5 fps (40 s = 1/90 camera-hour): camera A holds a still 36 px component for 10
    frames (one alert over 8 frames), camera B a still 64 px one for 40 frames (one alert over 38 frames). Counted
    in alerts, B weighs what A weighs; counted in frames, it is the one that matters."""
    a = [([_component(10, 10, 6)] if 10 <= i < 20 else [], (100, 100)) for i in range(100)]
    b = [([_component(50, 50, 8)] if 40 <= i < 80 else [], (100, 100)) for i in range(100)]
    hours = 200 / 5 / 3600
    both = sequence_area_rule([a, b], floor=1e-4, cap=0.5, max_false_alerts_per_hour=180.0, camera_hours=hours)
    assert both["floored"] and both["false_alert_tracks"] == 2 and both["false_frames_kept"] == 8 + 38
    assert both["false_alerts_per_hour"] == pytest.approx(180.0)  # 2 alerts in 1/90 h, exactly the target
    one = sequence_area_rule([a, b], floor=1e-4, cap=0.5, max_false_alerts_per_hour=90.0, camera_hours=hours)
    assert math.ceil(one["fraction"] * 10_000) == 37 and one["false_alert_tracks"] == 1  # A's goes, B's stays
    none = sequence_area_rule([a, b], floor=1e-4, cap=0.5, max_false_alerts_per_hour=89.0, camera_hours=hours)
    assert math.ceil(none["fraction"] * 10_000) == 65 and none["false_alert_tracks"] == 0
    by_frames = sequence_area_rule([a, b], max_false_frame_rate=0.05, floor=1e-4, cap=0.5)
    assert math.ceil(by_frames["fraction"] * 10_000) == 65  # 38 of 200 frames: B's alert must go
    assert "max_false_alerts_per_hour" not in by_frames
    # 40 s cannot show 89 per hour: zero alerts still allow 3.0 / (1/90 h) = 270 per hour
    assert not none["drive_shows_target"] and none["false_alerts_per_hour_upper95"] == pytest.approx(
        -math.log(0.05) / hours)
    shown = sequence_area_rule([a, b], floor=1e-4, cap=0.5, max_false_alerts_per_hour=300.0, camera_hours=hours)
    assert shown["drive_shows_target"] and shown["floored"]
    for bad in ({"max_false_alerts_per_hour": -1.0, "camera_hours": hours},
                {"max_false_alerts_per_hour": 1.0, "camera_hours": None},
                {"max_false_alerts_per_hour": math.nan, "camera_hours": hours}):
        with pytest.raises(ValueError, match="per hour"):
            sequence_area_rule([a, b], **bad)
    # with no candidate under the target, the one with the fewest alerts is chosen (not the fewest frames)
    cands = [{"area": {"capped": True, "false_alert_tracks": 2, "false_frames_kept": 10,
                       "max_false_alerts_per_hour": 1.0}},
             {"area": {"capped": True, "false_alert_tracks": 1, "false_frames_kept": 40,
                       "max_false_alerts_per_hour": 1.0}}]
    assert choose_candidate(cands) == (1, False)


def test_the_false_alert_rate_bound_is_the_exact_poisson_tail() -> None:
    def at_most(k: int, mean: float) -> float:  # P(X <= k), X ~ Poisson(mean), summed term by term
        return sum(math.exp(-mean) * mean ** i / math.factorial(i) for i in range(k + 1))

    for k, hours in ((0, 0.5), (2, 2.0), (7, 0.1)):
        u = alert_rate_upper_bound(k, hours)
        assert at_most(k, u * hours) == pytest.approx(0.05, abs=1e-9)
        assert k / hours < u
    assert alert_rate_upper_bound(0, 1.0) == pytest.approx(-math.log(0.05))  # closed form: 3.0 per hour
    assert alert_rate_upper_bound(1, 0.0) is None


def test_the_false_frame_rate_bound_is_the_exact_binomial_tail() -> None:
    def at_most(k: int, n: int, p: float) -> float:  # P(X <= k), X ~ Binomial(n, p), summed term by term
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))

    for k, n in ((0, 100), (2, 100), (23, 100), (1, 7)):
        u = rate_upper_bound(k, n)
        assert at_most(k, n, u) == pytest.approx(0.05, abs=1e-9)  # the rate at which seeing <= k has 5 % chance
        assert k / n < u < 1.0
    assert rate_upper_bound(0, 100) == pytest.approx(1 - 0.05 ** (1 / 100))  # closed form for no event
    assert rate_upper_bound(5, 5) == 1.0 and rate_upper_bound(0, 0) is None
    with pytest.raises(ValueError):
        rate_upper_bound(3, 2)
    res = frame_area_rule(np.array([0, 0, 9, 0]), np.full(4, 100), max_false_frame_rate=0.0, floor=1e-4, cap=0.5)
    assert res["false_frame_rate_upper95"] == rate_upper_bound(0, 4)


def test_the_candidate_meeting_the_frame_rate_that_finds_most_pool_objects_is_chosen() -> None:
    assert fpr_candidates(0.01) == [0.01, *FPR_LADDER] and fpr_candidates(0.001) == [0.001, 0.0005, 0.0002, 0.0001]

    def cand(capped: bool, kept: int, found: int | None) -> dict:
        return {"area": {"capped": capped, "false_frames_kept": kept}, "pool_objects_found": found}

    ladder = [cand(True, 20, 80), cand(False, 2, 70), cand(False, 2, 75), cand(False, 1, 75), cand(False, 0, 60)]
    assert choose_candidate(ladder) == (2, True)  # most objects among those meeting the rate; tie -> lower threshold
    no_pool = [cand(True, 20, None), cand(False, 2, None), cand(False, 0, None)]
    assert choose_candidate(no_pool) == (1, True)  # without a pool: the lowest threshold meeting the rate
    none_met = [cand(True, 9, 50), cand(True, 4, 40), cand(True, 4, 30)]
    assert choose_candidate(none_met) == (1, False)  # fewest false-obstacle frames, reported as not met
    with pytest.raises(ValueError):
        choose_candidate([])


# --- one resolution rule ------------------------------------------------------------------------------------------

def test_parameter_then_manifest_then_per_score_fallback() -> None:
    calibrated = {"score": "rba", "operating_point": {"score": "rba", "anomaly_threshold": -1.25,
                                                      "min_obstacle_area_fraction": 0.002, "calibration": {"x": 1}}}
    op = resolve_operating_point(calibrated)
    assert (op.anomaly_threshold, op.threshold_source, op.min_area_fraction, op.min_area_source) == \
        (-1.25, "manifest", 0.002, "manifest")
    assert op.min_area_for(100, 200) == 40 and op.describe()["calibration"] == {"x": 1}
    op = resolve_operating_point(calibrated, threshold=-0.3, min_area_px=77)
    assert (op.anomaly_threshold, op.threshold_source, op.min_area_for(1000, 1000), op.min_area_source) == \
        (-0.3, "parameter", 77, "parameter")
    unset = resolve_operating_point(calibrated, threshold=math.nan, min_area_px=0)
    assert unset.threshold_source == unset.min_area_source == "manifest"
    for score in ("msp", "rba"):
        op = resolve_operating_point({"score": score})
        assert op.anomaly_threshold == FALLBACK_THRESHOLD[score] and op.threshold_source == "fallback"
        assert op.min_area_fraction == FALLBACK_MIN_AREA_FRACTION and op.calibration is None
    assert resolve_operating_point(None).anomaly_threshold == FALLBACK_THRESHOLD["msp"]
    assert FALLBACK_THRESHOLD["rba"] < 0 < FALLBACK_THRESHOLD["msp"]  # no single number suits both scales


def test_bad_or_stale_operating_points_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="calibrated for score 'msp'"):
        resolve_operating_point({"score": "rba", "operating_point": {"score": "msp", "anomaly_threshold": 0.9}})
    with pytest.raises(ValueError, match="min_obstacle_area_fraction"):
        resolve_operating_point({"score": "msp", "operating_point": {"min_obstacle_area_fraction": 2.0}})
    with pytest.raises(ValueError, match="unknown anomaly score"):
        resolve_operating_point({"score": "energy"})
    with pytest.raises(ValueError, match="finite"):
        resolve_operating_point({"score": "msp"}, threshold=math.inf)


def test_writing_the_operating_point_keeps_the_model_dir_verifiable(tmp_path: Path, exported_nano) -> None:
    model_dir = shutil.copytree(exported_nano.model_dir, tmp_path / "m")
    manifest = write_operating_point(model_dir, {"anomaly_threshold": 0.8, "min_obstacle_area_fraction": 0.001})
    assert manifest == verify_model_dir(model_dir) == read_manifest(model_dir)
    assert manifest["operating_point"]["score"] == manifest["score"] and "default_anomaly_threshold" not in manifest
    with pytest.raises(ValueError, match="min_obstacle_area_fraction"):
        write_operating_point(model_dir, {"min_obstacle_area_fraction": 0.0})
    assert read_manifest(model_dir)["operating_point"]["anomaly_threshold"] == 0.8  # the bad write left no trace
    (model_dir / "fused.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError):
        write_operating_point(model_dir, {"anomaly_threshold": 0.1})


# --- dsa calibrate end to end ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, exported_nano) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cal")
    assert dsa_main(["synth", "cityscapes", "--out", str(root / "cs"), "--train", "0", "--val", "3", "--height", "64",
                     "--width", "128", "--seed", "5", "--no-progress"]) == 0
    assert dsa_main(["synth", "coco", "--out", str(root / "coco"), "--images", "8", "--height", "80", "--width", "96",
                     "--no-progress"]) == 0
    model_dir = shutil.copytree(exported_nano.model_dir, root / "model")
    assert dsa_main(["calibrate", "--model", str(model_dir), "--val", str(root / "cs"), "--pool", str(root / "coco"),
                     "--pool-min-size", "64", "--target-fpr", "0.02", "--threads", "1", "--out", str(root / "report"),
                     "--no-progress"]) == 0
    return {"root": root, "model": model_dir}


def test_calibrate_writes_the_exact_threshold_into_the_manifest(calibrated) -> None:
    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.runtime import create_backend

    manifest = verify_model_dir(calibrated["model"])  # still intact
    op = manifest["operating_point"]
    rec = op["calibration"]
    backend = create_backend("onnxruntime", calibrated["model"])
    val = CityscapesDataset(calibrated["root"] / "cs", "val")
    road = []
    for i in range(len(val)):
        image, label, _ = val.load(i)
        road.append(backend.infer(image[None]).anomaly[0][label == 0].astype(np.float64))
    road = np.concatenate(road)
    t = op["anomaly_threshold"]
    assert rec["road_pixels"] == road.size and rec["val_frames"] == 3 and rec["target_fpr"] == 0.02
    cands = rec["candidates"]
    assert [c["target_fpr"] for c in cands] == fpr_candidates(0.02) and cands[rec["chosen"]]["threshold"] == t
    for c in cands:  # every candidate threshold is the exact order statistic of its road-pixel rate
        assert _fpr_brute(road, c["threshold"]) == c["achieved_road_fpr"] <= c["target_fpr"]
        lower = [v for v in np.unique(road).tolist() if v < c["threshold"]]
        assert not lower or _fpr_brute(road, max(lower)) > c["target_fpr"]
    area = rec["area"]
    assert op["min_obstacle_area_fraction"] == area["fraction"] and rec["achieved_road_fpr"] <= 0.02
    assert rec["frame_rate_met"] == (not area["capped"])
    assert area["capped"] or area["false_frames_kept"] <= math.floor(0.02 * 3)
    pool = rec["pool_check"]
    assert pool["frames"] == 3 and pool["anomaly_pixels"] > 0 and 0.0 <= pool["pixel_recall_at_threshold"] <= 1.0
    assert pool["objects"] == 3 and pool["objects_found"] == cands[rec["chosen"]]["pool_objects_found"]
    report = json.loads((calibrated["root"] / "report" / "calibration.json").read_text())
    assert report["anomaly_threshold"] == t
    assert f"{t:.9g}" in (calibrated["root"] / "report" / "calibration.md").read_text()
    resolved = resolve_operating_point(manifest)
    assert resolved.threshold_source == "manifest" and resolved.anomaly_threshold == t


def test_calibrate_counts_false_obstacles_and_pool_objects_as_the_node_finds_them(tmp_path: Path) -> None:
    """On the shipped model (a random one predicts no road, so it would find no obstacle at all): every candidate's
    false-obstacle frames and pool objects found, recounted frame by frame with the node's obstacle finder."""
    from dsa_core.data.cityscapes import CityscapesDataset
    from dsa_core.data.coco_mix import pasted_outlier_frame
    from dsa_core.eval.calibrate import POOL_SCALE, CalibrationOptions, calibrate, pool_check_mix
    from dsa_core.labels import ROAD
    from dsa_core.perception.obstacles import ObstacleSettings, box_iou, find_obstacles
    from dsa_core.runtime import create_backend

    torch.set_num_threads(1)
    model = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"
    assert dsa_main(["synth", "cityscapes", "--out", str(tmp_path / "cs"), "--train", "0", "--val", "6", "--height",
                     "256", "--width", "512", "--seed", "11", "--no-progress"]) == 0
    assert dsa_main(["synth", "coco", "--out", str(tmp_path / "coco"), "--images", "12", "--height", "160", "--width",
                     "224", "--no-progress"]) == 0
    options = CalibrationOptions(max_false_frame_rate=0.2, pool_min_size=128, progress=False)
    result = calibrate(model, tmp_path / "cs", tmp_path / "coco", options, backends=("onnxruntime",))
    cands = result["calibration"]["candidates"]

    backend = create_backend("onnxruntime", model)
    val = CityscapesDataset(tmp_path / "cs", "val")
    mix = pool_check_mix(tmp_path / "coco", 128)
    frames, pasted, scales = [], [], []
    for i in range(len(val)):
        image, label, _ = val.load(i)
        frames.append(backend.infer(image[None]))
        mixed, _, outlier = pasted_outlier_frame(mix, image, label, 0, i)
        ys, xs = np.nonzero(outlier)
        assert label[ys.max(), (xs.min() + xs.max()) // 2] == ROAD  # the object stands on the road
        rng = np.random.default_rng([0, 7919, i])  # AnomalyMix's draws for this frame: paste?, object, scale
        rng.random()
        own_area = int(mix.pool.load(int(rng.integers(len(mix.pool))))[1].sum())
        scale = float(np.exp(rng.uniform(*np.log(POOL_SCALE))))
        assert POOL_SCALE[0] <= scale <= POOL_SCALE[1]
        assert 0.5 <= outlier.sum() / (own_area * scale ** 2) <= 2.0  # resized to an obstacle's size
        scales.append(scale)
        pasted.append((backend.infer(mixed[None]), (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)))

    def areas(res, threshold: float, box=None) -> list[int]:
        mask = (res.anomaly[0] >= np.float32(threshold)).astype(np.uint8) * 255
        found = find_obstacles(mask, res.class_ids[0], res.anomaly[0], ObstacleSettings(min_area=1))
        return [d.pixel_area for d in found if box is None or box_iou(d.bbox, box) >= 0.1]

    for c in cands:
        min_px = math.ceil(c["area"]["fraction"] * 256 * 512)
        false_frames = sum(any(a >= min_px for a in areas(r, c["threshold"])) for r in frames)
        found = sum(any(a >= min_px for a in areas(r, c["threshold"], box)) for r, box in pasted)
        assert (c["area"]["false_frames_kept"], c["pool_objects_found"]) == (false_frames, found)
        assert c["area"]["false_frames"] == sum(bool(areas(r, c["threshold"])) for r in frames)
    assert min(scales) < 0.6  # the size check above bites: some objects are pasted well below their own size
    # not a vacuous check: the data gives false obstacles to remove and pool objects to find
    assert max(c["area"]["false_frames"] for c in cands) > 0 and max(c["pool_objects_found"] for c in cands) > 0
    assert result["anomaly_threshold"] == cands[result["calibration"]["chosen"]]["threshold"]


def test_calibrate_on_a_val_drive_counts_the_alerts_the_node_would_raise(tmp_path: Path, capsys) -> None:
    """The shipped model on a short obstacle-free drive bag: every candidate's false-alert frames, recounted with
    the node's obstacle finder and tracker over the bag's frames, and a drive with obstacles refused."""
    from dsa_core.bags.reader import iter_frames, select_streams
    from dsa_core.bags.source import open_bag
    from dsa_core.eval.calibrate import CalibrationOptions, calibrate
    from dsa_core.perception.obstacles import find_obstacles
    from dsa_core.runtime import create_backend

    torch.set_num_threads(1)
    model = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"
    assert dsa_main(["synth", "cityscapes", "--out", str(tmp_path / "cs"), "--train", "0", "--val", "3", "--height",
                     "256", "--width", "512", "--seed", "11", "--no-progress"]) == 0
    assert dsa_main(["synth", "bag", "--calibration-drive", "--out", str(tmp_path / "clear"), "--frames", "12",
                     "--no-progress"]) == 0  # the recipes' drive: no obstacle, 5 fps
    assert dsa_main(["synth", "bag", "--out", str(tmp_path / "obstacles"), "--frames", "12", "--fps", "5",
                     "--segment-frames", "6", "--obstacle-probability", "1", "--seed", "3", "--no-progress"]) == 0
    options = CalibrationOptions(max_false_frame_rate=0.1, ego_mask_bottom=0.15, progress=False)
    result = calibrate(model, tmp_path / "cs", None, options, backends=("onnxruntime",), val_bag=tmp_path / "clear")
    rec = result["calibration"]
    assert rec["val_drives"]["frames"] == 12 and rec["val_drives"]["camera_topics"] == ["/camera/front/image_raw"]
    assert rec["val_drives"]["camera_minutes"] == pytest.approx(12 / 5 / 60)  # 12 frames at 5 fps
    assert rec["val_drives"]["frames_with_horizon"] == 12 and rec["val_drives"]["horizon_margin_deg"] == 3.0
    assert rec["val_drives"]["mount_pitch_deg"] == 0.0 and rec["val_drives"]["horizon_gate_counted"] is False

    backend = create_backend("onnxruntime", model)
    source = open_bag(tmp_path / "clear")
    frames = list(iter_frames(source, select_streams(source.topics)))
    maps = [backend.infer(f.rgb[None]) for f in frames]

    def recount(threshold: float, fraction: float, gate: bool, pitch_deg: float = 0.0) -> tuple[int, int]:
        """(alert frames, confirmed tracks): the node's finder and tracker over the drive's maps."""
        settings = ObstacleSettings(min_area=math.ceil(fraction * 256 * 512), ego_mask_bottom_fraction=0.15,
                                    horizon_gate=gate)
        tracker, alert_frames, confirmed = ObstacleTracker(settings), 0, set()
        for res, frame in zip(maps, frames):
            mask = (res.anomaly[0] >= np.float32(threshold)).astype(np.uint8) * 255
            found = find_obstacles(mask, res.class_ids[0], res.anomaly[0], settings)
            out = tracker.update(found, (256, 512), frame.stamp_ns, frame.ground_camera(math.radians(pitch_deg)))
            ids = {o.track_id for o in out.obstacles if o.confirmed}
            alert_frames, confirmed = alert_frames + bool(ids), confirmed | ids
        return alert_frames, len(confirmed)

    for c in rec["candidates"]:  # the area counts the alerts without the horizon gate
        alert_frames = recount(c["threshold"], c["area"]["fraction"], gate=False)[0]
        assert c["area"]["false_frames_kept"] == alert_frames <= math.floor(0.1 * 12) or c["area"]["capped"]
        assert c["single_frame_area"]["frames"] == 3  # the single-frame rule on the val frames, kept for reference
    assert max(c["area"]["false_frames"] for c in rec["candidates"]) > 0  # the drive has false alerts to remove
    best = rec["candidates"][rec["chosen"]]
    assert result["min_obstacle_area_fraction"] == best["area"]["fraction"]
    at = rec["val_drives"]["alerts_at_point"]  # and the record gives the chosen point's alerts both ways
    for key, gate in (("horizon_gate_off", False), ("horizon_gate_on", True)):
        assert (at[key]["false_frames"], at[key]["false_alert_tracks"]) == recount(best["threshold"],
                                                                                    best["area"]["fraction"], gate)

    code = dsa_main(["calibrate", "--model", str(model), "--val", str(tmp_path / "cs"), "--val-bag",
                     str(tmp_path / "obstacles"), "--dry-run", "--no-progress"])
    assert code == 2  # a drive with obstacles would count true alerts as false ones
    assert "holds a ground-truth obstacle" in capsys.readouterr().err

    # counted per camera-hour: each candidate's false alerts, the node's tracker's confirmed ids over the same maps
    assert dsa_main(["calibrate", "--model", str(model), "--val", str(tmp_path / "cs"), "--val-bag",
                     str(tmp_path / "clear"), "--max-false-alerts-per-hour", "100", "--ego-mask-bottom", "0.15",
                     "--backend", "onnxruntime", "--threads", "1", "--dry-run", "--no-progress",
                     "--out", str(tmp_path / "hourly")]) == 0
    text = capsys.readouterr().out
    hourly = json.loads((tmp_path / "hourly" / "calibration.json").read_text())["calibration"]
    assert hourly["max_false_alerts_per_hour"] == 100.0
    for c in hourly["candidates"]:
        tracks = recount(c["threshold"], c["area"]["fraction"], gate=False)[1]
        assert c["area"]["false_alert_tracks"] == tracks
        assert c["area"]["false_alerts_per_hour"] == pytest.approx(tracks / (12 / 5 / 3600))
        assert tracks == 0 or c["area"]["capped"]  # 100 per hour over 2.4 s allows none
    assert "per hour" in text and "the drive is too short to show the target" in text

    # --horizon-gate counts the alerts with the gate: pitched 60° up, the horizon lies below the image and every
    # component is dropped, so every candidate keeps the floor with no alert, while the record still gives the
    # chosen point's alerts without the gate
    assert dsa_main(["calibrate", "--model", str(model), "--val", str(tmp_path / "cs"), "--val-bag",
                     str(tmp_path / "clear"), "--max-false-frame-rate", "0.1", "--ego-mask-bottom", "0.15",
                     "--horizon-gate", "--mount-pitch-deg", "-60", "--backend", "onnxruntime", "--threads", "1",
                     "--dry-run", "--no-progress", "--out", str(tmp_path / "gated")]) == 0
    capsys.readouterr()
    gated = json.loads((tmp_path / "gated" / "calibration.json").read_text())["calibration"]
    assert gated["val_drives"]["horizon_gate_counted"] is True
    assert all(c["area"]["floored"] and c["area"]["false_frames"] == 0 for c in gated["candidates"])
    best = gated["candidates"][gated["chosen"]]
    at = gated["val_drives"]["alerts_at_point"]
    assert at["horizon_gate_on"] == {"false_frames": 0, "false_alert_tracks": 0}
    off = recount(best["threshold"], best["area"]["fraction"], gate=False)
    assert (at["horizon_gate_off"]["false_frames"], at["horizon_gate_off"]["false_alert_tracks"]) == off
    assert off[0] > 0  # the gate is what removed them
    assert recount(best["threshold"], best["area"]["fraction"], gate=True, pitch_deg=-60.0) == (0, 0)
    report = (tmp_path / "gated" / "calibration.md").read_text()
    assert (f"the area counts the drive's alerts with the node's horizon gate; at this point the drive gives "
            f"{off[1]} false alert(s) in {off[0]} frames without the gate and 0 in 0 with it") in report
    assert "pitch -60°, on the 12 of 12 frames with a CameraInfo" in report
    for flag in (["--max-false-alerts-per-hour", "1"], ["--horizon-gate"]):
        code = dsa_main(["calibrate", "--model", str(model), "--val", str(tmp_path / "cs"), *flag, "--dry-run",
                         "--no-progress"])
        assert code == 2 and "apply to --val-bag" in capsys.readouterr().err
    code = dsa_main(["calibrate", "--model", str(model), "--val", str(tmp_path / "cs"), "--val-bag",
                     str(tmp_path / "clear"), "--mount-pitch-deg", "-120", "--dry-run", "--no-progress"])
    assert code == 2 and "argument --mount-pitch-deg: must be in [-90, 90] degrees, got '-120'" in capsys.readouterr().err


def test_reports_say_what_the_calibration_counted() -> None:
    """bag-eval's operating-point lines: false obstacles on val frames, or false alerts on the val drive."""
    from dsa_core.bags.report import _operating_point_lines

    op = {"anomaly_threshold": {"value": 0.95, "source": "manifest"},
          "min_obstacle_area": {"fraction_of_image": 0.00126, "source": "manifest"}}
    frames = {"rule": "r", "achieved_road_fpr": 0.001, "val_frames": 100, "val_root": "cs",
              "area": {"false_frames_kept": 2, "frames": 100}}
    assert "val frames with a false obstacle 2 of 100 (cs)" in _operating_point_lines({**op, "calibration": frames})[1]
    drive = {**frames, "area": {"false_frames_kept": 12, "frames": 600}, "val_drives": {"frames": 600, "bag": "vd"}}
    assert "val drive frames with a false alert 12 of 600 (vd)" in _operating_point_lines({**op, "calibration": drive})[1]
    at = {"horizon_gate_off": {"false_frames": 12, "false_alert_tracks": 3},
          "horizon_gate_on": {"false_frames": 5, "false_alert_tracks": 1}}
    both = {**drive, "val_drives": {**drive["val_drives"], "horizon_gate_counted": False, "alerts_at_point": at}}
    assert ("val drive frames with a false alert 12 of 600 (vd) counted without the horizon gate (with it: 5 frames, "
            "1 false alert(s))") in _operating_point_lines({**op, "calibration": both})[1]


def test_calibrate_refuses_a_dir_that_is_not_a_model(tmp_path: Path, calibrated, capsys) -> None:
    assert dsa_main(["calibrate", "--model", str(tmp_path), "--val", str(calibrated["root"] / "cs")]) == 2
    assert capsys.readouterr().err.startswith(f"dsa calibrate: {tmp_path} is not a model dir")


# --- the users ------------------------------------------------------------------------------------------------------

def test_bag_eval_uses_the_manifest_unless_a_parameter_is_given(tmp_path: Path, calibrated) -> None:
    from sklearn.metrics import average_precision_score

    from dsa_core.bags.drive import DriveSpec
    from dsa_core.bags.offline import evaluate_offline
    from dsa_core.bags.writer import write_drive_bag
    from dsa_core.runtime import create_backend

    bag = tmp_path / "bag"
    write_drive_bag(bag, DriveSpec(frames=6, height=96, width=192, fps=2.0, seed=2, segment_frames=3,
                                   obstacle_probability=1.0), storage="sqlite3", version=8, progress=False)
    op = read_manifest(calibrated["model"])["operating_point"]
    rep = evaluate_offline(bag, calibrated["model"], tmp_path / "a", backends=("onnxruntime",), progress=False)
    used = rep["operating_point"]
    assert used["anomaly_threshold"] == {"value": op["anomaly_threshold"], "source": "manifest"}
    assert used["min_obstacle_area"] == {"fraction_of_image": op["min_obstacle_area_fraction"], "source": "manifest"}
    md = (tmp_path / "a" / "report.md").read_text()
    assert "(manifest)" in md and "baseline: 1 - p(road)" in md
    # the baseline rows pool the same pixels as the model's row: recount one with sklearn from the backend's maps
    from rosbags.highlevel import AnyReader

    from dsa_core.bags.messages import make_typestore
    backend = create_backend("onnxruntime", calibrated["model"], class_scores=True)
    frames, gts = [], []
    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        wanted = [c for c in reader.connections if c.topic in ("/camera/front/image_raw", "/camera/front/gt/anomaly")]
        for conn, _, raw in reader.messages(connections=wanted):
            msg = reader.deserialize(raw, conn.msgtype)
            arr = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
            if conn.topic == "/camera/front/image_raw":
                frames.append(arr[:, : msg.width * 3].reshape(msg.height, msg.width, 3))
            elif conn.topic == "/camera/front/gt/anomaly":
                gts.append(arr[:, : msg.width])
    maps = np.concatenate([backend.infer(f[None], baselines=True).baselines["not_drivable"][0].ravel() for f in frames])
    gt = np.concatenate([g.ravel() for g in gts])
    valid = gt != 255
    assert (gt[valid] == 1).any() and (gt[valid] == 0).any()
    assert rep["metrics"]["baselines"]["not_drivable"]["auprc"] == pytest.approx(
        average_precision_score(gt[valid], maps[valid]), abs=1e-9)
    rep = evaluate_offline(bag, calibrated["model"], tmp_path / "b", backends=("onnxruntime",), progress=False,
                           threshold=0.25, min_area_px=12)
    assert rep["operating_point"]["anomaly_threshold"] == {"value": 0.25, "source": "parameter"}
    assert rep["operating_point"]["min_obstacle_area"] == {"pixels": 12, "source": "parameter"}


class _CalibratedColourRule:
    """The node's test engine (colour rule) with a manifest that carries an operating point."""

    def __new__(cls):
        from dsa_core.perception.testing import ColourRuleBackend

        backend = ColourRuleBackend()
        backend.manifest = {"score": "msp", "operating_point": {"score": "msp", "anomaly_threshold": 0.8125,
                                                                "min_obstacle_area_fraction": 0.01}}
        return backend


@pytest.mark.ros
def test_node_takes_the_manifest_values_while_its_parameters_are_unset(ros_harness) -> None:
    from rclpy.parameter import Parameter

    from dsa_perception.node import DsaPerceptionNode

    node = DsaPerceptionNode(context=ros_harness.context, backend_factory=lambda kind: _CalibratedColourRule(),
                             parameter_overrides=[Parameter("backends", value=["torch"])])
    try:
        s = node.pipeline.settings
        assert s.anomaly_threshold == 0.8125 and s.obstacles.min_area_fraction == 0.01
        assert node.operating_point.threshold_source == node.operating_point.min_area_source == "manifest"
        assert node.set_parameters([Parameter("anomaly_threshold", value=0.3),
                                    Parameter("min_obstacle_area", value=25)])[0].successful
        s = node.pipeline.settings
        assert s.anomaly_threshold == 0.3 and s.obstacles.min_area_for(48, 64) == 25
        assert node.operating_point.threshold_source == "parameter"
        assert node.set_parameters([Parameter("anomaly_threshold", value=math.nan),
                                    Parameter("min_obstacle_area", value=0)])[0].successful  # unset again
        s = node.pipeline.settings
        assert s.anomaly_threshold == 0.8125 and s.obstacles.min_area_for(48, 64) == math.ceil(0.01 * 48 * 64)
        assert not node.set_parameters([Parameter("anomaly_threshold", value=math.inf)])[0].successful
    finally:
        node.destroy_node()
