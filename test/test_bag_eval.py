"""dsa bag-eval: offline and live (real node) on synthetic and foreign bags, metrics recomputed independently."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from sklearn.metrics import average_precision_score

from dsa_core.bags.drive import DriveSpec, generate_drive
from dsa_core.bags.messages import make_typestore, stamp_to_ns
from dsa_core.bags.writer import write_drive_bag
from dsa_core.cli import main as dsa_main
from dsa_core.runtime import create_backend
from test_bags import _foreign_bag

SPEC = DriveSpec(frames=6, height=96, width=192, fps=2.0, seed=2, segment_frames=3, obstacle_probability=1.0,
                 obstacle_start_m=(12.0, 14.0))


@pytest.fixture(scope="module")
def model_dir(exported_nano) -> Path:
    return exported_nano.model_dir


def _fpr95_brute(scores: np.ndarray, labels: np.ndarray) -> float:
    """FPR at the highest threshold with TPR >= 0.95, by trying every distinct score (float64 loops)."""
    pos, neg = scores[labels == 1].astype(np.float64), scores[labels == 0].astype(np.float64)
    for t in np.unique(scores)[::-1]:
        if (pos >= t).mean() >= 0.95:
            return float((neg >= t).mean())
    raise AssertionError("unreachable: the lowest threshold has TPR 1")


def _miou_brute(pred: np.ndarray, gt: np.ndarray, k: int = 19) -> float:
    valid = gt != 255
    ious = []
    for c in range(k):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = (p | g).sum()
        if union:
            ious.append((p & g).sum() / union)
    return float(np.mean(ious))


def _reference(bag: Path, model_dir: Path, camera: str, gt_sem: str, gt_ano: str, stamps: set[int] | None = None):
    """Decode the bag with plain numpy, run the backend directly, return pooled arrays (no dsa_core.bags code)."""
    backend = create_backend("onnxruntime", model_dir)
    images, sems, anos = {}, {}, {}
    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic not in (camera, gt_sem, gt_ano):
                continue
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            arr = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
            if conn.topic == camera:
                assert msg.encoding == "rgb8"
                images[stamp] = arr[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
            else:
                (sems if conn.topic == gt_sem else anos)[stamp] = arr[:, : msg.width]
    keys = sorted(images if stamps is None else stamps)
    result = [backend.infer(images[s][None]) for s in keys]
    scores = np.stack([r.anomaly[0] for r in result])
    classes = np.stack([r.class_ids[0] for r in result])
    return keys, scores, classes, np.stack([anos[s] for s in keys]), np.stack([sems[s] for s in keys])


def _check_metrics(report: dict, scores, classes, ano, sem) -> None:
    valid = ano != 255
    a = report["metrics"]["anomaly"]
    assert a["n_pos"] == int((ano == 1).sum()) and a["n_neg"] == int((ano == 0).sum())
    assert a["auprc"] == pytest.approx(average_precision_score(ano[valid] == 1, scores[valid].astype(np.float64)), abs=1e-9)
    assert a["fpr95"] == pytest.approx(_fpr95_brute(scores[valid], ano[valid]), abs=1e-12)
    assert report["metrics"]["semantic"]["miou"] == pytest.approx(_miou_brute(classes, sem), abs=1e-12)
    c = report["metrics"]["components"]
    assert c["n_gt_components"] >= 1 and 0.0 <= c["mean_f1"] <= 1.0


def test_offline_synthetic_bag(tmp_path: Path, model_dir: Path) -> None:
    bag = tmp_path / "drive"
    write_drive_bag(bag, SPEC, storage="mcap", progress=False)
    out = tmp_path / "report"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(model_dir), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "offline" and report["backend"] == "onnxruntime"
    assert report["frames_in"] == report["metrics"]["frames_scored"] == SPEC.frames and report["skipped"] == []
    keys, scores, classes, ano, sem = _reference(bag, model_dir, "/camera/front/image_raw", "/camera/front/gt/semantic",
                                                 "/camera/front/gt/anomaly")
    assert [f["stamp_ns"] for f in report["per_frame"]] == keys
    _check_metrics(report, scores, classes, ano, sem)
    for name in ("report.md", "pr_curve.png", "latency_hist.png", "frames_strip.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "report.md").read_text()
    assert f"{report['metrics']['anomaly']['auprc']:.4f}" in md
    assert "## Obstacle alerts" in md
    _check_alerts(report, list(generate_drive(SPEC)))
    gate = dict(report["horizon_gate"])
    road_top = gate.pop("road_top")
    assert gate == {"on": True, "margin_deg": 3.0, "pitch_deg": 0.0,
                    "camera_info": {"/camera/front/image_raw": "/camera/front/camera_info"}}
    # the mount pitch check, for the camera with a CameraInfo (the untrained test model finds little road: its values
    # are checked on the shipped model in test_alert_curve)
    assert list(road_top) == ["/camera/front/image_raw"] and road_top["/camera/front/image_raw"]["frames"] <= SPEC.frames
    assert "- horizon gate: components more than 3° above the horizon dropped" in md


def test_false_alerts_are_sorted_by_the_class_they_lie_on(tmp_path: Path, capsys) -> None:
    """The shipped model (it segments the road, the test export does not) on an obstacle-free drive at a loose
    operating point: every alert is false, and each false track gets the ground-truth class under its pixels."""
    from dsa_core.labels import CITYSCAPES_CLASSES

    bag = tmp_path / "clear"
    write_drive_bag(bag, DriveSpec(frames=8, height=256, width=512, fps=5.0, seed=21, segment_frames=8,
                                   obstacle_probability=0.0), storage="sqlite3", progress=False)
    shipped = Path(__file__).resolve().parents[1] / "models" / "dsa_nano"
    out = tmp_path / "loose"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(shipped), "--out", str(out), "--no-progress",
                     "--backend", "onnxruntime", "--threshold", "0.5", "--min-obstacle-area", "1"]) == 0
    a = json.loads((out / "report.json").read_text())["alerts"]
    assert a["false_alert_tracks"] >= 1
    assert sum(a["false_alerts_by_class"].values()) == a["false_alert_tracks"]
    assert set(a["false_alerts_by_class"]) <= set(CITYSCAPES_CLASSES) | {"void"}
    assert "False alerts by what they lie on" in (out / "report.md").read_text()

    # The same frames from a camera pitched up so far that the whole image lies above the horizon: the node's horizon
    # gate then drops every component (nothing there can stand on the road). Offline bag-eval reads the bag's
    # CameraInfo as the node does, so the alerts go and the pixel metrics stay.
    tilted = tmp_path / "tilted"
    _copy_with_camera_info(bag, tilted, lambda k: [*k[:5], 1.5 * 256, *k[6:]])  # cy at the bottom + half the height
    out_tilted = tmp_path / "loose_tilted"
    assert dsa_main(["bag-eval", "--bag", str(tilted), "--model", str(shipped), "--out", str(out_tilted),
                     "--no-progress", "--backend", "onnxruntime", "--threshold", "0.5", "--min-obstacle-area", "1"]) == 0
    tilted_report = json.loads((out_tilted / "report.json").read_text())
    assert tilted_report["alerts"]["frames_with_alert"] == tilted_report["alerts"]["false_alert_tracks"] == 0
    assert all(f["obstacles"] == 0 for f in tilted_report["per_frame"])
    loose = json.loads((out / "report.json").read_text())
    assert tilted_report["metrics"]["semantic"]["miou"] == loose["metrics"]["semantic"]["miou"]
    # the same camera said to be pitched 60 degrees up (--mount-pitch-deg, the node's mount_pitch_deg): the same
    out_up = tmp_path / "loose_pitched_up"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(shipped), "--out", str(out_up), "--no-progress",
                     "--backend", "onnxruntime", "--threshold", "0.5", "--min-obstacle-area", "1",
                     "--mount-pitch-deg", "-60"]) == 0
    up = json.loads((out_up / "report.json").read_text())
    assert up["alerts"]["false_alert_tracks"] == 0 and up["horizon_gate"]["pitch_deg"] == -60.0
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(shipped), "--out", str(tmp_path / "x"),
                     "--mount-pitch-deg", "91"]) == 2
    assert "argument --mount-pitch-deg: must be in [-90, 90] degrees, got '91'" in capsys.readouterr().err


def _copy_with_camera_info(src: Path, dst: Path, new_k) -> None:
    """A copy of a bag with every CameraInfo's K replaced by ``new_k(K)`` (another camera mounting, same pixels)."""
    from dsa_core.bags.writer import BagWriter

    ts = make_typestore()
    with AnyReader([src], default_typestore=ts) as reader, BagWriter(dst, storage="sqlite3", typestore=ts) as out:
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.msgtype == "sensor_msgs/msg/CameraInfo":
                msg.k = np.asarray(new_k(list(msg.k)), np.float64)
            out.write(conn.topic, msg, t)


