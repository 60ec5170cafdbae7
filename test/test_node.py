"""The node with the real rclpy (in-process, own domain id): every encoding on several cameras -> every output with
the input header; alerts on the road and not in the sky; run-time parameters; run-time backend fallback;
diagnostics. The engine is the deterministic colour-rule backend (dsa_core/perception/testing.py): the logic under test
is the node's, and an untrained model does not segment roads."""
from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from dsa_core.runtime import BACKEND_KINDS, BackendUnavailable
from dsa_core.perception.horizon_check import MIN_ROAD_TOP_FRAMES
from dsa_core.perception.image_codec import SUPPORTED_ENCODINGS
from dsa_perception.msg import ObstacleAlert
from dsa_perception.node import DsaPerceptionNode
from dsa_core.perception.params import BACKEND_KINDS as NODE_BACKEND_KINDS
from dsa_core.perception.testing import ColourRuleBackend, road_scene
from node_harness import (IMAGE_OUTPUTS, RELIABLE, RosHarness, encode_compressed, encode_raw, wait_for,
                          with_stamp)

pytestmark = pytest.mark.ros

# Own harness and domain, not conftest.py's session ``ros_harness``: `colcon test` runs this file with
# --noconftest (conftest.py imports torch, which has no rosdep key), where that fixture does not exist.
DOMAIN_ID = 71
H, W = 48, 64


class FailingBackend(ColourRuleBackend):
    """Fault injection: behaves like the colour rule for ``ok_calls`` calls, then raises like a lost GPU would."""

    def __init__(self, ok_calls: int) -> None:
        super().__init__()
        self.ok_calls = ok_calls

    def infer(self, images: np.ndarray):
        if self.calls >= self.ok_calls:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return super().infer(images)


class Factory:
    """Backend kinds -> engines: tensorrt unavailable at start, onnxruntime fails at run time, torch works."""

    def __init__(self, ok_calls: int) -> None:
        self.created: list[str] = []
        self.ok_calls = ok_calls

    def __call__(self, kind: str):
        self.created.append(kind)
        if kind == "tensorrt":
            raise BackendUnavailable("no CUDA device (test machine)")
        return FailingBackend(self.ok_calls) if kind == "onnxruntime" else ColourRuleBackend()


@pytest.fixture(scope="module")
def ros():
    harness = RosHarness(DOMAIN_ID)
    factory = Factory(ok_calls=10**9)
    node = DsaPerceptionNode(context=harness.context, backend_factory=factory, parameter_overrides=[
        Parameter("cameras", value=["left", "right", "front"]),
        Parameter("camera.front.transport", value="compressed"),
        Parameter("camera.left.camera_info_topic", value="/left/camera_info"),
        Parameter("camera.left.mount_height_m", value=1.2),
        Parameter("min_obstacle_area", value=20),
        Parameter("debounce_frames", value=2),
        Parameter("diagnostics_period_s", value=0.2),
    ])
    for cam in ("left", "right", "front"):
        for out in IMAGE_OUTPUTS:
            harness.listen(f"/dsa_perception/{cam}/{out}", Image)
        harness.listen(f"/dsa_perception/{cam}/obstacles", ObstacleAlert)
        harness.listen(f"/dsa_perception/{cam}/markers", MarkerArray)
    harness.listen("/diagnostics", DiagnosticArray)
    pubs = {"left": harness.probe.create_publisher(Image, "/left/image_raw", RELIABLE),
            "right": harness.probe.create_publisher(Image, "/right/image_raw", RELIABLE),
            "front": harness.probe.create_publisher(CompressedImage, "/front/image_raw/compressed", RELIABLE),
            "left_info": harness.probe.create_publisher(CameraInfo, "/left/camera_info", RELIABLE)}
    harness.start(node)
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), what="node subscriptions")
    yield harness, node, pubs, factory
    harness.close(node)


_stamp = iter(range(1000, 10**6))


