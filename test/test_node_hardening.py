"""Issue 13: the node's worker cannot die silently, inputs are checked against physics, fallback is not forever.

Real rclpy and DDS in-process (the session's harness, conftest.py ``ros_harness``); each failure point is injected
through the real code path: a backend whose output breaks post-processing, a publisher destroyed under the worker, implausible CameraInfo, a
backend that fails for a while and then works again, a worker killed by an exception no guard catches. The
ROS_PYTHON_CHECK_FIELDS=1 reproduction of the red-team run needs the variable before the message classes are
imported, so it runs the installed node in its own process with a real exported model.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from dsa_perception.msg import ObstacleAlert
from dsa_perception.node import DsaPerceptionNode
from dsa_core.perception.obstacles import MAX_GROUND_RANGE_M, GroundCamera, camera_info_problem
from dsa_core.perception.testing import ColourRuleBackend, road_scene
from node_harness import RELIABLE, RosHarness, encode_raw, stop_node_process, wait_for, with_stamp

pytestmark = pytest.mark.ros

H, W = 48, 64
OK, WARN, ERROR = (int.from_bytes(v, "little") if isinstance(v, bytes) else int(v)
                   for v in (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR))
POISON = (255, 0, 255)  # a frame whose top-left pixel has this colour breaks ShapeBugBackend's output


class ShapeBugBackend(ColourRuleBackend):
    """Colour rule, but for a poison frame the class map comes back one row short, as a buggy engine might: the
    backend call itself succeeds and post-processing (find_obstacles) raises ValueError."""

    manifest = {"score": "msp"}

    def infer(self, images: np.ndarray):
        out = super().infer(images)
        if tuple(images[0, 0, 0]) == POISON:
            out.class_ids = out.class_ids[:, 1:]
        return out


class FlakyBackend(ColourRuleBackend):
    """Raises like a lost GPU for the calls numbered in ``bad`` (0-based), works otherwise."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.bad, self.n = bad, 0

    def infer(self, images: np.ndarray):
        n, self.n = self.n, self.n + 1
        if n in self.bad:
            raise RuntimeError(f"CUDA error: device lost (injected, call {n})")
        return super().infer(images)


class Fatal(BaseException):
    """Not an Exception: nothing in the worker's per-frame guards catches it."""


class FatalBackend(ColourRuleBackend):
    def infer(self, images: np.ndarray):
        raise Fatal("injected: the worker thread ends")


def _status(node: DsaPerceptionNode) -> dict[str, tuple[int, str, dict[str, str]]]:
    out = {}
    for s in node.diagnostics().status:
        level = s.level if isinstance(s.level, int) else int.from_bytes(s.level, "little")
        out[s.name.split(": ", 1)[1]] = (level, s.message, {kv.key: kv.value for kv in s.values})
    return out


def _frame(sec: int, obstacle=(26, 34, 10, 6), poison: bool = False) -> Image:
    img = road_scene(H, W, obstacle)
    if poison:
        img[0, 0] = POISON
    msg = encode_raw(img, "rgb8")
    msg.header.stamp.sec = sec
    return msg


def _info(fx: float, fy: float | None = None, cx: float = W / 2, cy: float = H / 2, width: int = W,
          height: int = H) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.k = [fx, 0.0, cx, 0.0, fy if fy is not None else fx, cy, 0.0, 0.0, 1.0]
    return info


