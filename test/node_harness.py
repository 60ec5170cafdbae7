"""Shared by the node tests: an rclpy context (own domain id), the node + a probe node on one executor
(background_spin.make_executor: single-threaded, and why),
message encoders for every raw encoding, and waiting helpers. The session's one harness is the ``ros_harness``
fixture of test/conftest.py (``reset`` between tests). The files `colcon test` runs (CMakeLists.txt) make their
own: it runs them with --noconftest, one process per file; so do tests whose node runs in another process (its
domain id goes into that process's environment)."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from dsa_perception.background_spin import BackgroundSpin, make_executor

# discovery stays on this machine (other sessions' tests may share the network); set before any context exists
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_OUTPUTS = {"semantic": "mono8", "semantic_color": "rgb8", "anomaly_score": "32FC1", "anomaly_mask": "mono8",
                 "overlay": "rgb8"}


class RosHarness:
    """rclpy context with ``domain_id``; ``start(node)`` spins the node and the probe node in a background thread."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.probe = Node("dsa_test_probe", context=self.context)
        self.executor = make_executor(self.context)
        self.executor.add_node(self.probe)
        self.received: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._spin: BackgroundSpin | None = None
        self._started: list[Node] = []

    def start(self, node: Node) -> None:
        self.executor.add_node(node)
        self._started.append(node)
        if self._spin is None:
            self.spin()

    def spin(self) -> None:
        """Spin the executor's nodes (the probe included) in the background thread."""
        self._spin = BackgroundSpin(self.executor, "harness-spin").start()

    def listen(self, topic: str, msg_type: Any) -> None:
        self.received.setdefault(topic, [])

        def keep(msg: Any, t: str = topic) -> None:
            with self._lock:
                self.received[t].append(msg)

        self.probe.create_subscription(msg_type, topic, keep, RELIABLE)

    def messages(self, topic: str) -> list[Any]:
        with self._lock:
            return list(self.received.get(topic, []))

    def reset(self) -> None:
        """Between tests on a shared harness: every node started here is destroyed and the probe is replaced (its
        subscriptions, publishers and clients go with it), so nothing a test created or received is seen by the next
        one. Spinning stops first: destroying a node that another thread is spinning can crash the process (rclpy
        issues 255 and 663), and this harness lives for the whole test session. The context stays; the executor and
        its spin thread are replaced."""
        was_spinning = self._spin is not None
        self._stop_spinning()
        for node in self._started + [self.probe]:
            node.destroy_node()
        self._started.clear()
        with self._lock:
            self.received.clear()
        self.executor = make_executor(self.context)
        self.probe = Node("dsa_test_probe", context=self.context)
        self.executor.add_node(self.probe)
        if was_spinning:
            self.spin()

    def _stop_spinning(self) -> None:
        spin, self._spin = self._spin, None  # a failed stop must not leave the next test a dead harness
        if spin is None:
            self.executor.shutdown(timeout_sec=5.0)
        else:
            spin.stop()

    def close(self, *nodes: Node) -> None:
        self._stop_spinning()
        for node in nodes:
            node.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def with_stamp(topic_msgs: list[Any], sec: int, nanosec: int = 0) -> Any:
    for m in topic_msgs:
        if m.header.stamp.sec == sec and m.header.stamp.nanosec == nanosec:
            return m
    return None


def _bytes16(values8: np.ndarray, big_endian: bool) -> np.ndarray:
    v = values8.astype(np.uint16) * 257
    return v.astype(">u2" if big_endian else "<u2").view(np.uint8).reshape(*values8.shape[:-1], -1)


def _yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.int32)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    u2 = ((u[:, 0::2] + u[:, 1::2]) // 2).astype(np.uint8)
    v2 = ((v[:, 0::2] + v[:, 1::2]) // 2).astype(np.uint8)
    y0, y1 = y[:, 0::2].astype(np.uint8), y[:, 1::2].astype(np.uint8)
    quad = [u2, y0, v2, y1] if order == "uyvy" else [y0, u2, y1, v2]
    return np.stack(quad, -1).reshape(rgb.shape[0], -1)


def _bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    out = np.empty(rgb.shape[:2], np.uint8)
    idx = {"r": 0, "g": 1, "b": 2}
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, idx[pattern[k]]]
    return out[..., None]


def encode_raw(rgb: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image in ``encoding`` (every encoding image_codec accepts), optionally with ``pad`` bytes per row."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    base = encoding.rstrip("0123456789") if encoding.startswith(("rgb", "bgr", "mono")) else encoding
    planes = {"rgb": rgb, "bgr": rgb[..., ::-1], "rgba": np.concatenate([rgb, alpha], -1),
              "bgra": np.concatenate([rgb[..., ::-1], alpha], -1), "mono": gray, "8UC1": gray,
              "8UC3": rgb[..., ::-1], "8UC4": np.concatenate([rgb[..., ::-1], alpha], -1), "16UC1": gray}
    if encoding.endswith("16") or encoding == "16UC1":
        key = "16UC1" if encoding == "16UC1" else encoding[:-2] if not encoding.startswith("bayer") else None
        src = _bayer(rgb, encoding[6:10]) if encoding.startswith("bayer") else planes[key]
        rows = _bytes16(src, big_endian).reshape(rgb.shape[0], -1)
    elif encoding in ("yuv422", "uyvy"):
        rows = _yuv422(rgb, "uyvy")
    elif encoding in ("yuv422_yuy2", "yuyv"):
        rows = _yuv422(rgb, "yuyv")
    elif encoding.startswith("bayer"):
        rows = _bayer(rgb, encoding[6:10]).reshape(rgb.shape[0], -1)
    else:
        key = encoding if encoding in planes else base
        rows = planes[key].reshape(rgb.shape[0], -1)
    rows = np.ascontiguousarray(rows)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 7, np.uint8)], 1)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=int(big_endian),
                step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def encode_compressed(rgb: np.ndarray, fmt: str) -> CompressedImage:
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 98] if fmt == "jpeg" else [])
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = buf.tobytes()
    return msg


def stop_node_process(proc: Any, executor: Any, probe: Node, ctx: Any, timeout: float = 20.0) -> str:
    """SIGINT the node process (kill it if it does not exit), shut the probe side down; returns the node's output."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    executor.shutdown()
    probe.destroy_node()
    rclpy.shutdown(context=ctx)
    return out