def _send(pubs, cam: str, msg, frame_id: str) -> int:
    sec = next(_stamp)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, 123, frame_id
    pubs[cam].publish(msg)
    return sec


def _outputs(harness, cam: str, sec: int, timeout: float = 10.0) -> dict[str, object]:
    topics = list(IMAGE_OUTPUTS) + ["obstacles", "markers"]

    def found():
        got = {}
        for t in topics:
            msgs = harness.messages(f"/dsa_perception/{cam}/{t}")
            if t == "markers":  # MarkerArray carries headers per marker (the DELETEALL one is always there)
                m = next((a for a in msgs if a.markers and a.markers[0].header.stamp.sec == sec), None)
            else:
                m = with_stamp(msgs, sec, 123)
            if m is None:
                return None
            got[t] = m
        return got

    return wait_for(found, timeout, what=f"all outputs of {cam} for stamp {sec}")


def test_backend_kinds_agree_with_the_runtime() -> None:
    assert tuple(NODE_BACKEND_KINDS) == tuple(BACKEND_KINDS)


def test_every_encoding_on_every_camera_gives_every_output_with_the_input_header(ros) -> None:
    harness, node, pubs, _ = ros
    scene = road_scene(H, W, (20, 30, 10, 8))
    for i, encoding in enumerate(SUPPORTED_ENCODINGS):
        pad = 3 if i % 2 else 0
        big = encoding.endswith("16") and i % 3 == 0
        sent = {"left": _send(pubs, "left", encode_raw(scene, encoding, pad, big), "cam_left"),
                "right": _send(pubs, "right", encode_raw(scene[: H - 8, : W - 16], encoding, 0, big), "cam_right"),
                "front": _send(pubs, "front", encode_compressed(scene, "jpeg" if i % 2 else "png"), "cam_front")}
        sizes = {"left": (H, W), "right": (H - 8, W - 16), "front": (H, W)}
        for cam, sec in sent.items():
            out = _outputs(harness, cam, sec)
            for topic, enc in IMAGE_OUTPUTS.items():
                img = out[topic]
                assert img.header.frame_id == f"cam_{cam}" and img.encoding == enc, (encoding, cam, topic)
                assert (img.height, img.width) == sizes[cam], (encoding, cam, topic)
                assert len(img.data) == img.step * img.height
            alert = out["obstacles"]
            assert alert.header.frame_id == f"cam_{cam}" and (alert.image_height, alert.image_width) == sizes[cam]
            assert alert.camera_name == cam
            assert out["markers"].markers[0].header.frame_id == f"cam_{cam}"
        if encoding == "rgb8":  # content check where the decode is exact: semantic = the engine's rule
            sem = _outputs(harness, "left", sent["left"])["semantic"]
            expected = ColourRuleBackend().infer(scene[None]).class_ids[0]
            np.testing.assert_array_equal(np.frombuffer(bytes(sem.data), np.uint8).reshape(H, W), expected)
            score = _outputs(harness, "left", sent["left"])["anomaly_score"]
            assert np.frombuffer(bytes(score.data), np.float32).reshape(H, W)[34, 25] == pytest.approx(230 / 255)
    c = node.counters("left")
    assert c["rejected"] == {} and c["processed"] >= len(SUPPORTED_ENCODINGS)


def _end_left_tracks(harness, pubs) -> None:
    for _ in range(3):  # empty frames end the tracks of earlier tests (max_missed_frames = 2)
        _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W), "rgb8"), "l"))


def _left_camera_info_and_no_tracks(harness, node, pubs) -> None:
    """The left camera's CameraInfo (f = 50 px, principal point at the image centre) in force, no track left."""
    info = CameraInfo(width=W, height=H)
    info.k = [50.0, 0.0, W / 2, 0.0, 50.0, H / 2, 0.0, 0.0, 1.0]
    pubs["left_info"].publish(info)
    wait_for(lambda: node._cams["left"].info is not None, what="camera info")
    _end_left_tracks(harness, pubs)