class _Setup:
    """The node under test on the session's harness (conftest.py ``ros_harness``)."""

    def __init__(self, harness: RosHarness, factory, cameras=("a", "b"), **params) -> None:
        self.harness = harness
        # a long diagnostics period: on a busy machine a few seconds between frames would otherwise turn a camera's
        # status into "input stale", which outranks the status each test checks (no test here is about staleness;
        # the ones that read /diagnostics as published or a rate over the period set their own)
        overrides = [Parameter("cameras", value=list(cameras)), Parameter("min_obstacle_area", value=20),
                     Parameter("debounce_frames", value=1), Parameter("reject_log_period_s", value=0.0),
                     Parameter("diagnostics_period_s", value=30.0)]
        overrides += [Parameter(k.replace("__", "."), value=v) for k, v in params.items()]
        self.node = DsaPerceptionNode(context=self.harness.context, backend_factory=factory,
                                      parameter_overrides=overrides)
        self.pubs = {c: self.harness.probe.create_publisher(Image, f"/{c}/image_raw", RELIABLE) for c in cameras}
        self.info = {c: self.harness.probe.create_publisher(CameraInfo, f"/{c}/camera_info", RELIABLE)
                     for c in cameras}
        for c in cameras:
            self.harness.listen(f"/dsa_perception/{c}/obstacles", ObstacleAlert)
        self.harness.start(self.node)
        wait_for(lambda: all(p.get_subscription_count() for p in self.pubs.values()), what="subscriptions")

    def send(self, cam: str, msg) -> None:
        self.pubs[cam].publish(msg)

    def answer(self, cam: str, sec: int, timeout: float = 10.0):
        return wait_for(lambda: with_stamp(self.harness.messages(f"/dsa_perception/{cam}/obstacles"), sec),
                        timeout, what=f"answer {sec} on {cam}")

    def close(self) -> None:
        self.harness.reset()  # destroys the node; the harness stays for the next test


def test_post_processing_error_is_counted_per_frame_and_is_not_a_backend_failure(ros_harness) -> None:
    created: list[str] = []

    def factory(kind: str):
        created.append(kind)
        return ShapeBugBackend()

    s = _Setup(ros_harness, factory, backends=["onnxruntime", "torch"])
    try:
        s.send("a", _frame(1))
        s.answer("a", 1)
        s.send("a", _frame(2, poison=True))
        wait_for(lambda: s.node.counters("a")["errors"].get("postprocess.ValueError") == 1, what="counted error")
        for sec in (3, 4):  # the next frames of both cameras go on
            s.send("a", _frame(sec))
            s.send("b", _frame(sec))
            s.answer("a", sec)
            s.answer("b", sec)
        assert with_stamp(s.harness.messages("/dsa_perception/a/obstacles"), 2) is None
        # not a backend failure: no fallback, the healthy backend stays
        assert created == ["onnxruntime"] and s.node.backends.name == "onnxruntime" and s.node.backends.state == "ok"
        diag = _status(s.node)
        level, message, values = diag["camera a"]
        assert values["frame_errors.postprocess.ValueError"] == "1" and values["frame_errors"] == "1"
        assert level == WARN and "failed after inference" in message
        assert diag["backend"][2]["state"] == "ok" and diag["worker"][0] == OK
    finally:
        s.close()


def test_publish_failure_is_counted_the_worker_goes_on_and_the_watchdog_fires(ros_harness) -> None:
    s = _Setup(ros_harness, lambda kind: ColourRuleBackend(), watchdog_timeout_s=1.0)
    try:
        s.send("b", _frame(1))
        s.answer("b", 1)
        s.node.destroy_publisher(s.node._outputs["b"]["obstacles"])  # like a DDS writer gone bad
        t_first_bad = time.monotonic()
        for sec in range(2, 6):
            s.send("b", _frame(sec))
            s.send("a", _frame(sec))
            s.answer("a", sec)  # camera a is answered throughout: the worker did not die
        wait_for(lambda: sum(s.node.counters("b")["errors"].values()) >= 1, what="publish errors counted")
        errors = s.node.counters("b")["errors"]
        assert list(errors) == ["publish.InvalidHandle"], errors
        assert s.node._worker.is_alive()
        while time.monotonic() - t_first_bad < 1.5:  # input keeps arriving on b, nothing goes out for it
            s.send("b", _frame(100))
            time.sleep(0.2)
        diag = _status(s.node)
        level, message, values = diag["camera b"]
        assert level == ERROR and "watchdog" in message, (level, message)
        assert float(values["waiting_for_output_s"]) > 1.0
        assert diag["camera a"][0] != ERROR and diag["worker"][0] == OK
    finally:
        s.close()