def _check_alerts(report: dict, drive: list) -> None:
    """The alert section against the drive's own obstacle truth and the per-frame boxes the report lists."""
    a = report["alerts"]
    scored = {f["index"]: f for f in report["per_frame"]}
    assert a["frames_evaluated"] == len(scored)
    truth = {f.index: f for f in drive}
    assert a["frames_with_obstacle"] == sum(truth[i].obstacle_id > 0 for i in scored)
    ids = sorted({f.obstacle_id for f in drive} - {0})
    assert [o["id"] for o in a["obstacles"]] == ids  # from the ground-truth topic, dropped frames included
    for o in a["obstacles"]:
        frames = [f for f in drive if f.obstacle_id == o["id"]]
        assert (o["first_frame"], o["last_frame"]) == (frames[0].index, frames[-1].index)
        assert o["first_distance_m"] == pytest.approx(frames[0].obstacle_distance_m, rel=1e-6)
    # Per-frame precision / recall recomputed from the listed boxes with a plain IoU.
    def iou(p, q):
        ix = max(0, min(p[0] + p[2], q[0] + q[2]) - max(p[0], q[0]))
        iy = max(0, min(p[1] + p[3], q[1] + q[3]) - max(p[1], q[1]))
        return ix * iy / (p[2] * p[3] + q[2] * q[3] - ix * iy)
    alert = {i for i, f in scored.items() if f["alert_boxes"]}
    positive = {i for i in scored if truth[i].obstacle_id}
    assert all(bool(f["alert_boxes"]) == (f["severity"] > 0) for f in scored.values())
    # from each severity up, the alerting frames are those whose alert (the max over its boxes) reaches it
    for name, level in (("warning", 2), ("critical", 3)):
        assert a["by_min_severity"][name]["frames_with_alert"] == sum(f["severity"] >= level for f in scored.values())
    assert a["frames_with_alert"] == len(alert)
    assert a["alert_precision"] == (pytest.approx(len(alert & positive) / len(alert)) if alert else None)
    assert a["alert_recall"] == (pytest.approx(len(alert & positive) / len(positive)) if positive else None)
    on = {i for i in positive if any(iou(b, truth[i].obstacle_box) >= 0.1 for b in scored[i]["alert_boxes"])}
    assert a["obstacle_frames_with_box_on_obstacle"] == len(on)
    off = sorted(i for i, f in scored.items()
                 if any(not truth[i].obstacle_id or iou(b, truth[i].obstacle_box) < 0.1 for b in f["alert_boxes"]))
    assert [f["index"] for f in a["false_alerts"]] == off
    assert a["false_alert_tracks"] is not None and a["false_alert_tracks"] <= len(off)  # the node's track ids arrive
    # every false track is sorted by the ground-truth class under its flagged pixels (the drive has semantics)
    assert sum((a["false_alerts_by_class"] or {}).values()) == a["false_alert_tracks"]