def test_alert_for_an_obstacle_on_the_road_and_not_for_one_in_the_sky(ros) -> None:
    harness, node, pubs, _ = ros
    _left_camera_info_and_no_tracks(harness, node, pubs)
    road, sky = [], []
    for t in range(4):
        road.append(_outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W, (26 + t, 34, 10, 6)), "rgb8"), "l"))["obstacles"])
        sky.append(_outputs(harness, "right", _send(pubs, "right", encode_raw(road_scene(H, W, (26 + t, 4, 10, 6)), "rgb8"), "r"))["obstacles"])
    assert all(a.severity == ObstacleAlert.SEVERITY_NONE and not a.obstacles for a in sky)
    assert [len(a.obstacles) for a in road] == [1, 1, 1, 1]
    ids = {a.obstacles[0].track_id for a in road}
    assert len(ids) == 1  # the moving box keeps its track id
    assert [a.obstacles[0].confirmed for a in road] == [False, True, True, True]  # debounce_frames = 2
    assert road[0].severity == ObstacleAlert.SEVERITY_NONE
    assert all(a.severity >= ObstacleAlert.SEVERITY_WARNING for a in road[1:])
    o = road[-1].obstacles[0]
    assert (o.bbox_x, o.bbox_y, o.bbox_width, o.bbox_height, o.pixel_area) == (29, 34, 10, 6, 60)
    # flat ground from CameraInfo + 1.2 m mount: bottom edge v = 40 -> 16 px below cy; x offset 0 at u = 34 -> 2 px
    z = 50.0 * 1.2 / 16.0
    assert o.distance_source == o.DISTANCE_SOURCE_FLAT_GROUND
    assert o.distance_m == pytest.approx(math.hypot((34 - W / 2) / 50.0 * z, z), rel=1e-5)
    assert road[-1].nearest_distance_m == pytest.approx(o.distance_m)
    assert o.first_seen.sec == road[0].header.stamp.sec
    markers = _outputs(harness, "left", road[-1].header.stamp.sec)["markers"].markers
    assert markers[0].action == markers[0].DELETEALL and len(markers) == 3  # + cylinder + label of the track


def test_a_time_debounce_confirms_an_obstacle_whose_camera_frames_were_dropped(ros) -> None:
    """debounce_seconds at run time: the node gets two frames of an obstacle 2 s apart by their header stamps (the
    camera frame between them never reached it). Two matched frames are short of debounce_frames = 3, but the run
    spans debounce_seconds = 2 s of camera time, so the second confirms it."""
    harness, node, pubs, _ = ros
    _end_left_tracks(harness, pubs)
    assert _set(harness, "debounce_frames", 3, ParameterType.PARAMETER_INTEGER).successful
    assert _set(harness, "debounce_seconds", 2.0, ParameterType.PARAMETER_DOUBLE).successful
    try:
        assert node.pipeline.settings.obstacles.debounce_seconds == 2.0
        first = _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W, (26, 34, 10, 6)), "rgb8"),
                                                "l"))["obstacles"]
        next(_stamp)  # the dropped camera frame: one second of stamps the node never sees
        second = _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W, (27, 34, 10, 6)), "rgb8"),
                                                 "l"))["obstacles"]
        assert [len(first.obstacles), len(second.obstacles)] == [1, 1]
        assert first.obstacles[0].track_id == second.obstacles[0].track_id
        assert not first.obstacles[0].confirmed and first.severity == ObstacleAlert.SEVERITY_NONE
        assert second.obstacles[0].confirmed and second.obstacles[0].age_frames == 2
        assert second.severity >= ObstacleAlert.SEVERITY_WARNING
        assert not _set(harness, "debounce_seconds", -1.0, ParameterType.PARAMETER_DOUBLE).successful
    finally:
        assert _set(harness, "debounce_frames", 2, ParameterType.PARAMETER_INTEGER).successful
        assert _set(harness, "debounce_seconds", 0.0, ParameterType.PARAMETER_DOUBLE).successful