def test_implausible_camera_info_is_rejected_and_counted_and_the_good_one_stays(ros_harness) -> None:
    created: list[str] = []

    def factory(kind: str):
        created.append(kind)
        return ColourRuleBackend()

    s = _Setup(ros_harness, factory, cameras=("a",), backends=["onnxruntime", "torch"],
               camera__a__camera_info_topic="/a/camera_info", camera__a__mount_height_m=1.2)
    try:
        s.info["a"].publish(_info(50.0))
        wait_for(lambda: s.node._cams["a"].info is not None, what="good CameraInfo")
        s.send("a", _frame(1))
        good = s.answer("a", 1).obstacles[0].distance_m
        assert np.isfinite(good) and good > 0
        bad = [_info(1e-37), _info(1e-300), _info(float("nan")), _info(50.0, fy=5000.0),  # fy/fx = 100
               _info(50.0, cx=10_000.0), _info(50.0, width=0), _info(-50.0)]
        for i, info in enumerate(bad):
            s.info["a"].publish(info)
            wait_for(lambda: s.node.counters("a")["rejected"].get("bad_camera_info") == i + 1,
                     what=f"CameraInfo {i} rejected")
        for sec in (2, 3):
            s.send("a", _frame(sec))
            alert = s.answer("a", sec)
            assert alert.obstacles[0].distance_m == pytest.approx(good)  # the last good CameraInfo is in force
        assert created == ["onnxruntime"] and s.node.backends.state == "ok"  # fx=1e-300 used to drop the backend
        assert s.node.counters("a")["errors"] == {}
        uncalibrated = CameraInfo(width=W, height=H)  # K all zero: no calibration, no distances, not an error
        s.info["a"].publish(uncalibrated)
        wait_for(lambda: s.node._cams["a"].info is None, what="uncalibrated CameraInfo")
        s.send("a", _frame(4))
        assert not np.isfinite(s.answer("a", 4).obstacles[0].distance_m)
        assert s.node.counters("a")["rejected"] == {"bad_camera_info": len(bad)}
        # a CameraInfo for another aspect ratio than the images: the frame goes out without distances, counted
        s.info["a"].publish(_info(500.0, cx=640.0, cy=40.0, width=1280, height=80))
        wait_for(lambda: s.node._cams["a"].info is not None and s.node._cams["a"].info[1] == 1280, what="info")
        s.send("a", _frame(5))
        assert not np.isfinite(s.answer("a", 5).obstacles[0].distance_m)
        assert s.node.counters("a")["errors"] == {"camera_info.ValueError": 1}
    finally:
        s.close()


def test_camera_info_values_tell_uncalibrated_malformed_and_plausible_apart() -> None:
    from dsa_core.perception.obstacles import camera_info_values

    k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    assert camera_info_values(k, 640, 480) == ((k, 640, 480), None)
    assert camera_info_values([0.0] * 9, 640, 480) == (None, None)  # K = 0: uncalibrated, no distances
    info, problem = camera_info_values(["x"] * 9, 640, 480)
    assert info is None and problem.startswith("ValueError")
    info, problem = camera_info_values([1.0, 0, 320, 0, 1.0, 240, 0, 0, 1], 640, 480)
    assert info is None and "field of view" in problem


def test_camera_info_problem_and_bounded_ground_distances() -> None:
    k = [50.0, 0.0, W / 2, 0.0, 50.0, H / 2, 0.0, 0.0, 1.0]
    assert camera_info_problem(k, W, H) is None
    assert "field of view" in camera_info_problem([1e-37] + k[1:], W, H)
    assert "field of view" in camera_info_problem([1e-300] + k[1:4] + [1e-300] + k[5:], W, H)
    assert "field of view" in camera_info_problem([1e6] + k[1:4] + [1e6] + k[5:], W, H)  # 0.004 degrees
    assert "non-finite" in camera_info_problem([float("inf")] + k[1:], W, H)
    assert "principal point" in camera_info_problem(k[:2] + [-1000.0] + k[3:], W, H)
    assert "[0, 0, 1]" in camera_info_problem(k[:8] + [2.0], W, H)
    assert "image size" in camera_info_problem(k, 0, H)
    # a ray just below the horizon: no distance rather than a huge one; every reported one is bounded
    cam = GroundCamera(fx=50.0, fy=50.0, cx=32.0, cy=24.0, height_m=1.2, pitch_rad=0.0)
    assert cam.ground_point(32.0, 24.0 + 1e-6) is None
    rows = np.linspace(24.0 + 1e-9, 48.0, 2000)
    dists = [cam.ground_distance(p) for p in (cam.ground_point(10.0, v) for v in rows) if p is not None]
    assert dists and max(dists) <= MAX_GROUND_RANGE_M and all(np.isfinite(dists))
    assert cam.ground_distance((1e300, 1e300, 1e300)) > 1e300  # no OverflowError (was point[0] ** 2)