def test_offline_foreign_bag_with_explicit_topics(tmp_path: Path, model_dir: Path) -> None:
    frames = list(generate_drive(DriveSpec(frames=4, height=64, width=128, seed=5, obstacle_probability=1.0,
                                               obstacle_start_m=(8.0, 12.0))))
    bag = tmp_path / "foreign"
    _foreign_bag(bag, frames, storage="sqlite3")
    out = tmp_path / "report"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(model_dir), "--out", str(out), "--no-progress",
                     "--camera-topic", "/sensors/left/image", "--gt-semantic-topic", "/gt/sem",
                     "--gt-anomaly-topic", "/gt/ano", "--backend", "onnxruntime"]) == 0
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert report["frames_in"] == 4 and m["frames_scored"] + m["frames_skipped"] == 4
    assert [(s["index"], s["reason"].split(":")[0]) for s in report["skipped"]] == [(2, "decode error")]
    assert "bad_step" in report["skipped"][0]["reason"]
    # bgr8 (padded or not) decodes to the generator's RGB, so the reference runs on those arrays
    backend = create_backend("onnxruntime", model_dir)
    kept = [f for i, f in enumerate(frames) if i != 2]
    res = [backend.infer(f.rgb[None]) for f in kept]
    _check_metrics(report, np.stack([r.anomaly[0] for r in res]), np.stack([r.class_ids[0] for r in res]),
                   np.stack([f.anomaly for f in kept]), np.stack([f.semantic for f in kept]))

    out2 = tmp_path / "all_cams"  # every camera (auto), no ground truth paired: processed, not scored
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(model_dir), "--out", str(out2), "--no-progress"]) == 0
    r2 = json.loads((out2 / "report.json").read_text())
    assert r2["camera_topics"] == ["/sensors/left/image", "/sensors/rear/image/compressed", "/sensors/right/image_yuv"]
    assert r2["frames_in"] == 12 and r2["frames_processed"] == 11 and "anomaly" not in r2["metrics"]
    assert set(r2["horizon_gate"]["camera_info"].values()) == {None}  # the foreign bag has no CameraInfo
    assert "not applied to /sensors/left/image" in (out2 / "report.md").read_text()