def test_the_horizon_gate_drops_what_cannot_stand_on_the_road(ros) -> None:
    """With CameraInfo the node knows the horizon. Pitched 30 degrees up (mount_pitch_deg at run time), the left
    camera's whole image lies more than the 3-degree margin above it (row 24 + 50 tan 27 = 49.5 > 48 rows), so the
    obstacle on the road of the first test is no obstacle; with horizon_gate off it is one again."""
    harness, node, pubs, _ = ros
    _left_camera_info_and_no_tracks(harness, node, pubs)
    assert _set(harness, "camera.left.mount_pitch_deg", -30.0, ParameterType.PARAMETER_DOUBLE).successful
    try:
        gated = [_outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W, (26 + t, 34, 10, 6)), "rgb8"),
                                                 "l"))["obstacles"] for t in range(3)]
        assert all(not a.obstacles and a.severity == ObstacleAlert.SEVERITY_NONE for a in gated)
        assert _set(harness, "horizon_gate", False, ParameterType.PARAMETER_BOOL).successful
        assert node.pipeline.settings.obstacles.horizon_gate is False
        seen = [_outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W, (29 + t, 34, 10, 6)), "rgb8"),
                                                "l"))["obstacles"] for t in range(2)]
        assert [len(a.obstacles) for a in seen] == [1, 1] and seen[-1].obstacles[0].confirmed
    finally:
        assert _set(harness, "camera.left.mount_pitch_deg", 0.0, ParameterType.PARAMETER_DOUBLE).successful
        assert _set(harness, "horizon_gate", True, ParameterType.PARAMETER_BOOL).successful


def test_diagnostics_warn_when_the_road_lies_above_the_configured_horizon(ros) -> None:
    """The mount pitch check: the left camera's road starts at its CameraInfo's cy (row 24), i.e. on the horizon of
    a level camera. Configured 10 degrees up (mount_pitch_deg -10), the horizon moves below the road's top by 10
    degrees, more than the gate's 3-degree margin, and once the check has its frames /diagnostics says so."""
    harness, node, pubs, _ = ros
    _left_camera_info_and_no_tracks(harness, node, pubs)

    def left_status():
        status = {s.name: s for s in node.diagnostics().status}["dsa_perception: camera left"]
        return status, {kv.key: kv.value for kv in status.values}

    for _ in range(MIN_ROAD_TOP_FRAMES):
        _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W), "rgb8"), "l"))
    status, values = left_status()
    assert float(values["horizon.road_top_deg"]) == pytest.approx(0.0, abs=1e-6)
    assert "horizon" not in status.message
    assert _set(harness, "camera.left.mount_pitch_deg", -10.0, ParameterType.PARAMETER_DOUBLE).successful
    try:
        _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W), "rgb8"), "l"))
        assert left_status()[1]["horizon.road_top_deg"] == "n/a"  # a new pitch: the check starts again
        for _ in range(MIN_ROAD_TOP_FRAMES):
            _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W), "rgb8"), "l"))
        status, values = left_status()
        assert float(values["horizon.road_top_deg"]) == pytest.approx(10.0, abs=1e-6)
        assert status.level == DiagnosticStatus.WARN
        assert status.message.startswith("road seen 10.0° above the configured horizon (median)")
    finally:
        assert _set(harness, "camera.left.mount_pitch_deg", 0.0, ParameterType.PARAMETER_DOUBLE).successful


def _set(harness, name: str, value, ptype: int):
    client = harness.probe.create_client(SetParameters, "/dsa_perception/set_parameters")
    wait_for(lambda: client.wait_for_service(timeout_sec=0.1), what="set_parameters service")
    field = {ParameterType.PARAMETER_DOUBLE: "double_value", ParameterType.PARAMETER_INTEGER: "integer_value",
             ParameterType.PARAMETER_STRING: "string_value", ParameterType.PARAMETER_BOOL: "bool_value",
             ParameterType.PARAMETER_INTEGER_ARRAY: "integer_array_value"}[ptype]
    value_msg = ParameterValue(type=ptype, **{field: value})
    future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=value_msg)]))
    wait_for(future.done, what=f"set {name}")
    harness.probe.destroy_client(client)
    return future.result().results[0]