def test_failed_backend_is_retried_on_a_schedule_and_comes_back(ros_harness) -> None:
    created: list[str] = []
    flaky = FlakyBackend(bad={1})

    def factory(kind: str):
        created.append(kind)
        if kind == "onnxruntime":
            return flaky if created.count("onnxruntime") == 1 else FlakyBackend(bad=set())
        return ColourRuleBackend()

    s = _Setup(ros_harness, factory, cameras=("a",), backends=["onnxruntime", "torch"], backend_retry_period_s=0.5)
    try:
        s.send("a", _frame(1))
        s.answer("a", 1)
        s.send("a", _frame(2))
        s.answer("a", 2)  # failed on onnxruntime, re-run on torch: not lost
        assert s.node.backends.name == "torch" and s.node.backends.state == "fallback"
        diag = _status(s.node)["backend"]
        assert diag[2]["retry.targets"] == "onnxruntime" and "retrying onnxruntime" in diag[1]
        wait_for(lambda: s.node.backends.name == "onnxruntime", timeout=10.0, what="the preferred backend is back")
        assert s.node.backends.state == "ok" and created == ["onnxruntime", "torch", "onnxruntime"]
        s.send("a", _frame(3))
        s.answer("a", 3)
        values = _status(s.node)["backend"][2]
        assert int(values["retry.attempts"]) >= 1 and "retry: back to onnxruntime" in values["events"]
        assert values["retry.targets"] == "" and values["retry.last"] == "onnxruntime: started"
    finally:
        s.close()


def test_no_working_backend_is_not_forever_and_the_log_names_the_chain(ros_harness, capfd) -> None:
    flaky = FlakyBackend(bad={1, 2})
    s = _Setup(ros_harness, lambda kind: flaky, cameras=("a",), backends=["onnxruntime"], backend_retry_period_s=0.0)
    try:
        s.send("a", _frame(1))
        s.answer("a", 1)
        s.send("a", _frame(2))
        wait_for(lambda: s.node.failed_batches == 1, what="failed batch")
        assert s.node.backends.state == "failed" and _status(s.node)["camera a"][1] == "no working backend"
        s.send("a", _frame(3))
        wait_for(lambda: s.node.failed_batches == 2, what="second failed batch")
        s.send("a", _frame(4))
        s.answer("a", 4)  # the same backend works again: the node says so
        assert s.node.backends.state == "ok" and "onnxruntime answers again" in s.node.backends.events[-1]
        assert _status(s.node)["camera a"][0] != ERROR
    finally:
        s.close()
    err = capfd.readouterr().err
    assert "could be created from :" not in err
    assert "no backend after onnxruntime in the backends list ['onnxruntime']" in err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected death
def test_a_dead_worker_is_an_error_in_diagnostics_not_silence(ros_harness, capfd) -> None:
    s = _Setup(ros_harness, lambda kind: FatalBackend(), cameras=("a",), diagnostics_period_s=1.0)  # published
    try:
        s.send("a", _frame(1))
        wait_for(lambda: not s.node._worker.is_alive(), what="the worker to end")
        diag = _status(s.node)
        assert diag["worker"][0] == ERROR and "Fatal" in diag["worker"][1]
        assert diag["camera a"][0] == ERROR and "worker is not running" in diag["camera a"][1]
        # published too, on /diagnostics
        s.harness.listen("/diagnostics", DiagnosticArray)
        wait_for(lambda: any(st.name.endswith(": worker") and st.message.startswith("inference worker is not running")
                             for arr in s.harness.messages("/diagnostics") for st in arr.status),
                 what="the worker error on /diagnostics")
    finally:
        s.close()
    assert "inference worker stopped" in capfd.readouterr().err


