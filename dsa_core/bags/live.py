"""Live bag evaluation: the real node (``dsa_perception_node``) in the loop, fed and recorded through rclpy.

Two processes are started with the interpreter's own environment: the node with a generated parameter file, and
``python -m dsa_perception.bag_replay`` which replays the camera topics and records the node's outputs. dsa_core
itself never imports rclpy: it only writes the parameter file, waits, and scores the recorded bag with rosbags.
Both processes get a private ROS_DOMAIN_ID (LIVE_DOMAIN_IDS) and localhost-only discovery so parallel runs cannot
cross-talk.

Accounting: every published camera frame is either scored (its outputs were recorded and ground truth exists)
or listed as skipped with the reason (dropped by the node, no ground truth).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from dsa_core.bags.alerts import AlertBox, AlertScorer, find_gt_obstacles, flagged_class
from dsa_core.bags.messages import make_typestore, stamp_to_ns
from dsa_core.bags.reader import COMPRESSED, bag_topics, iter_frames, select_streams
from dsa_core.bags.report import horizon_gate_record, write_report
from dsa_core.bags.scoring import BagScorer
from dsa_core.eval.components import ComponentSizeFilter
from dsa_core.perception.image_codec import image_msg_to_array
from dsa_core.perception.obstacles import ObstacleSettings

log = logging.getLogger(__name__)

NODE_NAME = "dsa_perception"
RECORDED_OUTPUTS = ("semantic", "anomaly_score", "obstacles")


def _params_yaml(streams, model_dir: Path, backends: list[str], threshold: float | None,
                 camera_info: dict[str, str], extra: dict[str, Any], min_area_px: int | None = None,
                 mount_pitch_deg: float = 0.0) -> str:
    params: dict[str, Any] = {"cameras": [s.name for s in streams], "model_dir": str(model_dir.resolve()),
                              "backends": backends, **extra}
    if threshold is not None:
        params["anomaly_threshold"] = float(threshold)
    if min_area_px:
        params["min_obstacle_area"] = int(min_area_px)
    for s in streams:
        params[f"camera.{s.name}.image_topic"] = s.topic
        params[f"camera.{s.name}.transport"] = "compressed" if s.msgtype == COMPRESSED else "raw"
        if s.topic in camera_info:
            params[f"camera.{s.name}.camera_info_topic"] = camera_info[s.topic]
            params[f"camera.{s.name}.mount_pitch_deg"] = float(mount_pitch_deg)  # where the horizon gate puts it
    body = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in params.items())
    return f"/**:\n  ros__parameters:\n{body}\n"


#: Domain IDs drawn for a live run. Linux hands out ephemeral ports from 32768 up, and DDS derives its ports as
#: 7400 + 250 * domain + ...: from domain 102 on they fall into that range, where any other socket on the machine can
#: hold them and discovery silently fails (the ROS 2 "domain ID" guide: 0-101 are the safe IDs on Linux). 0 is
#: every ROS install's default, so it is left out as well.
LIVE_DOMAIN_IDS = range(1, 102)


def private_domain_id(current: str | None = None) -> int:
    """A random safe domain ID for the live run that is not the caller's own ROS_DOMAIN_ID (``current``)."""
    taken = int(current) if current and current.strip().isdigit() else None
    return random.choice([d for d in LIVE_DOMAIN_IDS if d != taken])


def ros_environment(domain_id: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else private_domain_id(env.get("ROS_DOMAIN_ID")))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def node_executable() -> str:
    exe = Path(sys.executable).parent / "dsa_perception_node"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: install the package (scripts/setup_env.sh) for --live")
    return str(exe)