@pytest.mark.ros
@pytest.mark.slow
def test_live_mode_real_node(tmp_path: Path, model_dir: Path) -> None:
    bag = tmp_path / "drive"
    write_drive_bag(bag, SPEC, storage="sqlite3", progress=False)
    out = tmp_path / "live"
    assert dsa_main(["bag-eval", "--bag", str(bag), "--model", str(model_dir), "--out", str(out), "--live",
                     "--backend", "onnxruntime", "--rate", "1.0", "--debounce-seconds", "0.5",
                     "--mount-pitch-deg", "2.5"]) == 0
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert report["mode"] == "live" and report["frames_in"] == SPEC.frames
    node_params = yaml.safe_load((out / "node_params.yaml").read_text())["/**"]["ros__parameters"]
    assert node_params["debounce_seconds"] == 0.5  # what the node ran with
    assert node_params["camera.front.camera_info_topic"] == "/camera/front/camera_info"  # the node's horizon gate
    assert node_params["camera.front.mount_pitch_deg"] == 2.5
    assert report["horizon_gate"]["on"] and report["horizon_gate"]["camera_info"] == {
        "/camera/front/image_raw": "/camera/front/camera_info"} and report["horizon_gate"]["pitch_deg"] == 2.5
    assert m["frames_scored"] + m["frames_skipped"] == SPEC.frames
    assert report["dropped"]["count"] == m["frames_skipped"] and report["dropped"]["published"] == SPEC.frames
    assert all(s["reason"] == "dropped by the node (no output)" for s in report["skipped"])
    assert m["frames_scored"] >= 1, "the node answered no frame at 2 fps"
    assert report["latency"]["count"] == m["frames_scored"] and report["latency"]["p50_ms"] > 0
    scored = {f["stamp_ns"] for f in report["per_frame"]}
    # The node's published anomaly scores are the backend's own output on the same image (same stamp).
    keys, scores, classes, ano, sem = _reference(bag, model_dir, "/camera/front/image_raw", "/camera/front/gt/semantic",
                                                 "/camera/front/gt/anomaly", scored)
    with AnyReader([out / "recording"], default_typestore=make_typestore()) as reader:
        recorded = {}
        for conn, _, raw in reader.messages():
            if conn.topic == "/dsa_perception/front/anomaly_score":
                msg = reader.deserialize(raw, conn.msgtype)
                assert msg.encoding == "32FC1"
                recorded[stamp_to_ns(msg.header.stamp)] = np.frombuffer(bytes(msg.data), "<f4").reshape(msg.height, msg.width)
    assert sorted(recorded) == keys
    assert np.allclose(np.stack([recorded[k] for k in keys]), scores, atol=1e-6)
    if m.get("anomaly", {}).get("n_neg"):
        _check_metrics(report, scores, classes, ano, sem)
    _check_alerts(report, list(generate_drive(SPEC)))