def test_threshold_outside_the_score_range_is_refused() -> None:
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=67)
    try:
        with pytest.raises(ValueError, match=r"anomaly_threshold: -1.0 is outside \(0.0, 1.0\].*msp.*every pixel"):
            DsaPerceptionNode(context=ctx, backend_factory=lambda kind: ShapeBugBackend(),
                              parameter_overrides=[Parameter("anomaly_threshold", value=-1.0)])
        node = DsaPerceptionNode(context=ctx, backend_factory=lambda kind: ShapeBugBackend(),
                                 parameter_overrides=[Parameter("anomaly_threshold", value=0.3)])
        try:
            for bad in (-1.0, 0.0, 1.5):
                result = node.set_parameters([Parameter("anomaly_threshold", value=bad)])[0]
                assert not result.successful and "msp" in result.reason, bad
            assert node.set_parameters([Parameter("anomaly_threshold", value=0.9)])[0].successful
            assert node.pipeline.settings.anomaly_threshold == pytest.approx(0.9)
        finally:
            node.destroy_node()
        # an engine without a manifest (score type unknown): only the descriptor's range applies
        node = DsaPerceptionNode(context=ctx, backend_factory=lambda kind: ColourRuleBackend(),
                                 parameter_overrides=[Parameter("anomaly_threshold", value=-1.0)])
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_delivered_rate_is_reported_against_the_camera_rate(ros_harness) -> None:
    # the harness's long diagnostics period keeps "input stale" (3 periods without a frame) from outranking the
    # delivered-rate warning on a loaded machine; the delivered rate has its own window (health.DELIVERY_WINDOW_S)
    s = _Setup(ros_harness, lambda kind: ColourRuleBackend(), cameras=("a",), camera__a__rate_hz=30.0)
    try:
        t0 = time.monotonic()
        for sec in range(1, 16):  # 10 Hz delivered of a 30 Hz camera
            s.send("a", _frame(sec))
            time.sleep(max(0.0, t0 + sec * 0.1 - time.monotonic()))
        # read the status once no frame has come in for 0.3 s (the subscription may lose some while the node starts):
        # waiting for inference answers instead would let a loaded machine push the arrivals out of the
        # delivered-rate window. Polled with counters(): each diagnostics() call starts a new rate period.
        deadline, seen, quiet_since = time.monotonic() + 5.0, -1, time.monotonic()
        while time.monotonic() < deadline:
            n = s.node.counters("a")["received"]
            if n != seen:
                seen, quiet_since = n, time.monotonic()
            elif n >= 15 or time.monotonic() - quiet_since > 0.3:
                break
            time.sleep(0.01)
        level, message, values = _status(s.node)["camera a"]
        waited_s = time.monotonic() - t0
        # delivered rate = arrivals over the window from the first arrival to the status call: at least the spacing
        # of the arrivals, at most the time until now
        received = int(values["received"])
        assert 6 <= received <= 15, values
        low, high = received / (30.0 * waited_s), received / (30.0 * max(0.5, (received - 2) * 0.1))
        assert values["expected_rate_hz"] == "30.00"
        assert 0.9 * low <= float(values["delivered_fraction"]) <= 1.1 * high, (values, low, high)
        assert float(values["delivered_fraction"]) < 0.5  # 10 Hz of a 30 Hz camera: the fraction is taken against 30
        assert level == WARN and "delivered" in message, (level, message)
        s.answer("a", 15)  # and the node still answers every frame it kept
    finally:
        s.close()


# --- the red-team reproduction: installed node, real model, ROS_PYTHON_CHECK_FIELDS=1 ------------------------

INSTALLED_EXE = Path(sys.prefix) / "lib" / "dsa_perception" / "dsa_perception_node"
SUBPROCESS_DOMAIN = 69


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """The shipped trained model: an untrained one scores every pixel below 0 (msp), so nothing would be flagged at
    any threshold the node accepts for msp."""
    return Path(__file__).resolve().parents[1] / "models" / "dsa_nano"


def _env() -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(SUBPROCESS_DOMAIN), "PYTHONUNBUFFERED": "1",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_PYTHON_CHECK_FIELDS": "1"}