def test_run_time_parameters_take_effect_and_invalid_ones_are_refused(ros) -> None:
    harness, node, pubs, _ = ros
    scene = road_scene(H, W, (26, 34, 10, 6))  # obstacle score 230/255 = 0.90
    before = _outputs(harness, "left", _send(pubs, "left", encode_raw(scene, "rgb8"), "l"))
    assert np.frombuffer(bytes(before["anomaly_mask"].data), np.uint8).max() == 255
    assert _set(harness, "anomaly_threshold", 0.95, ParameterType.PARAMETER_DOUBLE).successful
    assert _set(harness, "publish_overlay", False, ParameterType.PARAMETER_BOOL).successful
    sec = _send(pubs, "left", encode_raw(scene, "rgb8"), "l")
    alert = wait_for(lambda: with_stamp(harness.messages("/dsa_perception/left/obstacles"), sec, 123), what="alert")
    mask = wait_for(lambda: with_stamp(harness.messages("/dsa_perception/left/anomaly_mask"), sec, 123), what="mask")
    assert alert.anomaly_threshold == pytest.approx(0.95) and not alert.obstacles
    assert np.frombuffer(bytes(mask.data), np.uint8).max() == 0
    assert with_stamp(harness.messages("/dsa_perception/left/overlay"), sec, 123) is None  # toggled off
    # refused: out of range, bad list content, read-only, wrong type; the values in force stay
    for name, value, ptype, why in [
            ("anomaly_threshold", 500.0, ParameterType.PARAMETER_DOUBLE, ""),
            ("drivable_classes", [0, 300], ParameterType.PARAMETER_INTEGER_ARRAY, "drivable_classes"),
            ("model_dir", "/elsewhere", ParameterType.PARAMETER_STRING, "read-only"),
            ("min_obstacle_area", "big", ParameterType.PARAMETER_STRING, ""),
            ("debounce_frames", 0, ParameterType.PARAMETER_INTEGER, "")]:
        result = _set(harness, name, value, ptype)
        assert not result.successful and result.reason, name
        assert why in result.reason, (name, result.reason)
    assert node.get_parameter("anomaly_threshold").value == pytest.approx(0.95)
    assert node.pipeline.settings.obstacles.drivable_classes == (0,)
    assert _set(harness, "anomaly_threshold", 0.5, ParameterType.PARAMETER_DOUBLE).successful
    assert _set(harness, "publish_overlay", True, ParameterType.PARAMETER_BOOL).successful
    assert _set(harness, "min_obstacle_area", 100, ParameterType.PARAMETER_INTEGER).successful
    alert = _outputs(harness, "left", _send(pubs, "left", encode_raw(scene, "rgb8"), "l"))["obstacles"]
    assert alert.min_area_pixels == 100 and not alert.obstacles  # 60 px < 100
    assert _set(harness, "min_obstacle_area", 20, ParameterType.PARAMETER_INTEGER).successful