def _read_outputs(path: Path, topics: dict[str, str]) -> dict[str, dict[int, tuple[int, Any]]]:
    """output kind -> stamp -> (arrival ns, decoded array or message) for the recorded topics of one camera."""
    topics = {k: t for k, t in topics.items() if k in RECORDED_OUTPUTS}  # overlays are for viewing, not scoring
    out: dict[str, dict[int, tuple[int, Any]]] = {k: {} for k in topics}
    by_topic = {t: k for k, t in topics.items()}
    with AnyReader([path], default_typestore=make_typestore()) as reader:
        conns = [c for c in reader.connections if c.topic in by_topic]
        for conn, t, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            kind = by_topic[conn.topic]
            stamp = stamp_to_ns(msg.header.stamp)
            if kind in ("semantic", "anomaly_score"):
                value: Any = np.array(image_msg_to_array(msg, encodings=("mono8", "32FC1")))
            else:
                value = {"severity": int(msg.severity), "obstacles": len(msg.obstacles),
                         "confirmed": [AlertBox((int(o.bbox_x), int(o.bbox_y), int(o.bbox_width), int(o.bbox_height)),
                                                float(o.distance_m), int(o.track_id), severity=int(o.severity))
                                       for o in msg.obstacles if o.confirmed]}
            out[kind].setdefault(stamp, (t, value))
    return out


