"""Issue 13: `dsa bag-eval` loses nothing it can read. Undecodable camera / ground-truth messages are skipped and
listed with their reason; a truncated .mcap / .db3 is read up to the damage and the report says what was lost;
mistakes in the command are one line on stderr with exit status 2. Real bags written with rosbags, damaged on disk
the way a full disk or an interrupted copy damages them; the real model export and ONNX Runtime."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from rosbags.highlevel import AnyReader

from dsa_core.bags.drive import DriveSpec, generate_drive
from dsa_core.bags.messages import image_message, make_typestore, stamp_to_ns
from dsa_core.bags.writer import BagWriter, write_drive_bag
from dsa_core.cli import main as dsa_main

CAM, SEM, ANO = "/camera/front/image_raw", "/camera/front/gt/semantic", "/camera/front/gt/anomaly"


@pytest.fixture(scope="module")
def model_dir(exported_nano) -> Path:
    return exported_nano.model_dir


def _eval(bag: Path, model_dir: Path, out: Path, *extra: str) -> int:
    return dsa_main(["bag-eval", "--bag", str(bag), "--model", str(model_dir), "--out", str(out), "--no-progress",
                     "--backend", "onnxruntime", *extra])


def test_undecodable_camera_and_ground_truth_messages_are_skipped_and_listed(tmp_path: Path, model_dir: Path,
                                                                              capsys) -> None:
    frames = list(generate_drive(DriveSpec(frames=5, height=64, width=128, seed=3)))
    ts = make_typestore()
    bag = tmp_path / "bag"
    garbage = bytes(range(7)) * 3
    with BagWriter(bag, storage="mcap", version=8, typestore=ts) as w:
        for i, f in enumerate(frames):
            t = 1_000_000_000 + i * 100_000_000
            if i == 1:
                w.write_raw(ANO, "sensor_msgs/msg/Image", garbage, t)  # ground truth that does not deserialize
            else:
                w.write(ANO, image_message(ts, f.anomaly, "mono8", t, "cam"), t)
            if i == 4:  # deserializes, but is no mono8 ground truth
                w.write(SEM, image_message(ts, f.rgb, "rgb8", t, "cam"), t)
            else:
                w.write(SEM, image_message(ts, f.semantic, "mono8", t, "cam"), t)
            if i == 3:
                w.write_raw(CAM, "sensor_msgs/msg/Image", garbage, t + 1)  # a camera message that does not deserialize
            else:
                w.write(CAM, image_message(ts, f.rgb, "rgb8", t, "cam"), t + 1)
    out = tmp_path / "report"
    assert _eval(bag, model_dir, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames_in"] == 5 and report["metrics"]["frames_scored"] == 2
    skipped = {s["index"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == [1, 3, 4]
    assert "cannot deserialize sensor_msgs/msg/Image" in skipped[3] and skipped[3].startswith("decode error")
    assert "unreadable" in skipped[1] and "cannot deserialize" in skipped[1] and ANO in skipped[1]
    assert "unreadable" in skipped[4] and "mono8" in skipped[4] and SEM in skipped[4]
    listed = sorted((u["topic"], u["reason"].split(":")[0]) for u in report["unreadable_messages"])
    assert listed == sorted([(ANO, "cannot deserialize sensor_msgs/msg/Image (21 bytes)"),
                             (CAM, "cannot deserialize sensor_msgs/msg/Image (21 bytes)"),
                             (SEM, "undecodable ground truth")])
    assert report["bag_damage"] == []
    assert "## What could not be read" in (out / "report.md").read_text()
    assert "3 messages could not be read" in capsys.readouterr().out


def _truncate(bag: Path, keep: float) -> Path:
    data_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    data = data_file.read_bytes()
    data_file.write_bytes(data[: int(len(data) * keep)])
    return data_file


def _stamps(bag: Path, topic: str) -> list[int]:
    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [stamp_to_ns(reader.deserialize(raw, c.msgtype).header.stamp) for c, _, raw in reader.messages(conns)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_read_up_to_the_damage(tmp_path: Path, model_dir: Path, storage: str, capsys) -> None:
    spec = DriveSpec(frames=20, height=128, width=256, seed=4)  # ~3.5 MB: several 1 MiB mcap chunks
    whole = tmp_path / "whole"
    write_drive_bag(whole, spec, storage=storage, progress=False)
    all_stamps = _stamps(whole, CAM)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    _truncate(cut, 0.7)
    with pytest.raises(Exception):  # what rosbags alone makes of it: nothing
        _stamps(cut, CAM)
    out = tmp_path / "report"
    assert _eval(cut, model_dir, out) == 0
    report = json.loads((out / "report.json").read_text())
    n = report["frames_in"]
    assert 0 < n < spec.frames
    seen = sorted([f["stamp_ns"] for f in report["per_frame"]] + [f["stamp_ns"] for f in report["skipped"]])
    assert seen == all_stamps[:n]  # exactly the frames before the damage
    # a frame whose ground truth lay beyond the damage is skipped with that reason, not lost silently
    assert all("no ground truth" in f["reason"] for f in report["skipped"])
    assert report["metrics"]["frames_scored"] + report["metrics"]["frames_skipped"] == n
    (damage,) = report["bag_damage"]
    expected = yaml.safe_load((whole / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in expected["topics_with_message_count"]}
    assert damage["lost"][CAM] == counts[CAM] - n == spec.frames - n
    assert damage["read"][CAM] == n and damage["reason"]
    terminal = capsys.readouterr().out
    assert "DAMAGED BAG, read up to the damage" in terminal and "lost" in terminal
    assert "damaged bag, read up to the damage" in (out / "report.md").read_text()
    if storage == "mcap":  # the recorder never closed the bag: no metadata.yaml either
        (cut / "metadata.yaml").unlink()
        out2 = tmp_path / "report2"
        assert _eval(cut, model_dir, out2) == 0
        r2 = json.loads((out2 / "report.json").read_text())
        assert r2["frames_in"] == n
        assert "no metadata.yaml" in r2["bag_damage"][0]["reason"] and "no end magic" in r2["bag_damage"][0]["reason"]
        assert r2["bag_damage"][0]["lost"] is None  # unknown without metadata


def test_user_errors_are_one_line_with_exit_status_2(tmp_path: Path, model_dir: Path, capsys) -> None:
    bag = tmp_path / "bag"
    write_drive_bag(bag, DriveSpec(frames=2, height=64, width=128, seed=1), storage="mcap", progress=False)
    not_a_bag = tmp_path / "empty"
    not_a_bag.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        ({"--bag": str(tmp_path / "missing")}, "no such bag directory"),
        ({"--bag": str(a_file)}, "a rosbag2 bag is a directory"),
        ({"--bag": str(not_a_bag)}, "not a rosbag2 bag"),
        ({"--camera-topic": "/no/such/image"}, "not in the bag"),
        ({"--model": str(not_a_bag)}, "no manifest.json"),
        ({"--rate": "0"}, "--rate must be > 0"),
        ({"--debounce-seconds": "-1"}, "--debounce-seconds must be in [0, 60]"),
    ]
    for given, message in cases:
        args = {"--bag": str(bag), "--model": str(model_dir), "--out": str(tmp_path / "out"), **given}
        argv = ["bag-eval", "--no-progress"] + [x for kv in args.items() for x in kv]
        assert dsa_main(argv) == 2, given
        err = capsys.readouterr().err.strip()
        assert err.startswith("dsa bag-eval: ") and message in err and "\n" not in err, (given, err)
        assert "Traceback" not in err
