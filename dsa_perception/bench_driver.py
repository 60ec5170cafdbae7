"""Load generator of `dsa bench node` (its own process): N cameras at a fixed rate into the running node.

Publishes rgb8 frames stamped with the current time, records when each camera's ObstacleAlert for that stamp
arrives (end-to-end latency = arrival - stamp, one clock, one machine) and keeps the node's last /diagnostics.
The node's own counters (received, processed, dropped, rejected) are read from /diagnostics just before the first
and after the last measured frame, so ``node_counts`` holds what happened to exactly the frames sent here:
received / sent is the fraction DDS delivered.
Writes one JSON file; dsa_core/bench/node_bench.py turns it into the report. Lives here, not in dsa_core, because
dsa_core never imports rclpy.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dsa_core.bags.writer import optical_frame_id
from dsa_core.perception.health import camera_counts
from dsa_core.perception.image_codec import fill_image_msg
from dsa_core.perception.messages import IMAGE_TOPICS
from dsa_core.perception.testing import moving_obstacle_frames
from dsa_perception.background_spin import BackgroundSpin, make_executor

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cameras", default="front,rear")
    p.add_argument("--topic", default="/bench/{camera}/image_raw")
    p.add_argument("--node", default="dsa_perception", help="node name (output topics /<node>/<camera>/...)")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup-timeout", type=float, default=180.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--alerts-only", action="store_true",
                   help="subscribe only to the alerts (the node then skips the image outputs nobody listens to)")
    args = p.parse_args(argv)
    cameras = [c for c in args.cameras.split(",") if c]

    rclpy.init()
    node = Node("dsa_bench_driver")
    pubs = {c: node.create_publisher(Image, args.topic.format(camera=c), SENSOR) for c in cameras}
    answers: dict[str, dict[int, float]] = {c: {} for c in cameras}
    diagnostics: list[dict] = []
    lock = threading.Lock()

    def on_alert(msg, cam: str) -> None:
        t = time.time_ns()
        with lock:
            answers[cam][msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = t

    def on_diag(msg: DiagnosticArray) -> None:
        entry = {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}
        with lock:
            diagnostics.append({"t_ns": time.time_ns(), "status": entry})

    from dsa_perception.msg import ObstacleAlert

    for c in cameras:
        node.create_subscription(ObstacleAlert, f"/{args.node}/{c}/obstacles", lambda m, c=c: on_alert(m, c), RELIABLE)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RELIABLE)
    image_counts = {f"{c}/{t}": 0 for c in cameras for t in IMAGE_TOPICS}
    if not args.alerts_only:  # listen to every image output, so the node does (and is timed doing) all its work

        def on_image(raw: bytes, key: str) -> None:
            with lock:
                image_counts[key] += 1

        for key in image_counts:  # raw=True: counted, not deserialized (keeps the load generator light)
            node.create_subscription(Image, f"/{args.node}/{key}", lambda m, k=key: on_image(m, k), RELIABLE,
                                     raw=True)
    executor = make_executor()
    executor.add_node(node)
    spin = BackgroundSpin(executor).start()

    frames = moving_obstacle_frames(args.height, args.width, 30, seed=0)

    # warm-up frames are small: they must reach the node even where the transport loses full-size frames
    warm = moving_obstacle_frames(max(16, args.height // 8), max(16, args.width // 8), 1, seed=1)

    def publish(cam: str, i: int, pool: list[np.ndarray] = frames) -> int:
        msg = fill_image_msg(Image(), pool[i % len(pool)], "rgb8")
        stamp = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        msg.header.frame_id = optical_frame_id(cam)  # the frame names of the synthetic bags and config/dsa.rviz
        pubs[cam].publish(msg)
        return stamp

    # warm-up: wait for the node, then until every camera got one answer (first inference is slow)
    deadline = time.monotonic() + args.warmup_timeout
    while not all(p.get_subscription_count() for p in pubs.values()):
        if time.monotonic() > deadline:
            raise SystemExit("bench driver: the node never subscribed")
        time.sleep(0.1)
    while not all(answers[c] for c in cameras):
        if time.monotonic() > deadline:
            raise SystemExit("bench driver: no answer from the node during warm-up")
        for c in cameras:
            publish(c, 0, warm)
        time.sleep(0.5)
    time.sleep(1.0)
    with lock:
        for c in cameras:
            answers[c].clear()
        diagnostics.clear()
        for key in image_counts:
            image_counts[key] = 0
    args.out.with_suffix(".started").touch()  # tells the orchestrator that the measured period begins

    def node_counts(after_ns: int) -> dict[str, dict[str, int]]:
        """The node's counters from the first /diagnostics published after ``after_ns`` (waits up to 10 s)."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with lock:
                counts = camera_counts(diagnostics, args.node, cameras, after_ns)
            if counts is not None:
                return counts
            time.sleep(0.05)
        raise SystemExit("bench driver: no /diagnostics from the node")

    counts_start = node_counts(time.time_ns())  # nothing is being sent now: these are stable
    sent: dict[str, list[int]] = {c: [] for c in cameras}
    period = 1.0 / args.rate
    t0 = time.monotonic()
    n = int(args.duration * args.rate)
    for i in range(n):
        target = t0 + i * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for c in cameras:
            sent[c].append(publish(c, i))
    publish_wall = time.monotonic() - t0
    time.sleep(3.0)  # let in-flight frames finish
    counts_end = node_counts(time.time_ns())
    spin.stop()  # joined: a spin thread still in rclpy at exit aborts the process
    with lock:
        result = {"cameras": cameras, "rate_hz": args.rate, "duration_s": args.duration, "publish_wall_s": publish_wall,
                  "image": [args.height, args.width],
                  "sent": sent, "answered": {c: sorted(answers[c].items()) for c in cameras},
                  "diagnostics": diagnostics, "image_outputs_received": dict(image_counts),
                  "node_counts": {c: {k: counts_end[c][k] - counts_start[c][k] for k in counts_end[c]}
                                  for c in cameras}}
    args.out.write_text(json.dumps(result))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