def test_installed_node_refuses_a_negative_threshold_for_the_msp_score(model_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-P", str(INSTALLED_EXE), "--ros-args", "-p", f"model_dir:={model_dir}",
                           "-p", "backends:=[onnxruntime]", "-p", "inference_threads:=1",
                           "-p", "anomaly_threshold:=-1.0", "-p", "build_only:=true"],
                          env=_env(), capture_output=True, text=True, timeout=120, cwd="/")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "cannot start" in log and "anomaly_threshold: -1.0 is outside" in log, log
    assert "Traceback" not in log


def test_check_fields_and_tiny_focal_lengths_do_not_stop_the_installed_node(model_dir: Path) -> None:
    """The red-team case: with ROS_PYTHON_CHECK_FIELDS=1 a CameraInfo with fx=1e-37 gave a 2.4e39 m distance the
    Obstacle message refuses; the exception ended the worker and 0 of 60 frames were answered while /diagnostics
    said OK. Every class is drivable here and the frames are noise (scored anomalous by the model), so each frame
    has obstacles whose distances would be computed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    proc = subprocess.Popen(
        [sys.executable, "-P", str(INSTALLED_EXE), "--ros-args", "-p", f"model_dir:={model_dir}",
         "-p", "backends:=[onnxruntime,torch]", "-p", "inference_threads:=1", "-p", "cameras:=[cam]",
         "-p", "camera.cam.camera_info_topic:=/cam/camera_info", "-p", "camera.cam.mount_height_m:=1.5",
         "-p", "anomaly_threshold:=0.5", "-p", "min_obstacle_area:=1", "-p", "debounce_frames:=1",
         "-p", f"drivable_classes:=[{','.join(str(i) for i in range(19))}]", "-p", "diagnostics_period_s:=0.5"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=SUBPROCESS_DOMAIN)
    probe = Node("hardening_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    alerts: dict[int, ObstacleAlert] = {}
    diags: list[DiagnosticArray] = []
    probe.create_subscription(ObstacleAlert, "/dsa_perception/cam/obstacles",
                              lambda m: alerts.__setitem__(m.header.stamp.sec, m), RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, RELIABLE)
    image_pub = probe.create_publisher(Image, "/cam/image_raw", RELIABLE)
    info_pub = probe.create_publisher(CameraInfo, "/cam/camera_info", RELIABLE)

    def spin_until(cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            executor.spin_once(timeout_sec=0.05)

    try:
        spin_until(lambda: image_pub.get_subscription_count() and info_pub.get_subscription_count(), 90, "node")
        rng = np.random.default_rng(0)
        sec = 0
        for fx in (1e-37, 1e-300):
            info = CameraInfo(width=128, height=72)
            info.k = [fx, 0.0, 64.0, 0.0, fx, 36.0, 0.0, 0.0, 1.0]
            info_pub.publish(info)
            for _ in range(3):
                sec += 1
                msg = encode_raw(rng.integers(0, 256, (72, 128, 3), dtype=np.uint8), "rgb8")
                msg.header.stamp.sec = sec
                image_pub.publish(msg)
                spin_until(lambda: sec in alerts, 30, f"the answer to frame {sec} after fx={fx}")
                assert alerts[sec].obstacles and not np.isfinite(alerts[sec].obstacles[0].distance_m)

        def cam_status():
            for arr in reversed(diags):
                st = {s.name: s for s in arr.status}
                cam = st.get("dsa_perception: camera cam")
                if cam is not None and {kv.key: kv.value for kv in cam.values}.get("rejected.bad_camera_info") == "2":
                    return st
            return None

        spin_until(cam_status, 10, "diagnostics counting both CameraInfo messages")
        st = cam_status()
        backend = {kv.key: kv.value for kv in st["dsa_perception: backend"].values}
        assert backend["backend"] == "onnxruntime" and backend["state"] == "ok"  # no fallback to torch
        assert st["dsa_perception: worker"].message == "running"
    finally:
        out = stop_node_process(proc, executor, probe, ctx)
    assert "Traceback" not in out and "inference worker stopped" not in out, out
    assert "rejected CameraInfo, CameraInfo refused, fx = 1e-37 px gives a field of view" in out, out
