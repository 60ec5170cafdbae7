"""How late a 10 Hz topic reaches a trivial subscriber spun by rclpy's Single- or MultiThreadedExecutor.

Why: rclpy 9.1's MultiThreadedExecutor delivered such a topic in bursts seconds late on an idle machine, which made
a node test flaky; our tools and tests spin single-threaded since (dsa_perception/background_spin.py). Run it on a
quiet machine: under load the delay did not appear.

    .venv/bin/python -P scripts/executor_delivery_delay.py single multi single multi
"""
from __future__ import annotations

import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException, SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)


def max_delay_s(kind: str, frames: int = 40, period_s: float = 0.1, domain_id: int = 78) -> tuple[float, int]:
    """(largest arrival delay after the scheduled send, messages received) for one executor kind."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    probe, sub = rclpy.create_node("delay_probe", context=ctx), rclpy.create_node("delay_sub", context=ctx)
    arrivals: list[float] = []
    sub.create_subscription(Image, "/delay_test", lambda m: arrivals.append(time.monotonic()), QOS)
    pub = probe.create_publisher(Image, "/delay_test", QOS)
    executor = MultiThreadedExecutor(num_threads=3, context=ctx) if kind == "multi" else SingleThreadedExecutor(context=ctx)
    executor.add_node(sub)
    def spin() -> None:
        try:
            executor.spin()
        except (ExternalShutdownException, ShutdownException):
            pass  # rclpy.shutdown below ends it

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    while not pub.get_subscription_count():
        time.sleep(0.01)
    t0 = time.monotonic()
    for i in range(frames):
        msg = Image(height=48, width=64, step=192, encoding="rgb8")
        msg.data = bytes(48 * 64 * 3)
        pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) * period_s - time.monotonic()))
    time.sleep(8.0)  # late messages still arrive
    delays = [t - t0 - i * period_s for i, t in enumerate(arrivals)]
    rclpy.shutdown(context=ctx)
    thread.join(timeout=5.0)
    return (max(delays) if delays else float("nan")), len(arrivals)


if __name__ == "__main__":
    for kind in sys.argv[1:] or ["single", "multi"]:
        worst, n = max_delay_s(kind)
        print(f"{kind:6s}: {n} of 40 received, largest delay {worst:.2f} s", flush=True)
