"""The node's per-camera bookkeeping without ROS (dsa_core/perception/camera_state.py): the newest-frame slot and
its drop count, batching, the watchdog start, latency records and the throttling of repeated log lines."""
from __future__ import annotations

import numpy as np

from dsa_core.perception.camera_state import LATENCY_WINDOW, CameraState, PendingFrame, take_batch


def _frame(received: float) -> PendingFrame:
    return PendingFrame(np.zeros((2, 2, 3), np.uint8), header=f"h{received}", received=received, decode_ms=1.5)


def test_the_slot_keeps_the_newest_frame_and_counts_the_overwritten_one_as_dropped() -> None:
    st = CameraState("left")
    for t in (1.0, 2.0, 3.0):
        st.arrived(t)
        st.offer(_frame(t))
    assert st.take().received == 3.0
    assert (st.received, st.dropped, st.pending) == (3, 2, None)
    assert st.awaiting_since == 1.0  # the watchdog runs from the first frame without output


def test_take_batch_empties_every_slot_that_has_a_frame() -> None:
    cams = {"a": CameraState("a"), "b": CameraState("b"), "c": CameraState("c")}
    cams["a"].offer(_frame(1.0))
    cams["c"].offer(_frame(2.0))
    batch = take_batch(cams)
    assert sorted(batch) == ["a", "c"] and batch["c"].received == 2.0
    assert take_batch(cams) == {}


def test_delivery_restarts_the_watchdog_from_the_frame_still_waiting_and_records_latencies() -> None:
    st = CameraState("left")
    st.offer(_frame(1.0))
    first = st.take()
    st.offer(_frame(1.5))  # arrived while the first was in the engine
    st.delivered(first, picked=1.25, done=2.0, stage_ms={"inference": 40.0, "publish": 2.0}, end_to_end_ms=1100.0)
    assert st.processed == 1 and st.last_output == 2.0 and st.awaiting_since == 1.5
    assert list(st.latencies["queue"]) == [250.0] and list(st.latencies["node"]) == [1000.0]
    assert list(st.latencies["decode"]) == [1.5] and list(st.latencies["inference"]) == [40.0]
    st.delivered(st.take(), picked=2.0, done=2.5, stage_ms={}, end_to_end_ms=0.0)
    assert st.awaiting_since is None  # nothing waits: no watchdog


def test_latency_series_keep_a_bounded_window() -> None:
    st = CameraState("left")
    for i in range(LATENCY_WINDOW + 7):
        st.record("inference", float(i))
    assert len(st.latencies["inference"]) == LATENCY_WINDOW and st.latencies["inference"][0] == 7.0


def test_errors_are_counted_per_key_and_the_first_is_flagged() -> None:
    st = CameraState("left")
    assert st.count_error("publish.RuntimeError") is True
    assert st.count_error("publish.RuntimeError") is False
    st.rejected["bad_encoding"] += 1
    assert st.counters() == {"received": 0, "processed": 0, "dropped": 0, "rejected": {"bad_encoding": 1},
                             "errors": {"publish.RuntimeError": 2}}


def test_repeated_log_lines_are_throttled_per_key_and_report_what_was_suppressed() -> None:
    st = CameraState("left")
    assert st.log_due("bad_encoding", now=10.0, period_s=5.0) == ""
    assert st.log_due("bad_encoding", now=11.0, period_s=5.0) is None
    assert st.log_due("bad_encoding", now=12.0, period_s=5.0) is None
    assert st.log_due("other", now=12.0, period_s=5.0) == ""  # keys are independent
    assert st.log_due("bad_encoding", now=15.0, period_s=5.0) == " (2 more like it since the last report)"
    assert st.log_due("bad_encoding", now=20.0, period_s=5.0) == ""


def test_clear_leaves_nothing_waiting() -> None:
    st = CameraState("left")
    st.offer(_frame(1.0))
    st.clear()
    assert st.pending is None and st.awaiting_since is None and st.take() is None


def test_snapshot_is_a_copy_the_worker_can_keep_appending_to() -> None:
    st = CameraState("a")
    st.arrived(1.0)
    st.record("inference", 5.0)
    counters, arrivals, latencies, awaiting = st.snapshot()
    st.arrived(2.0)
    st.record("inference", 6.0)
    st.rejected["too_large"] += 1
    assert arrivals == [1.0] and latencies == {"inference": [5.0]} and awaiting is None
    assert counters == {"received": 1, "processed": 0, "dropped": 0, "rejected": {}, "errors": {}}