def test_diagnostics_report_rates_latency_rejections_and_backend(ros) -> None:
    harness, node, pubs, _ = ros
    bad = encode_raw(road_scene(H, W), "rgb8")
    bad.step = 1
    _send(pubs, "left", bad, "l")
    wait_for(lambda: node.counters("left")["rejected"].get("bad_step") == 1, what="rejection")
    _outputs(harness, "left", _send(pubs, "left", encode_raw(road_scene(H, W), "rgb8"), "l"))

    def latest_with_rejection():
        for arr in reversed(harness.messages("/diagnostics")):
            status = {s.name: {kv.key: kv.value for kv in s.values} for s in arr.status}
            cam = status.get("dsa_perception: camera left", {})
            if cam.get("rejected.bad_step") == "1":
                return status
        return None

    status = wait_for(latest_with_rejection, what="diagnostics with the rejection")
    cam = status["dsa_perception: camera left"]
    for key in ("input_rate_hz", "received", "processed", "dropped", "latency_ms.end_to_end.p50",
                "latency_ms.node.p95", "latency_ms.inference.p50", "latency_ms.decode.max",
                "latency_ms.message.p50", "latency_ms.publish.p50", "latency_ms.own_cpu.p50"):
        assert key in cam, key
    # the worker's CPU time for mask .. publish cannot exceed the wall time of those stages (plus rounding)
    wall = sum(float(cam[f"latency_ms.{s}.max"]) for s in ("mask", "obstacles", "visualization", "message", "publish"))
    assert 0.0 < float(cam["latency_ms.own_cpu.p50"]) <= wall + 1.0  # the worker did some work for each frame
    backend = status["dsa_perception: backend"]
    assert backend["state"] in ("fallback", "ok") and backend["backend"] in ("onnxruntime", "torch")
    assert "tensorrt" in backend["events"]  # why the first preference is not running is reported


def test_backend_failure_at_run_time_falls_back_and_says_so() -> None:
    harness = RosHarness(DOMAIN_ID + 1)  # another domain: the module fixture's node (same name) is still running
    factory = Factory(ok_calls=2)
    node = DsaPerceptionNode(context=harness.context, backend_factory=factory, parameter_overrides=[Parameter("cameras", value=["cam"])])
    pub = harness.probe.create_publisher(Image, "/cam/image_raw", RELIABLE)
    harness.listen("/dsa_perception/cam/obstacles", ObstacleAlert)
    harness.start(node)
    try:
        wait_for(lambda: pub.get_subscription_count() > 0, what="subscription")
        assert node.backends.name == "onnxruntime" and node.backends.state == "fallback"  # tensorrt unavailable
        for t in range(5):
            msg = encode_raw(road_scene(H, W), "rgb8")
            msg.header.stamp.sec = t
            pub.publish(msg)
            wait_for(lambda: with_stamp(harness.messages("/dsa_perception/cam/obstacles"), t), what=f"frame {t}")
        # the third frame hit the failure; it was re-run on the next backend, so no frame was lost
        assert factory.created == ["tensorrt", "onnxruntime", "torch"]
        assert node.backends.name == "torch" and node.failed_batches == 0
        events = " | ".join(node.backends.events)
        assert "onnxruntime failed: RuntimeError: CUDA error" in events and "running backend torch" in events
        diag = {s.name: {kv.key: kv.value for kv in s.values} for s in node.diagnostics().status}
        assert diag["dsa_perception: backend"]["backend"] == "torch"
    finally:
        harness.close(node)


def test_invalid_start_parameters_are_refused_with_the_reason() -> None:
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID + 2)
    try:
        with pytest.raises(ValueError, match="cameras"):
            DsaPerceptionNode(context=ctx, backend_factory=Factory(1),
                              parameter_overrides=[Parameter("cameras", value=["ok", "bad name"])])
        with pytest.raises(ValueError, match="backends"):
            DsaPerceptionNode(context=ctx, backend_factory=Factory(1),
                              parameter_overrides=[Parameter("backends", value=["coreml"])])
        with pytest.raises(RuntimeError, match="no inference backend"):
            DsaPerceptionNode(context=ctx, backend_factory=Factory(1),
                              parameter_overrides=[Parameter("backends", value=["tensorrt"])])
    finally:
        rclpy.shutdown(context=ctx)


def test_overrides_the_node_does_not_declare_are_reported(capfd) -> None:
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID + 2)
    try:
        node = DsaPerceptionNode(context=ctx, backend_factory=Factory(10), parameter_overrides=[
            Parameter("cameras", value=["a"]), Parameter("camera.b.image_topic", value="/x"),
            Parameter("anomaly_treshold", value=0.3)])  # a camera not in `cameras`, a typo
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    err = capfd.readouterr().err
    assert "ignoring parameters this node does not declare: anomaly_treshold, camera.b.image_topic" in err
