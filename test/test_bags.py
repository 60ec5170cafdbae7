"""Bag writing/reading (rosbags only): drive bags in both storages, stamps, exact pixels, foreign bags, pairing."""
from __future__ import annotations

import dataclasses

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from dsa_core.bags.drive import DriveSpec, generate_drive, road_geometry
from dsa_core.bags.messages import camera_info_message, compressed_message, image_message, make_typestore, stamp_to_ns
from dsa_core.bags.reader import BagTopicError, bag_topics, iter_frames, select_streams
from dsa_core.bags.writer import BagWriter, DriveTopics, write_drive_bag
from dsa_core.data.synth.scene import EGO_HOOD_MAX_FRACTION, render_scene
from dsa_core.data.synth.sprites import (OUTLIER_POOL_FAMILIES, PRETRAIN_OBJECT_FAMILIES, TEST_ANOMALY_FAMILIES,
                                         VALIDATION_OBJECT_FAMILIES)

SPEC = DriveSpec(frames=8, height=64, width=128, fps=10.0, seed=3, segment_frames=4, obstacle_probability=1.0,
                 obstacle_start_m=(8.0, 12.0))


def _read_all(path: Path) -> dict[str, list[tuple[int, int, object]]]:
    """topic -> [(log time, header stamp, msg)] read independently of dsa_core.bags.reader."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=make_typestore()) as reader:
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            out.setdefault(conn.topic, []).append((t, stamp_to_ns(msg.header.stamp), msg))
    return out


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_drive_bag_round_trip(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "drive"
    summary = write_drive_bag(bag, SPEC, storage=storage, version=8, compressed=True, progress=False)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8
    assert meta["storage_identifier"] == storage
    assert all(isinstance(t["topic_metadata"]["offered_qos_profiles"], str) for t in meta["topics_with_message_count"])

    topics = DriveTopics.for_camera("/camera/front/image_raw")
    msgs = _read_all(bag)
    assert set(msgs) == {topics.image, topics.compressed, topics.camera_info, topics.gt_semantic, topics.gt_anomaly,
                         topics.gt_obstacles}
    assert all(len(v) == SPEC.frames for v in msgs.values())
    image_stamps = [s for _, s, _ in msgs[topics.image]]
    assert len(set(image_stamps)) == SPEC.frames and image_stamps == sorted(image_stamps)
    for topic in msgs:  # every topic carries exactly the image stamps, and header stamp == bag time
        assert [s for _, s, _ in msgs[topic]] == image_stamps
        assert all(t == s for t, s, _ in msgs[topic])
    assert np.allclose(np.diff(image_stamps), 1e9 / SPEC.fps, atol=1)

    expected = list(generate_drive(SPEC))
    for exp, (_, _, img), (_, _, sem), (_, _, ano), (_, _, comp), (_, _, info) in zip(
            expected, msgs[topics.image], msgs[topics.gt_semantic], msgs[topics.gt_anomaly], msgs[topics.compressed],
            msgs[topics.camera_info]):
        assert (img.encoding, img.height, img.width, img.step) == ("rgb8", 64, 128, 128 * 3)
        assert np.array_equal(np.asarray(img.data).reshape(64, 128, 3), exp.rgb)
        assert sem.encoding == ano.encoding == "mono8"
        assert np.array_equal(np.asarray(sem.data).reshape(64, 128), exp.semantic)
        assert np.array_equal(np.asarray(ano.data).reshape(64, 128), exp.anomaly)
        jpeg = cv2.cvtColor(cv2.imdecode(np.asarray(comp.data), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.abs(jpeg.astype(int) - exp.rgb).mean() < 12
        assert np.allclose(info.k, exp.intrinsics.k_matrix())
    assert summary["obstacle_frames"] == sum(int((e.anomaly == 1).any()) for e in expected) > 0
    # The ground-truth obstacle topic: the true box, id and distance of the visible obstacle, nothing otherwise.
    for exp, (_, _, alert) in zip(expected, msgs[topics.gt_obstacles]):
        assert alert.__msgtype__ == "dsa_perception/msg/ObstacleAlert" and (alert.image_height, alert.image_width) == (64, 128)
        got = [(o.track_id, (o.bbox_x, o.bbox_y, o.bbox_width, o.bbox_height), o.pixel_area) for o in alert.obstacles]
        want = [(exp.obstacle_id, exp.obstacle_box, int((exp.anomaly == 1).sum()))] if exp.obstacle_id else []
        assert got == want
        if exp.obstacle_id:
            assert alert.obstacles[0].distance_m == pytest.approx(exp.obstacle_distance_m, rel=1e-6)
    assert [o["id"] for o in summary["obstacles"]] == sorted({e.obstacle_id for e in expected} - {0})


def test_drive_obstacles_approach_from_far_to_near_and_labels_are_consistent() -> None:
    spec = DriveSpec(frames=60, height=128, width=256, fps=5.0, seed=1, segment_frames=30, obstacle_probability=1.0)
    frames = list(generate_drive(spec))
    ids = {f.obstacle_id for f in frames} - {0}
    assert len(ids) == 2  # one obstacle per street
    for ident in ids:
        track = [f for f in frames if f.obstacle_id == ident]
        idx = [f.index for f in track]
        assert idx == list(range(idx[0], idx[-1] + 1)) and len(idx) >= 10  # visible on consecutive frames
        dist = np.array([f.obstacle_distance_m for f in track])
        area = np.array([(f.anomaly == 1).sum() for f in track])
        bottom = np.array([f.obstacle_box[1] + f.obstacle_box[3] for f in track])
        cy, h = track[0].intrinsics.cy, spec.height
        assert np.all(np.diff(dist) < 0) and dist[0] > 25.0 and dist[-1] < 12.0
        # Far: small and just below the horizon; near: large and low in the image.
        assert bottom[0] - cy < 0.25 * (h - cy) and bottom[-1] - cy > 0.6 * (h - cy)
        assert np.all(np.diff(bottom) >= 0)
        assert area[-1] > 10 * area[0] > 0 and area[len(area) // 2:].mean() > 2 * area[: len(area) // 2].mean()
        assert len({f.obstacle_family for f in track}) == 1
    # Once passed, the obstacle leaves the view: the street ends with clear road, frames to measure false alerts on.
    assert sum(f.obstacle_id == 0 for f in frames) >= 5
    for f in frames:
        ano, sem = f.anomaly, f.semantic
        assert set(np.unique(ano)) <= {0, 1, 255}
        assert np.all(sem[ano == 1] == 255)  # the obstacle is no Cityscapes class
        assert np.array_equal(ano == 255, (sem == 255) & (ano != 1))  # void everywhere else the semantics are void
        assert np.isfinite(f.obstacle_distance_m) == bool(f.obstacle_id) == (ano == 1).any()
        if not f.obstacle_id:
            continue
        rows, cols = np.nonzero((ano == 1).any(1))[0], np.nonzero((ano == 1).any(0))[0]
        assert f.obstacle_box == (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        # The obstacle's base stands on the ground at its distance: row = cy + f * h_cam / z (within the sprite's
        # bottom margin and rounding); the ground point is that contact point in the optical frame.
        gx, gy, gz = f.obstacle_ground_point
        assert gy == f.intrinsics.camera_height and np.hypot(gx, gz) == pytest.approx(f.obstacle_distance_m)
        expected_row = f.intrinsics.cy + f.intrinsics.f * gy / gz
        if expected_row < (1 - EGO_HOOD_MAX_FRACTION) * spec.height:  # lower, the hood covers the base
            assert abs(rows.max() - expected_row) < 0.25 * (rows.max() - rows.min() + 1) + 3


def test_drive_obstacles_stand_on_the_road_in_front_of_the_traffic() -> None:
    """Every obstacle frame shows the obstacle standing on the road: the node's own search (find_obstacles), run on
    the ground truth, finds it touching the drivable area, and the street under its base is road. The streets are
    those of a 20-obstacle drive, whose camera lane would otherwise hold a lead vehicle 8-30 m ahead."""
    from dsa_core.perception.obstacles import ObstacleSettings, find_obstacles

    spec = DriveSpec(frames=240, height=128, width=256, fps=5.0, seed=5, segment_frames=30, obstacle_probability=1.0)
    settings = ObstacleSettings(min_area=1, ego_mask_bottom_fraction=0.0, horizon_gate=False)
    frames = list(generate_drive(spec))
    shown = [f for f in frames if f.obstacle_id]
    assert len({f.obstacle_id for f in shown}) == 8 and len(shown) >= 8 * 10  # every street's obstacle, seen long
    for f in shown:
        obstacle = f.anomaly == 1
        assert find_obstacles(obstacle.astype(np.uint8) * 255, f.semantic, obstacle.astype(np.float32), settings)
        x, y, w, h = f.obstacle_box
        below = f.semantic[y + h:y + h + 2, x + w // 4:x + w - w // 4 + 1]
        below = below[below != 255]
        assert below.size == 0 or np.mean(below == 0) >= 0.5, f"frame {f.index}: the base is not on the road"


def test_an_obstacle_behind_something_nearer_is_not_drawn() -> None:
    from dsa_core.bags.drive import MIN_BASE_ROAD_SHARE, _base_on_road

    semantic = np.zeros((40, 60), np.uint8)  # road
    semantic[10:30, 20:40] = 13  # a car
    semantic[34:, :] = 255  # the hood (void)
    assert _base_on_road(semantic, 10.0, 20.0, 8, 8)  # beside the car, on the road
    assert not _base_on_road(semantic, 30.0, 20.0, 8, 8)  # its base on the car: the car is nearer and hides it
    assert _base_on_road(semantic, 30.0, 31.0, 8, 8)  # in front of the car, on the road below it
    assert _base_on_road(semantic, 30.0, 36.0, 8, 8)  # over the hood only: nothing of the street to say otherwise
    # the base band covers columns 28-32 (the middle half of the width) and rows 20-21
    partly = semantic.copy()
    partly[20:24, 30:40] = 0  # 3 of its 5 columns on road
    assert MIN_BASE_ROAD_SHARE <= 3 / 5 and _base_on_road(partly, 30.0, 20.0, 8, 8)
    partly[20:24, 30] = 13  # 2 of 5
    assert MIN_BASE_ROAD_SHARE > 2 / 5 and not _base_on_road(partly, 30.0, 20.0, 8, 8)


def test_drive_has_no_frozen_or_duplicate_frames() -> None:
    # The demo's shape at a smaller size: streets of 24 frames at 5 fps (the camera travels 37 m on each).
    spec = DriveSpec(frames=48, height=64, width=128, fps=5.0, seed=4, segment_frames=24, obstacle_probability=0.5)
    frames = list(generate_drive(spec))
    digests = {hashlib.sha256(f.rgb.tobytes()).hexdigest() for f in frames}
    assert len(digests) == len(frames), "two frames of the drive are pixel-identical"
    for a, b in zip(frames, frames[1:]):
        changed = np.any(a.rgb != b.rgb, axis=2).mean()
        assert changed > 0.2, f"frames {a.index} and {b.index} differ in only {changed:.1%} of the pixels"
    # The hood (always in the bottom row) is fixed to the camera: it stays put within a street while the street moves.
    for start in range(0, spec.frames, spec.segment_frames):
        street = frames[start:start + spec.segment_frames]
        assert all(np.array_equal(f.rgb[-1], street[0].rgb[-1]) for f in street)


def test_drive_obstacles_are_held_out_families() -> None:
    spec = DriveSpec(frames=40, height=64, width=128, fps=5.0, seed=0, segment_frames=4, obstacle_probability=1.0,
                     obstacle_start_m=(8.0, 12.0))
    families = {f.obstacle_family for f in generate_drive(spec)} - {None}
    assert len(families) >= 3
    # The evaluation families: disjoint from the outlier-exposure pool (test_synth) and never drawn in training scenes.
    assert families <= set(TEST_ANOMALY_FAMILIES) and not families & set(OUTLIER_POOL_FAMILIES)
    # other unseen families on request (the road-debris validation objects), each obstacle from the list
    debris = generate_drive(dataclasses.replace(spec, obstacle_families=VALIDATION_OBJECT_FAMILIES))
    other = {f.obstacle_family for f in debris} - {None}
    assert len(other) >= 3 and other <= set(VALIDATION_OBJECT_FAMILIES)
    for trained in (OUTLIER_POOL_FAMILIES[:1], PRETRAIN_OBJECT_FAMILIES[:1], ()):
        with pytest.raises(ValueError, match="families no training stage sees"):
            dataclasses.replace(spec, obstacle_families=trained)


@pytest.mark.parametrize("bad, match", [
    (dict(speed_mps=0.0), "speed_mps"),
    (dict(segment_frames=200, fps=5.0), "zoom above"),
    (dict(obstacle_start_m=(40.0, 30.0)), "obstacle_start_m"),
    (dict(fps=0.0), "fps"),
])
def test_drive_spec_rejects_bad_input(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DriveSpec(frames=10, height=64, width=128, **bad)


def test_synth_bag_cli_says_what_is_wrong(tmp_path: Path, capsys) -> None:
    from dsa_core.cli import main as dsa_main

    assert dsa_main(["synth", "bag", "--out", str(tmp_path / "b"), "--frames", "10", "--fps", "2",
                     "--segment-frames", "60"]) == 2
    assert re.match(r"dsa synth bag: a street of 60 frames .* needs a zoom above", capsys.readouterr().err)
    assert not (tmp_path / "b").exists()
    assert dsa_main(["synth", "bag", "--out", str(tmp_path / "b"), "--frames", "10",
                     "--obstacle-families", "traffic_cone,patchwork"]) == 2
    assert capsys.readouterr().err.startswith("dsa synth bag: obstacle families must be a non-empty choice of rock,")
    assert dsa_main(["synth", "bag", "--out", str(tmp_path / "b"), "--calibration-drive",
                     "--obstacle-families", "barrel"]) == 2
    assert "has no use with --calibration-drive" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_synth_bag_drive_lengths() -> None:
    """Without --frames the recipes' calibration drive is the documented 30 camera-minutes (its length sets how well
    the calibrated false-alert rate holds on new streets), an ordinary drive keeps its short default, and an explicit
    --frames wins for both."""
    from dsa_core.bags.drive import CALIBRATION_DRIVE_FRAMES
    from dsa_core.commands import command_parser
    from dsa_core.commands.synth import _common
    from dsa_core.commands.synth_formats import bag as synth_bag

    def spec(*argv: str) -> DriveSpec:  # the parser `dsa synth bag` builds
        parser = command_parser("dsa synth bag", "")
        _common(parser)
        synth_bag.add_arguments(parser)
        return synth_bag.drive_spec(parser.parse_args(["--out", "x", *argv]))

    cal = spec("--calibration-drive")
    assert cal.frames == CALIBRATION_DRIVE_FRAMES and cal.frames / cal.fps == 1800.0  # 30 camera-minutes
    assert (cal.seed, cal.obstacle_probability, cal.segment_frames) == (7, 0.0, 40)
    assert spec("--calibration-drive", "--frames", "12").frames == 12
    assert spec().frames == synth_bag.DEFAULT_FRAMES and spec("--frames", "5").frames == 5
    with pytest.raises(ValueError):
        spec("--calibration-drive", "--frames", "0")


def test_road_geometry_matches_the_horizon() -> None:
    for seed in range(4):
        scene = render_scene(96, 192, seed)
        road = road_geometry(scene)
        # Polygon vertices are integers: the far edge's rounding (<= 0.5 px) plus the horizon's own rounding.
        assert abs(road.yh - scene.horizon) <= 1.0
        assert road.left < 0 < road.right or road.left < road.right
        assert 0.5 * 192 < road.f < 1.5 * 192  # render_scene draws f = w * U(0.85, 1.2)


def _foreign_bag(path: Path, frames: list, storage: str = "mcap") -> None:
    """Another tool's layout: different topic names, bgr8 / yuv422 / padded rows / compressed, unrelated topics,
    GT logged BEFORE its image and later in time, one corrupted image."""
    ts = make_typestore()
    String = ts.types["std_msgs/msg/String"]
    with BagWriter(path, storage=storage, version=8, typestore=ts) as bag:
        for i, f in enumerate(frames):
            t = 5_000_000_000 + i * 100_000_000
            bag.write("/gt/sem", image_message(ts, f.semantic, "mono8", t, "left"), t + 1)
            bag.write("/gt/ano", image_message(ts, f.anomaly, "mono8", t, "left"), t + 2)
            left = image_message(ts, f.rgb, "bgr8", t, "left", row_padding=8 if i % 2 else 0)
            if i == 2:
                left.step = left.step - 1  # malformed: the node rejects it, so must bag-eval (with the reason)
            bag.write("/sensors/left/image", left, t + 50_000_000)
            bag.write("/sensors/right/image_yuv", image_message(ts, f.rgb, "yuv422", t, "right"), t + 3)
            bag.write("/sensors/rear/image/compressed", compressed_message(ts, f.rgb, "png", t, "rear"), t + 4)
            bag.write("/vehicle/status", String(data=f"frame {i}"), t + 5)


def test_foreign_bag_topics_encodings_and_pairing(tmp_path: Path) -> None:
    frames = list(generate_drive(DriveSpec(frames=4, height=64, width=128, seed=5, obstacle_probability=1.0,
                                               obstacle_start_m=(8.0, 12.0))))
    bag = tmp_path / "foreign"
    _foreign_bag(bag, frames)
    topics = bag_topics(bag)
    auto = select_streams(topics)
    assert [s.topic for s in auto] == ["/sensors/left/image", "/sensors/rear/image/compressed", "/sensors/right/image_yuv"]
    assert [s.name for s in auto] == ["left", "rear", "image_yuv"]  # node camera names derived from the topics
    with pytest.raises(BagTopicError, match="not in the bag"):
        select_streams(topics, ["/camera/front/image_raw"])
    with pytest.raises(BagTopicError, match="has type std_msgs/msg/String"):
        select_streams(topics, ["/vehicle/status"])
    with pytest.raises(BagTopicError, match="ONE camera"):
        select_streams(topics, None, "/gt/sem", "/gt/ano")

    streams = select_streams(topics, ["/sensors/left/image", "/sensors/right/image_yuv", "/sensors/rear/image/compressed"])
    got = {(f.stream.topic, f.index): f for f in iter_frames(bag, streams)}
    assert len(got) == 12
    for i, f in enumerate(frames):
        left = got[("/sensors/left/image", i)]
        if i == 2:
            assert left.rgb is None and "bad_step" in left.error
        else:
            assert np.array_equal(left.rgb, f.rgb)  # bgr8 (with and without row padding) decodes exactly
        yuv = got[("/sensors/right/image_yuv", i)].rgb
        assert np.abs(yuv.astype(int) - f.rgb).mean() < 6  # 4:2:2 chroma subsampling loses a little
        assert np.array_equal(got[("/sensors/rear/image/compressed", i)].rgb, f.rgb)  # png is lossless
        assert all(g.gt_semantic is None and g.gt_anomaly is None for k, g in got.items() if k[1] == i)

    paired = select_streams(topics, ["/sensors/left/image"], "/gt/sem", "/gt/ano")
    frames_left = list(iter_frames(bag, paired))
    assert [f.index for f in frames_left] == [0, 1, 2, 3]
    for f, exp in zip(frames_left, frames):
        assert f.missing_gt == []
        assert np.array_equal(f.gt_semantic, exp.semantic) and np.array_equal(f.gt_anomaly, exp.anomaly)


def test_image_without_ground_truth_is_reported_missing(tmp_path: Path) -> None:
    ts = make_typestore()
    rgb = np.zeros((8, 8, 3), np.uint8)
    bag = tmp_path / "gaps"
    with BagWriter(bag, storage="sqlite3", typestore=ts) as w:
        for i in range(3):
            t = (i + 1) * 1_000_000_000
            w.write("/cam/image_raw", image_message(ts, rgb, "rgb8", t, "cam"), t)
            if i != 1:
                w.write("/cam/gt/anomaly", image_message(ts, rgb[..., 0], "mono8", t, "cam"), t)
    streams = select_streams(bag_topics(bag))
    assert streams[0].gt_anomaly == "/cam/gt/anomaly" and streams[0].gt_semantic is None
    frames = list(iter_frames(bag, streams, pair_window_s=0.5))
    assert [(f.index, f.missing_gt) for f in frames] == [(0, []), (1, ["/cam/gt/anomaly"]), (2, [])]


def test_frames_carry_the_last_valid_camera_info_as_the_node_keeps_it(tmp_path: Path) -> None:
    """The horizon gate needs the CameraInfo in force at each frame: the last valid one before the image in bag
    order; an implausible one is listed as a problem and the previous one stays; an all-zero K (uncalibrated) means
    none from there on. The frame's ground camera is then the node's (no mount height: a horizon, no distances)."""
    ts = make_typestore()
    rgb = np.zeros((64, 128, 3), np.uint8)
    k1 = [100.0, 0.0, 64.0, 0.0, 100.0, 30.0, 0.0, 0.0, 1.0]
    k2 = [120.0, 0.0, 64.0, 0.0, 120.0, 34.0, 0.0, 0.0, 1.0]
    bad = [1e-300, 0.0, 64.0, 0.0, 1e-300, 34.0, 0.0, 0.0, 1.0]  # a field of view of 180 degrees: refused
    infos = {0: k1, 2: k2, 3: bad, 5: [0.0] * 9}  # frame -> CameraInfo written just before its image
    bag = tmp_path / "infos"
    with BagWriter(bag, storage="sqlite3", typestore=ts) as w:
        for i in range(6):
            t = (i + 1) * 100_000_000
            if i in infos:
                w.write("/cam/camera_info", camera_info_message(ts, 64, 128, infos[i], t, "cam"), t)
            w.write("/cam/image_raw", image_message(ts, rgb, "rgb8", t, "cam"), t + 1)
    streams = select_streams(bag_topics(bag))
    assert streams[0].camera_info == "/cam/camera_info"
    problems: list[dict] = []
    frames = list(iter_frames(bag, streams, problems=problems))
    in_force = [None if f.camera_info is None else f.camera_info[0] for f in frames]
    assert in_force == [k1, k1, k2, k2, k2, None]
    assert [p["topic"] for p in problems] == ["/cam/camera_info"] and "implausible CameraInfo" in problems[0]["reason"]
    cam = frames[4].ground_camera()
    assert (cam.fy, cam.cy, cam.height_m) == (120.0, 34.0, 0.0) and cam.horizon_row() == 34.0
    assert frames[5].ground_camera() is None
    no_info = tmp_path / "no_info"
    with BagWriter(no_info, storage="sqlite3", typestore=ts) as w:
        w.write("/cam/image_raw", image_message(ts, rgb, "rgb8", 1, "cam"), 1)
    assert select_streams(bag_topics(no_info))[0].camera_info is None


def test_writer_refuses_overwrite_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage"):
        BagWriter(tmp_path / "x", storage="rosbag1")
    with pytest.raises(ValueError, match="version"):
        BagWriter(tmp_path / "x", version=5)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        BagWriter(tmp_path / "exists")
    with pytest.raises(ValueError, match="raw and/or compressed"):
        write_drive_bag(tmp_path / "y", SPEC, raw=False, compressed=False)
    with pytest.raises(ValueError, match="absolute topic"):
        DriveTopics.for_camera("camera/image_raw")
