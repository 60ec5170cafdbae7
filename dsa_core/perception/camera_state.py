"""Per-camera bookkeeping of the live node, without ROS: the newest-frame slot, counters, latency windows and the
throttling of repeated log lines.

Why a slot of one: the node keeps only the newest decoded frame per camera (a frame overwritten before the worker
took it is counted as dropped), so a slow engine never builds a backlog. The object does no locking: the node
holds its lock around every call, because callbacks and the worker touch the same state."""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any

from dsa_core.perception.horizon_check import RoadTopMonitor

LATENCY_WINDOW = 300  # samples kept per latency series for the diagnostics percentiles


@dataclass
class PendingFrame:
    """A decoded frame waiting for the worker; ``header`` is the input message's (stamp, frame_id)."""
    rgb: Any
    header: Any
    received: float  # time.monotonic() at arrival
    decode_ms: float


@dataclass
class CameraState:
    name: str
    pending: PendingFrame | None = None
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)  # reason -> messages
    arrivals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))
    latencies: dict[str, collections.deque] = field(default_factory=dict)
    info: tuple[list[float], int, int] | None = None  # CameraInfo K, width, height (validated)
    errors: collections.Counter = field(default_factory=collections.Counter)  # "<stage>.<exception>" -> frames
    awaiting_since: float | None = None  # monotonic time of the first decoded frame not followed by any output
    last_output: float | None = None
    last_log: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (time, suppressed count)
    road_top: RoadTopMonitor = field(default_factory=RoadTopMonitor)  # the mount pitch check (horizon_check)

    def record(self, stage: str, ms: float) -> None:
        self.latencies.setdefault(stage, collections.deque(maxlen=LATENCY_WINDOW)).append(ms)

    def arrived(self, now: float) -> None:
        """A message came in (counted before decoding, so rejected ones count as received too)."""
        self.received += 1
        self.arrivals.append(now)

    def offer(self, frame: PendingFrame) -> None:
        """Put a decoded frame in the slot; one not yet taken is overwritten and counted as dropped."""
        if self.pending is not None:
            self.dropped += 1
        self.pending = frame
        if self.awaiting_since is None:
            self.awaiting_since = frame.received

    def take(self) -> PendingFrame | None:
        frame, self.pending = self.pending, None
        return frame

    def clear(self) -> None:
        """Deactivation: nothing waits, so the watchdog has nothing to wait for."""
        self.pending, self.awaiting_since = None, None

    def delivered(self, frame: PendingFrame, picked: float, done: float, stage_ms: dict[str, float],
                  end_to_end_ms: float) -> None:
        """A frame's outputs went out: count it, restart the watchdog from the next waiting frame, record latencies
        (``stage_ms``: the pipeline's stages plus publish)."""
        self.processed += 1
        self.last_output = done
        self.awaiting_since = None if self.pending is None else self.pending.received
        self.record("decode", frame.decode_ms)
        self.record("queue", (picked - frame.received) * 1e3)
        for stage, ms in stage_ms.items():
            self.record(stage, ms)
        self.record("node", (done - frame.received) * 1e3)
        self.record("end_to_end", end_to_end_ms)

    def count_error(self, key: str) -> bool:
        """Count a failed frame under ``<stage>.<exception>``; True the first time (log the traceback once)."""
        self.errors[key] += 1
        return self.errors[key] == 1

    def counters(self) -> dict[str, Any]:
        return {"received": self.received, "processed": self.processed, "dropped": self.dropped,
                "rejected": dict(self.rejected), "errors": dict(self.errors)}

    def snapshot(self) -> tuple[dict[str, Any], list[float], dict[str, list[float]], float | None]:
        """(counters, arrival times, stage -> recent latencies, awaiting_since): copies for camera_health, taken
        under the caller's lock while the worker and the callbacks keep appending."""
        return (self.counters(), list(self.arrivals), {stage: list(s) for stage, s in self.latencies.items()},
                self.awaiting_since)

    def log_due(self, key: str, now: float, period_s: float) -> str | None:
        """Throttle repeated log lines per key: the suffix to log now ("" or the suppressed count), None to stay
        quiet (counted, and reported with the next line that is logged)."""
        last, suppressed = self.last_log.get(key, (-math.inf, 0))
        if now - last < period_s:
            self.last_log[key] = (last, suppressed + 1)
            return None
        self.last_log[key] = (now, 0)
        return f" ({suppressed} more like it since the last report)" if suppressed else ""


def take_batch(cameras: dict[str, CameraState]) -> dict[str, PendingFrame]:
    """The newest frame of every camera that has one, emptying their slots (one batched engine call)."""
    return {name: frame for name, st in cameras.items() if (frame := st.take()) is not None}
