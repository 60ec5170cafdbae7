"""The /diagnostics verdicts without ROS (dsa_core/perception/health.py): which rule sets a camera's level, the
rates and percentiles it reports, and the backend and worker statuses."""
from __future__ import annotations

import numpy as np

from dsa_core.perception.health import (DELIVERY_WINDOW_S, MIN_DELIVERED_FRACTION, Level, backend_health,
                                        camera_health, worker_health)

QUIET = {"received": 0, "processed": 0, "dropped": 0, "rejected": {}, "errors": {}}


def _camera(counters=None, arrivals=(), latencies=None, awaiting=None, **kw):
    args = dict(now=100.0, period_s=1.0, expected_hz=0.0, watchdog_timeout_s=2.0, worker_dead=False,
                backend_failed=False)
    args.update(kw)
    return camera_health({**QUIET, **(counters or {})}, list(arrivals), latencies or {}, awaiting, **args)


def _steady(hz: float, seconds: float = DELIVERY_WINDOW_S, now: float = 100.0) -> list[float]:
    n = int(hz * seconds)
    return [now - seconds + i / hz for i in range(n)]


def test_a_camera_without_input_warns_and_one_with_steady_input_is_ok() -> None:
    assert _camera().level == Level.WARN and _camera().message == "no input"
    arrivals = _steady(10.0)
    ok = _camera({"received": len(arrivals), "processed": len(arrivals)}, arrivals, expected_hz=10.0)
    assert (ok.level, ok.message) == (Level.OK, "ok")
    assert ok.values["input_rate_hz"] == "10.00" and ok.values["delivered_fraction"] == "1.000"


def test_input_below_the_delivered_fraction_of_rate_hz_warns() -> None:
    slow_hz = 10.0 * MIN_DELIVERED_FRACTION / 2
    arrivals = _steady(slow_hz)
    h = _camera({"received": len(arrivals)}, arrivals, expected_hz=10.0)
    assert h.level == Level.WARN and "delivered" in h.message
    assert float(h.values["delivered_rate_hz"]) == slow_hz


def test_stale_input_warns() -> None:
    h = _camera({"received": 5}, [90.0, 91.0], now=100.0, period_s=1.0)
    assert (h.level, h.message) == (Level.WARN, "input stale")


def test_the_watchdog_the_dead_worker_and_the_failed_backend_are_errors_in_that_order() -> None:
    arrivals = _steady(10.0)
    base = {"received": len(arrivals)}
    assert _camera(base, arrivals, awaiting=97.0).message.endswith("(watchdog)")
    assert _camera(base, arrivals, awaiting=99.0).level == Level.OK  # within the timeout
    assert _camera(base, arrivals, awaiting=97.0, worker_dead=True).message == "inference worker is not running"
    failed = _camera(base, arrivals, backend_failed=True)
    assert (failed.level, failed.message) == (Level.ERROR, "no working backend")


def test_failed_frames_and_rejected_messages_warn_and_are_listed_by_reason() -> None:
    arrivals = _steady(10.0)
    h = _camera({"received": len(arrivals), "errors": {"publish.RuntimeError": 3}, "rejected": {"bad_size": 2}},
                arrivals)
    assert (h.level, h.message) == (Level.WARN, "3 frames failed after inference")
    assert h.values["frame_errors.publish.RuntimeError"] == 3 and h.values["rejected.bad_size"] == 2
    r = _camera({"received": len(arrivals), "rejected": {"bad_size": 2}}, arrivals)
    assert r.message == "2 rejected messages"


def test_latency_percentiles_are_reported_per_stage() -> None:
    series = list(np.arange(1.0, 101.0))
    h = _camera(latencies={"inference": series})
    assert h.values["latency_ms.inference.p50"] == f"{np.percentile(series, 50):.2f}"
    assert h.values["latency_ms.inference.p95"] == f"{np.percentile(series, 95):.2f}"
    assert h.values["latency_ms.inference.max"] == "100.00"


def _chain(state: str, retry_in: float = 0.0) -> dict:
    return {"backend": "onnxruntime", "state": state, "retry.next_in_s": retry_in,
            "retry.targets": "tensorrt,torch" if retry_in else ""}


