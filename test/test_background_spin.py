"""BackgroundSpin: the spin thread stops whenever the stop lands (the race that hung ``executor.spin`` + ``shutdown``
is rare and timing-dependent, so it is exercised by many stops at varying points, not reproduced deterministically),
a callback in progress finishes before the stop returns, and a raising callback is reported."""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.node import Node

from dsa_perception.background_spin import SPIN_SLICE_S, BackgroundSpin, make_executor

pytestmark = pytest.mark.ros

DOMAIN_ID = 78


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    yield ctx
    rclpy.shutdown(context=ctx)


def test_many_start_stop_cycles_all_stop_and_run_callbacks(context) -> None:
    node = Node("spin_cycles", context=context)
    ticks = [0]
    node.create_timer(0.001, lambda: ticks.__setitem__(0, ticks[0] + 1))
    try:
        for cycle in range(40):
            executor = make_executor(context)
            executor.add_node(node)
            spin = BackgroundSpin(executor).start()
            time.sleep(0.002 * (cycle % 5))  # stop at varying points of the spin loop, also right after the start
            spin.stop(timeout_s=10.0)  # raises if the thread is still alive after 10 s
            assert not spin.alive and spin.error is None, cycle
        assert ticks[0] > 0  # the timer did run while spinning
    finally:
        node.destroy_node()


def test_stop_waits_for_the_callback_in_progress(context) -> None:
    node = Node("spin_slow_callback", context=context)
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    timer = node.create_timer(0.01, slow)
    executor = make_executor(context)
    executor.add_node(node)
    try:
        with BackgroundSpin(executor) as spin:
            assert started.wait(10.0)
            timer.cancel()
        assert finished.is_set() and not spin.alive
    finally:
        node.destroy_node()


def test_a_shut_down_context_ends_the_thread() -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    executor = make_executor(ctx)
    spin = BackgroundSpin(executor).start()
    rclpy.shutdown(context=ctx)
    deadline = time.monotonic() + 10 * SPIN_SLICE_S + 5.0
    while spin.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not spin.alive
    spin.stop(timeout_s=1.0)  # stopping an ended spin is harmless


def test_a_raising_callback_is_not_silent(context, caplog) -> None:
    node = Node("spin_raising_callback", context=context)

    def boom() -> None:
        raise ValueError("bad frame")

    node.create_timer(0.01, boom)
    executor = make_executor(context)
    executor.add_node(node)
    try:
        spin = BackgroundSpin(executor).start()
        deadline = time.monotonic() + 10.0
        while spin.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not spin.alive and isinstance(spin.error, ValueError)
        assert "bad frame" in caplog.text
        with pytest.raises(RuntimeError, match="ValueError: bad frame"):
            spin.stop()
    finally:
        node.destroy_node()
