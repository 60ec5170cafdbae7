"""The verdicts /diagnostics reports, without ROS: one for the backend chain, one for the worker thread, one per
camera (rates, latency percentiles, rejected messages, failed frames, watchdog).

Why here: each rule (when is a camera stale, when does the watchdog fire, what counts as too slow an input) is a
decision worth testing on its own; the node only snapshots its state under its lock and turns a ``Health`` into a
DiagnosticStatus (``Level`` has diagnostic_msgs' values)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dsa_core.perception.horizon_check import pitch_warning

DELIVERY_WINDOW_S = 5.0  # arrivals counted for the delivered rate
MIN_DELIVERED_FRACTION = 0.8  # below this share of camera.C.rate_hz the camera status is WARN


class Level(enum.IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class Health:
    level: Level
    message: str
    values: dict[str, Any]  # key -> value (str() for the KeyValue)


def backend_health(chain: dict[str, Any], failed_batches: int, describe: Callable[[], dict] | None) -> Health:
    """``chain``: BackendChain.status(); ``describe``: the backend's own description, if it has one."""
    level = {"ok": Level.OK, "fallback": Level.WARN}.get(chain["state"], Level.ERROR)
    message = f"{chain['backend']} ({chain['state']})"
    if chain["retry.next_in_s"]:
        message += f"; retrying {chain['retry.targets'].split(',')[0]} in {float(chain['retry.next_in_s']):.0f} s"
    values = {**chain, "failed_batches": failed_batches}
    if callable(describe):
        try:
            values.update({f"info.{k}": v for k, v in describe().items()})
        except Exception as exc:  # noqa: BLE001 - diagnostics must not fail because a backend cannot describe itself
            values["info.error"] = f"{type(exc).__name__}: {exc}"
    return Health(level, message, values)


def worker_health(started: bool, alive: bool, loop_age_s: float, error: str | None) -> Health:
    """ERROR when the worker was started and is no longer alive (it must never end silently)."""
    values = {"alive": alive, "loop_age_s": f"{loop_age_s:.2f}", "error": error or ""}
    if started and not alive:
        return Health(Level.ERROR, f"inference worker is not running ({error})", values)
    return Health(Level.OK, "running", values)


def camera_health(counters: dict[str, Any], arrivals: list[float], latencies: dict[str, list[float]],
                  awaiting_since: float | None, *, now: float, period_s: float, expected_hz: float,
                  watchdog_timeout_s: float, worker_dead: bool, backend_failed: bool,
                  road_top: tuple[float | None, int] | None = None, horizon_margin_deg: float | None = None) -> Health:
    """One camera over the last diagnostics period: ``counters`` as CameraState.counters(), ``arrivals`` the
    monotonic arrival times, ``latencies`` stage -> recent ms, ``road_top`` the (median, frames) of the camera's
    RoadTopMonitor when it has a CameraInfo, checked against the horizon gate's ``horizon_margin_deg``. The first rule
    that applies sets the level."""
    rejected, errors = counters["rejected"], counters["errors"]
    recent = sum(1 for t in arrivals if now - t <= period_s)
    values: dict[str, Any] = {"input_rate_hz": f"{recent / period_s:.2f}", "received": counters["received"],
                              "processed": counters["processed"], "dropped": counters["dropped"],
                              "rejected": sum(rejected.values())}
    window = min(DELIVERY_WINDOW_S, now - arrivals[0]) if arrivals else 0.0
    delivered_hz = sum(1 for t in arrivals if now - t <= window) / window if window > 0.5 else None
    if delivered_hz is not None:
        values["delivered_rate_hz"] = f"{delivered_hz:.2f}"
    if expected_hz > 0:
        values["expected_rate_hz"] = f"{expected_hz:.2f}"
        if delivered_hz is not None:
            values["delivered_fraction"] = f"{delivered_hz / expected_hz:.3f}"
    values.update({f"rejected.{r}": n for r, n in sorted(rejected.items())})
    values["frame_errors"] = sum(errors.values())
    values.update({f"frame_errors.{r}": n for r, n in sorted(errors.items())})
    stalled = now - awaiting_since if awaiting_since is not None else 0.0
    values["waiting_for_output_s"] = f"{stalled:.2f}"
    for stage, series in latencies.items():
        a = np.asarray(series, float)
        values[f"latency_ms.{stage}.p50"] = f"{np.percentile(a, 50):.2f}"
        values[f"latency_ms.{stage}.p95"] = f"{np.percentile(a, 95):.2f}"
        values[f"latency_ms.{stage}.max"] = f"{a.max():.2f}"
    pitch_problem = None
    if road_top is not None:
        median, frames = road_top
        values["horizon.road_top_deg"] = "n/a" if median is None else f"{median:.2f}"
        values["horizon.road_top_frames"] = frames
        if horizon_margin_deg is not None:
            pitch_problem = pitch_warning(median, horizon_margin_deg)
    stale = bool(arrivals) and now - arrivals[-1] > 3 * period_s
    if worker_dead:
        return Health(Level.ERROR, "inference worker is not running", values)
    if stalled > watchdog_timeout_s:
        return Health(Level.ERROR, f"no output for {stalled:.1f} s while input arrives (watchdog)", values)
    if backend_failed:
        return Health(Level.ERROR, "no working backend", values)
    if stale or not counters["received"]:
        return Health(Level.WARN, "input stale" if stale else "no input", values)
    if expected_hz > 0 and delivered_hz is not None and delivered_hz < MIN_DELIVERED_FRACTION * expected_hz:
        return Health(Level.WARN, f"input at {delivered_hz:.1f} of {expected_hz:g} Hz "
                                  f"({delivered_hz / expected_hz:.0%} delivered)", values)
    if pitch_problem:
        return Health(Level.WARN, pitch_problem, values)
    if errors:
        return Health(Level.WARN, f"{sum(errors.values())} frames failed after inference", values)
    if rejected:
        return Health(Level.WARN, f"{sum(rejected.values())} rejected messages", values)
    return Health(Level.OK, "ok", values)


COUNT_KEYS = ("received", "processed", "dropped", "rejected")


def camera_counts(entries: list[dict[str, Any]], node: str, cameras: list[str], after_ns: int
                  ) -> dict[str, dict[str, int]] | None:
    """The counters each camera status reports (COUNT_KEYS) in the first /diagnostics entry published after
    ``after_ns`` that has every camera; None when there is none yet. ``entries``: {"t_ns", "status": {status name:
    {key: value}}} as a /diagnostics listener keeps them (dsa_perception/bench_driver.py)."""
    for entry in entries:
        cams = {c: entry["status"].get(f"{node}: camera {c}") for c in cameras}
        if entry["t_ns"] > after_ns and all(cams.values()):
            return {c: {k: int(v[k]) for k in COUNT_KEYS} for c, v in cams.items()}
    return None