def test_backend_levels_follow_the_chain_state_and_name_the_retry() -> None:
    assert backend_health(_chain("ok"), 0, None).level == Level.OK
    fallback = backend_health(_chain("fallback", 12.0), 2, lambda: {"providers": "CPU"})
    assert fallback.level == Level.WARN and fallback.message == "onnxruntime (fallback); retrying tensorrt in 12 s"
    assert fallback.values["failed_batches"] == 2 and fallback.values["info.providers"] == "CPU"
    assert backend_health(_chain("failed"), 0, None).level == Level.ERROR


def test_a_backend_that_cannot_describe_itself_does_not_break_diagnostics() -> None:
    def broken() -> dict:
        raise RuntimeError("no session")

    h = backend_health(_chain("ok"), 0, broken)
    assert h.level == Level.OK and h.values["info.error"] == "RuntimeError: no session"


def test_the_worker_is_an_error_only_once_started_and_dead() -> None:
    assert worker_health(False, False, 0.0, None).level == Level.OK
    assert worker_health(True, True, 0.25, None).values == {"alive": True, "loop_age_s": "0.25", "error": ""}
    dead = worker_health(True, False, 3.0, "ValueError: x")
    assert dead.level == Level.ERROR and dead.message == "inference worker is not running (ValueError: x)"


def test_camera_counts_are_read_back_from_the_first_complete_status_after_a_time() -> None:
    from dsa_core.perception.health import camera_counts

    def status(received: int) -> dict:
        return {"received": str(received), "processed": "2", "dropped": "1", "rejected": "0", "input_rate_hz": "9"}

    entries = [{"t_ns": 5, "status": {"n: camera a": status(1), "n: camera b": status(1)}},
               {"t_ns": 10, "status": {"n: camera a": status(4)}},  # camera b missing: not complete
               {"t_ns": 20, "status": {"n: camera a": status(7), "n: camera b": status(8), "n: worker": {}}}]
    assert camera_counts(entries, "n", ["a", "b"], after_ns=5) == {
        "a": {"received": 7, "processed": 2, "dropped": 1, "rejected": 0},
        "b": {"received": 8, "processed": 2, "dropped": 1, "rejected": 0}}
    assert camera_counts(entries, "n", ["a", "b"], after_ns=0)["a"]["received"] == 1
    assert camera_counts(entries, "n", ["a", "b"], after_ns=20) is None


def test_road_seen_above_the_configured_horizon_warns_of_the_mount_pitch() -> None:
    arrivals = _steady(10.0)
    steady = {"received": len(arrivals), "processed": len(arrivals)}
    level = _camera(steady, arrivals, expected_hz=10.0, road_top=(-1.7, 100), horizon_margin_deg=3.0)
    assert (level.level, level.message) == (Level.OK, "ok")
    assert level.values["horizon.road_top_deg"] == "-1.70" and level.values["horizon.road_top_frames"] == 100
    pitched = _camera(steady, arrivals, expected_hz=10.0, road_top=(6.25, 100), horizon_margin_deg=3.0)
    assert pitched.level == Level.WARN
    assert pitched.message.startswith("road seen 6.2° above the configured horizon (median): the camera points at "
                                      "least 6.2° further down than mount_pitch_deg says")
    at_margin = _camera(steady, arrivals, expected_hz=10.0, road_top=(3.0, 100), horizon_margin_deg=3.0)
    assert at_margin.level == Level.OK  # at the margin the gate still keeps what stands on the far road
    early = _camera(steady, arrivals, expected_hz=10.0, road_top=(None, 5), horizon_margin_deg=3.0)
    assert early.level == Level.OK and early.values["horizon.road_top_deg"] == "n/a"
    assert "horizon.road_top_deg" not in _camera(steady, arrivals, expected_hz=10.0).values  # no CameraInfo
    dead = _camera(steady, arrivals, expected_hz=10.0, worker_dead=True, road_top=(9.0, 100), horizon_margin_deg=3.0)
    assert dead.level == Level.ERROR  # errors come first
