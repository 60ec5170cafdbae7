"""Replay a bag into a running node through rclpy and record the node's outputs to a bag (no ros2 bag here).

    python -m dsa_perception.bag_replay --bag IN --topic /cam/image_raw [--topic ...] --record /dsa/front/anomaly_score
        [--record ...] --out-bag REC --log replay.json [--rate 1.0] [--wait-for-subscriber /cam/image_raw]

Why a separate process: dsa_core (which scores the recording) must not import rclpy, and ``ros2 bag play/record``
are not installable here. Messages are published as the bag's CDR bytes (``publisher.publish(raw)``) at the
recorded rate times ``--rate``; outputs are received raw and written with rosbags, the bag timestamp being the
arrival wall time, and the replay log holds each input's publish wall time, so latency = arrival - publish.
Discovery: publishing waits for every replayed topic to have a subscriber (the node is up), then ~2 s more,
because early messages are otherwise lost.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader

from dsa_core.bags.messages import make_typestore, stamp_to_ns
from dsa_core.bags.writer import BagWriter
from dsa_perception.background_spin import BackgroundSpin, make_executor

log = logging.getLogger("dsa_perception.bag_replay")


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the generated rclpy class (raises if its package is not built)."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _topic_types(node, topics: list[str], timeout_s: float) -> dict[str, str]:
    """Wait until each topic to record has a publisher and return its type (from the graph)."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        for name, types in node.get_topic_names_and_types():
            if name in topics and types:
                found[name] = types[0]
        if len(found) == len(topics):
            return found
        time.sleep(0.1)
    missing = sorted(set(topics) - set(found))
    raise TimeoutError(f"no publisher appeared within {timeout_s:.0f} s for {missing}; is the node running? "
                       f"{graph_summary(node)}")


def graph_summary(node) -> str:
    """What this process sees of the ROS graph: other nodes and their topics. Why: a replay that times out must say
    whether discovery failed (no other node seen) or the node came up without the topics (a node problem)."""
    others = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()
                    if name != node.get_name())
    topics = sorted(name for name, _ in node.get_topic_names_and_types())
    domain = node.context.get_domain_id()
    if not others:
        return f"No other node was discovered on ROS domain {domain} (a DDS discovery failure, not the node's topics)."
    return f"Discovered on ROS domain {domain}: nodes {others}; topics {topics}."


def replay(bag: Path, topics: list[str], record: list[str], out_bag: Path, log_path: Path, rate: float = 1.0,
           startup_timeout_s: float = 120.0, settle_s: float = 2.0, drain_s: float = 5.0) -> dict:
    ts = make_typestore()
    node = rclpy.create_node("dsa_bag_replay")
    executor = make_executor()
    executor.add_node(node)
    spin = BackgroundSpin(executor).start()
    lock = threading.Lock()
    received: dict[str, int] = {t: 0 for t in record}
    last_arrival = [time.monotonic()]
    try:
        out_types = _topic_types(node, record, startup_timeout_s)
        with AnyReader([bag], default_typestore=ts) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            missing = sorted(set(topics) - {c.topic for c in conns})
            if missing:
                raise ValueError(f"topics {missing} not in {bag}")
            pubs = {c.topic: node.create_publisher(message_class(c.msgtype), c.topic,
                                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                                              history=HistoryPolicy.KEEP_LAST)) for c in conns}
            with BagWriter(out_bag, storage="mcap", version=8, typestore=ts) as writer:
                def on_output(raw: bytes, topic: str) -> None:
                    now = time.time_ns()
                    with lock:
                        writer.write_raw(topic, out_types[topic], raw, now)
                        received[topic] += 1
                        last_arrival[0] = time.monotonic()

                qos_out = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
                for topic in record:
                    node.create_subscription(message_class(out_types[topic]), topic,
                                             lambda raw, t=topic: on_output(raw, t), qos_out, raw=True)
                deadline = time.monotonic() + startup_timeout_s
                while any(node.count_subscribers(t) == 0 for t in topics):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no subscriber on {topics} within {startup_timeout_s:.0f} s")
                    time.sleep(0.1)
                time.sleep(settle_s)  # discovery of our publishers by the node and of its outputs by us
                published = []
                t0_wall, t0_bag = time.monotonic(), None
                for conn, log_time, raw in reader.messages(connections=conns):
                    t0_bag = log_time if t0_bag is None else t0_bag
                    delay = t0_wall + (log_time - t0_bag) * 1e-9 / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    stamp = stamp_to_ns(reader.deserialize(raw, conn.msgtype).header.stamp)
                    sent = time.time_ns()
                    pubs[conn.topic].publish(bytes(raw))
                    published.append({"topic": conn.topic, "stamp_ns": stamp, "publish_ns": sent})
                # Drain: wait until outputs stop arriving (the node finishes its last frame), at most drain_s idle.
                while time.monotonic() - last_arrival[0] < drain_s:
                    time.sleep(0.1)
                with lock:
                    counts = dict(received)
        result = {"bag": str(bag), "rate": rate, "published": published, "received": counts,
                  "output_types": out_types, "recording": str(out_bag)}
        log_path.write_text(json.dumps(result))
        return result
    finally:
        # Stop and JOIN the spin thread before the node and context go away: a spin thread still inside rclpy at
        # interpreter exit aborts the process ("terminate called without an active exception", exit -6).
        spin.stop()
        node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dsa_perception.bag_replay", description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--topic", action="append", required=True, help="bag topic to replay (repeatable)")
    parser.add_argument("--record", action="append", required=True, help="node output topic to record (repeatable)")
    parser.add_argument("--out-bag", type=Path, required=True, help="recording (mcap, metadata v8)")
    parser.add_argument("--log", type=Path, required=True, help="replay log JSON (publish times per stamp)")
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--drain", type=float, default=5.0, help="seconds without outputs that end the recording")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.rate <= 0:
        parser.error(f"--rate must be > 0, got {args.rate}")
    rclpy.init()
    try:
        result = replay(args.bag, args.topic, args.record, args.out_bag, args.log, args.rate, args.startup_timeout,
                        drain_s=args.drain)
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    log.info("published %d messages, received %s", len(result["published"]), result["received"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