def evaluate_live(bag: str | Path, model_dir: str | Path, out: str | Path, camera_topics: list[str] | None = None,
                  gt_semantic_topic: str | None = None, gt_anomaly_topic: str | None = None,
                  backends: list[str] = ("onnxruntime", "torch"), threshold: float | None = None, rate: float = 1.0,
                  sizes: ComponentSizeFilter | None = None, startup_timeout_s: float = 120.0,
                  node_params: dict[str, Any] | None = None, record_overlay: bool = False,
                  min_area_px: int | None = None, mount_pitch_deg: float = 0.0) -> dict[str, Any]:
    """Replay ``bag`` into the real node, record and score its outputs; writes the report into ``out``.
    ``mount_pitch_deg``: the cameras' mount pitch (the node's camera.<name>.mount_pitch_deg, for the horizon gate).

    Threshold / minimum area left None are left unset for the node, which then uses the model's manifest values;
    the report states them as the node resolves them. The node publishes only its own score, so a live report
    has no baseline rows (the offline report of the same bag has them).
    """
    bag, model_dir, out = Path(bag), Path(model_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    topics = bag_topics(bag)
    streams = select_streams(topics, camera_topics, gt_semantic_topic, gt_anomaly_topic)
    camera_info = {s.topic: s.camera_info for s in streams if s.camera_info}
    params_file = out / "node_params.yaml"
    params_file.write_text(_params_yaml(streams, model_dir, list(backends), threshold, camera_info, node_params or {},
                                        min_area_px, mount_pitch_deg))
    recording, replay_log = out / "recording", out / "replay_log.json"
    if recording.exists():
        raise FileExistsError(f"{recording} exists; use a fresh --out directory")
    outputs = list(RECORDED_OUTPUTS) + (["overlay"] if record_overlay else [])
    record = {s.name: {k: f"/{NODE_NAME}/{s.name}/{k}" for k in outputs} for s in streams}
    env = ros_environment()
    node_log = open(out / "node.log", "w")
    node = subprocess.Popen([node_executable(), "--ros-args", "--params-file", str(params_file), "-r", f"__node:={NODE_NAME}"],
                            env=env, stdout=node_log, stderr=subprocess.STDOUT)
    try:
        cmd = [sys.executable, "-P", "-m", "dsa_perception.bag_replay", "--bag", str(bag), "--out-bag", str(recording),
               "--log", str(replay_log), "--rate", str(rate), "--startup-timeout", str(startup_timeout_s)]
        for s in streams:
            cmd += ["--topic", s.topic] + (["--topic", camera_info[s.topic]] if s.topic in camera_info else [])
            for topic in record[s.name].values():
                cmd += ["--record", topic]
        log.info("live: node pid %d (domain %s), replaying %s at rate %.2f", node.pid, env["ROS_DOMAIN_ID"], bag, rate)
        with open(out / "replay.log", "w") as replay_out:
            done = subprocess.run(cmd, env=env, stdout=replay_out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = (out / "replay.log").read_text()[-2000:] + "\n--- node.log ---\n" + (out / "node.log").read_text()[-2000:]
            raise RuntimeError(f"bag replay failed (exit {done.returncode}):\n{tail}")
        if node.poll() is not None:
            raise RuntimeError(f"the node exited early (code {node.returncode}); see {out / 'node.log'}")
    finally:
        if node.poll() is None:
            node.terminate()
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        node_log.close()
    gate = {k: v for k, v in (node_params or {}).items() if k in ("horizon_gate", "horizon_margin_deg")}
    return score_recording(bag, streams, recording, json.loads(replay_log.read_text()), record, model_dir, out,
                           backends, threshold, sizes, rate, min_area_px,
                           horizon_gate=horizon_gate_record(ObstacleSettings(**gate), streams, mount_pitch_deg))


def score_recording(bag: Path, streams, recording: Path, replay: dict[str, Any], record: dict[str, dict[str, str]],
                    model_dir: Path, out: Path, backends, threshold, sizes, rate: float,
                    min_area_px: int | None = None, horizon_gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pair the recorded outputs with the published frames and the ground truth (both by stamp) and report.
    ``horizon_gate``: the node's gate as it ran (report.horizon_gate_record)."""
    from dsa_core.export.manifest import read_manifest
    from dsa_core.runtime.operating_point import resolve_operating_point

    op = resolve_operating_point(read_manifest(model_dir), threshold, min_area_px)  # as the node resolves it
    published = {(p["topic"], p["stamp_ns"]): p["publish_ns"] for p in replay["published"]}
    outputs = {s.name: _read_outputs(recording, record[s.name]) for s in streams}
    scorer = BagScorer(**({"sizes": sizes} if sizes else {}))
    alerts = AlertScorer(gt_tables=find_gt_obstacles(bag, bag_topics(bag), [s.topic for s in streams]))
    latencies: list[float] = []
    frames_in = dropped = 0
    try:
        for frame in iter_frames(bag, streams):
            key = (frame.stream.topic, frame.stamp_ns)
            if key not in published:
                continue  # not replayed (cannot happen for the selected topics; kept exact for duplicates)
            frames_in += 1
            cam = frame.stream.name
            got = outputs[cam]
            score = got["anomaly_score"].get(frame.stamp_ns)
            sem = got["semantic"].get(frame.stamp_ns)
            obstacles = got["obstacles"].get(frame.stamp_ns)
            if score is None:
                dropped += 1
                reason = "node rejected the image" if frame.rgb is None else "dropped by the node (no output)"
                scorer.skip(cam, frame.index, frame.stamp_ns, reason)
                alerts.add(cam, frame.index, frame.stamp_ns, frame.gt_anomaly, None, topic=frame.stream.topic)
                continue
            latency = (score[0] - published[key]) * 1e-6
            latencies.append(latency)
            if frame.missing_gt:
                scorer.skip(cam, frame.index, frame.stamp_ns, f"no ground truth with this stamp on {', '.join(frame.missing_gt)}")
                continue
            confirmed = obstacles[1]["confirmed"] if obstacles else None  # no alert recorded: not processed
            if confirmed:
                flagged = score[1] >= op.anomaly_threshold
                confirmed = [dataclasses.replace(a, gt_class=flagged_class(a.box, flagged, frame.gt_semantic))
                             for a in confirmed]
            alerts.add(cam, frame.index, frame.stamp_ns, frame.gt_anomaly, confirmed, topic=frame.stream.topic)
            extra = {"obstacles": obstacles[1]["obstacles"] if obstacles else None,
                     "severity": obstacles[1]["severity"] if obstacles else None,
                     "alert_boxes": [list(a.box) for a in confirmed] if confirmed is not None else None}
            scorer.add(cam, frame.index, frame.stamp_ns, score[1], sem[1] if sem else None, frame.gt_anomaly,
                       frame.gt_semantic if sem else None, latency_ms=latency, rgb=frame.rgb, extra=extra)
        info = {"bag": str(bag), "mode": "live", "model_dir": str(model_dir), "backend": ",".join(backends),
                "anomaly_threshold": op.anomaly_threshold, "operating_point": op.describe(), "horizon_gate": horizon_gate,
                "baselines_note": "not in live mode (the node publishes its own score only; see the offline report)",
                "rate": rate, "camera_topics": [s.topic for s in streams],
                "gt_topics": {s.topic: {"semantic": s.gt_semantic, "anomaly": s.gt_anomaly} for s in streams},
                "frames_in": frames_in, "frames_processed": frames_in - dropped,
                "dropped": {"count": dropped, "published": frames_in}, "recording": str(recording),
                "received": replay["received"]}
        return write_report(out, scorer, info, latencies, "publish into the node -> anomaly_score arrival (wall clock)",
                            alerts=alerts.compute() if alerts.scored else None)
    finally:
        scorer.close()