def test_live_run_domain_ids_stay_below_the_ephemeral_port_range() -> None:
    """A live run's DDS ports (7400 + 250 * domain + 10 + 2 * participant) must not reach Linux's ephemeral ports
    (from 32768), where another socket can hold them and discovery fails; and the run never joins the caller's domain."""
    import random

    from dsa_core.bags.live import LIVE_DOMAIN_IDS, private_domain_id, ros_environment

    assert 0 not in LIVE_DOMAIN_IDS
    for domain in LIVE_DOMAIN_IDS:
        assert 7400 + 250 * domain + 10 + 2 * 20 < 32768  # room for 20 participants on the machine
    random.seed(0)
    draws = {private_domain_id("7") for _ in range(2000)}
    assert 7 not in draws and draws <= set(LIVE_DOMAIN_IDS) and len(draws) > 90
    assert {private_domain_id(bad) for bad in (None, "", "abc")} <= set(LIVE_DOMAIN_IDS)
    env = ros_environment()
    assert int(env["ROS_DOMAIN_ID"]) in LIVE_DOMAIN_IDS and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert ros_environment(42)["ROS_DOMAIN_ID"] == "42"


def test_live_recording_keeps_each_obstacles_severity(tmp_path: Path) -> None:
    """The node's recorded ObstacleAlert is read back with each confirmed obstacle's own severity, so live reports
    score from each severity up as offline ones do (the live run above may raise INFO alerts only)."""
    import dataclasses

    from dsa_core.bags.live import _read_outputs
    from dsa_core.bags.writer import BagWriter, gt_obstacles_message

    frame = next(f for f in generate_drive(SPEC) if f.obstacle_box is not None)
    ts = make_typestore()
    msg = gt_obstacles_message(ts, frame, 1000, "camera_front_optical_frame", 1000, 1)
    msg = dataclasses.replace(msg, severity=3,  # ObstacleAlert.SEVERITY_CRITICAL: the max over its obstacles
                              obstacles=[dataclasses.replace(msg.obstacles[0], severity=2),
                                         dataclasses.replace(msg.obstacles[0], track_id=99, severity=3),
                                         dataclasses.replace(msg.obstacles[0], track_id=98, severity=1, confirmed=False)])
    bag = tmp_path / "rec"
    with BagWriter(bag) as writer:
        writer.write("/dsa/front/obstacles", msg, 1000)
    out = _read_outputs(bag, {"obstacles": "/dsa/front/obstacles"})
    (_, value), = out["obstacles"].values()
    assert [(a.track_id, a.severity) for a in value["confirmed"]] == [(frame.obstacle_id, 2), (99, 3)]
