"""Interoperability outputs: vision_msgs/Detection2DArray next to ObstacleAlert, and the latched class map.

vision_msgs has no wheel, so a stand-in package with the vision_msgs 4.x (Humble/Jazzy/Kilted) definitions of the
messages we fill is generated and built with rosidl exactly like our own msg/ package (CMake against the pip ROS 2
wheels, as scripts/build_ros_interfaces.sh does), and the node runs in a process that sees it. The pure converter is
tested without any vision_msgs.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dsa_core.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dsa_core.perception.obstacles import Detection, Severity, TrackedObstacle
from dsa_core.perception.interop import ANOMALY_CLASS_ID, class_map_layout, detection2d_layout
from dsa_perception.msg import ClassMap
from dsa_perception.node import DsaPerceptionNode
from dsa_core.perception.testing import ColourRuleBackend
from node_harness import RosHarness, wait_for
from ros_paths import python

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]


def _ros_prefix() -> Path:
    """Where the ROS 2 build tools live: the pip wheels' venv here, /opt/ros/<distro> under `colcon test`."""
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix("rosidl_default_generators"))
    except (ImportError, LookupError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        return Path(sys.prefix)


ROS_PREFIX = _ros_prefix()
# Own harness and domain, not conftest.py's session ``ros_harness``: `colcon test` runs this file with
# --noconftest (conftest.py imports torch, which has no rosdep key), where that fixture does not exist.
DOMAIN_ID = 85


def _obstacle(track_id: int, bbox, distance: float, ground=(math.nan,) * 3, confirmed: bool = True):
    d = Detection(bbox=bbox, pixel_area=bbox[2] * bbox[3], area_fraction=0.01, score_max=0.75, score_mean=0.6,
                  drivable_fraction=0.5, road_contact=0.8, centroid=(0.0, 0.0))
    return TrackedObstacle(track_id=track_id, age_frames=3, first_seen=None, detection=d, confirmed=confirmed,
                           severity=Severity.WARNING, distance_m=distance, ground_point=ground)


def test_detection2d_layout_of_confirmed_obstacles() -> None:
    layout = detection2d_layout([_obstacle(3, (10, 20, 30, 41), math.nan),
                                 _obstacle(4, (0, 0, 4, 4), 5.0, confirmed=False),
                                 _obstacle(7, (100, 50, 20, 10), 12.5, ground=(0.5, 1.5, 12.4))])
    assert [d["id"] for d in layout] == ["3", "7"]  # the unconfirmed track is left out
    unknown, near = layout
    assert unknown["bbox"] == {"center": {"position": {"x": 25.0, "y": 40.5}, "theta": 0.0},
                               "size_x": 30.0, "size_y": 41.0}
    (hyp,) = unknown["results"]
    assert hyp["hypothesis"] == {"class_id": ANOMALY_CLASS_ID, "score": 0.75}
    assert hyp["pose"]["pose"]["position"] == {"x": 0.0, "y": 0.0, "z": 0.0}
    assert hyp["pose"]["covariance"][0] == -1.0 and len(hyp["pose"]["covariance"]) == 36
    assert near["results"][0]["pose"]["pose"]["position"] == {"x": 0.5, "y": 1.5, "z": 12.4}
    assert near["results"][0]["pose"]["covariance"] == [0.0] * 36


class ManifestBackend(ColourRuleBackend):
    manifest = {"model_name": "tiny_test", "score": "msp",
                "classes": [{"id": 0, "name": "road", "color": [128, 64, 128]},
                            {"id": 1, "name": "thing", "color": None}]}


@pytest.mark.parametrize("backend, names", [(ColourRuleBackend, CITYSCAPES_CLASSES), (ManifestBackend, ("road", "thing"))])
def test_class_map_is_latched_for_a_late_subscriber(backend, names) -> None:
    harness = RosHarness(DOMAIN_ID)
    node = DsaPerceptionNode(context=harness.context, backend_factory=lambda kind: backend(),
                             parameter_overrides=[Parameter("backends", value=["onnxruntime"])])
    harness.start(node)
    try:
        wait_for(lambda: harness.probe.count_publishers("/dsa_perception/class_map") == 1, what="the publisher")
        got: list[ClassMap] = []
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        harness.probe.create_subscription(ClassMap, "/dsa_perception/class_map", got.append, latched)
        wait_for(lambda: got, what="the latched class map")
    finally:
        harness.close(node)
    (msg,) = got
    assert tuple(msg.names) == tuple(names) and list(msg.ids) == list(range(len(names)))
    expected = class_map_layout(getattr(backend, "manifest", None))
    assert msg.model_name == expected["model_name"] and msg.anomaly_score == "msp"
    colours = np.array([[c.r, c.g, c.b, c.a] for c in msg.colors])
    if backend is ColourRuleBackend:
        np.testing.assert_allclose(colours[:, :3] * 255, np.array(CITYSCAPES_PALETTE), atol=1e-4)
    else:
        np.testing.assert_allclose(colours * 255, [[128, 64, 128, 255], [0, 0, 0, 255]], atol=1e-4)
    assert ClassMap.VOID_ID == 255 and ClassMap.ANOMALY_MASK_VALUE == 255


# --- vision_msgs stand-in --------------------------------------------------------------------------------------

STAND_IN_MSGS = {  # the vision_msgs 4.x definitions of the messages the node fills (comments dropped)
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                   "vision_msgs/BoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}
STAND_IN_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(vision_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} %s DEPENDENCIES std_msgs geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""
STAND_IN_PACKAGE = """<?xml version="1.0"?>
<package format="3">
  <name>vision_msgs</name><version>4.1.1</version><description>test stand-in</description>
  <maintainer email="t@t.invalid">t</maintainer><license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend><buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend><depend>geometry_msgs</depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def vision_msgs_prefix(tmp_path_factory) -> Path:
    """Build and install the stand-in vision_msgs package (rosidl + CMake, as colcon would) into a prefix."""
    if shutil.which("cmake") is None or not (ROS_PREFIX / "share" / "rosidl_default_generators").is_dir():
        pytest.skip("cmake or rosidl_default_generators (requirements-ros.txt / ros-<distro>-rosidl-default-"
                    "generators) is missing: the stand-in vision_msgs cannot be built")
    root = tmp_path_factory.mktemp("vision_msgs_ws")
    env = {**os.environ, "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [str(ROS_PREFIX),
                                                                            os.environ.get("AMENT_PREFIX_PATH")]))}
    if ROS_PREFIX == Path(sys.prefix):  # the pip wheels need their interpreter paths rewritten (docs/stack_notes.md §2)
        _run(["bash", str(REPO / "scripts" / "build_ros_interfaces.sh"), str(ROS_PREFIX), "--fix-wheels-only"],
             root, env)
    src = root / "src"
    (src / "msg").mkdir(parents=True)
    for name, text in STAND_IN_MSGS.items():
        (src / "msg" / f"{name}.msg").write_text(text)
    (src / "CMakeLists.txt").write_text(STAND_IN_CMAKE % " ".join(f"msg/{n}.msg" for n in STAND_IN_MSGS))
    (src / "package.xml").write_text(STAND_IN_PACKAGE)
    build, install = root / "build", root / "install"
    _run(["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={install}",
          f"-DCMAKE_PREFIX_PATH={ROS_PREFIX}", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"], root, env)
    _run(["cmake", "--build", str(build), "-j", "2"], root, env)
    _run(["cmake", "--install", str(build)], root, env)
    return install


PROBE = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np, rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray
    from dsa_perception.msg import ObstacleAlert
    from dsa_perception.node import DsaPerceptionNode
    from dsa_core.perception.testing import ColourRuleBackend, road_scene
    from node_harness import RELIABLE, RosHarness, encode_raw, wait_for

    harness = RosHarness(int(sys.argv[1]))
    node = DsaPerceptionNode(context=harness.context, backend_factory=lambda kind: ColourRuleBackend(),
                             parameter_overrides=[Parameter("cameras", value=["cam"]),
                                                  Parameter("backends", value=["onnxruntime"]),
                                                  Parameter("min_obstacle_area", value=20),
                                                  Parameter("debounce_frames", value=1)])
    harness.listen("/dsa_perception/cam/detections", Detection2DArray)
    harness.listen("/dsa_perception/cam/obstacles", ObstacleAlert)
    pub = harness.probe.create_publisher(Image, "/cam/image_raw", RELIABLE)
    harness.start(node)
    try:
        wait_for(lambda: pub.get_subscription_count() > 0, what="subscription")
        msg = encode_raw(road_scene(48, 64, (26, 34, 10, 6)), "rgb8")
        msg.header.stamp.sec, msg.header.frame_id = 42, "camera_cam_optical_frame"
        pub.publish(msg)
        arr = wait_for(lambda: harness.messages("/dsa_perception/cam/detections"), what="detections")[0]
        alert = wait_for(lambda: harness.messages("/dsa_perception/cam/obstacles"), what="alert")[0]
    finally:
        harness.close(node)
    d = arr.detections[0]
    o = alert.obstacles[0]
    print(json.dumps({
        "array_header": [arr.header.stamp.sec, arr.header.frame_id], "n": len(arr.detections),
        "det_header": [d.header.stamp.sec, d.header.frame_id], "id": d.id,
        "center": [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.theta],
        "size": [d.bbox.size_x, d.bbox.size_y], "class_id": d.results[0].hypothesis.class_id,
        "score": d.results[0].hypothesis.score, "cov0": float(d.results[0].pose.covariance[0]),
        "alert": {"track_id": o.track_id, "bbox": [o.bbox_x, o.bbox_y, o.bbox_width, o.bbox_height],
                  "score_max": o.score_max, "confirmed": o.confirmed}}))
""")


@pytest.mark.slow
def test_detections_are_published_with_a_stand_in_vision_msgs(vision_msgs_prefix: Path, tmp_path: Path) -> None:
    (site,) = {p.parent for p in vision_msgs_prefix.glob("lib/python3*/*-packages/vision_msgs")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(REPO / "test"),
                                                                     os.environ.get("PYTHONPATH")])),
           "LD_LIBRARY_PATH": os.pathsep.join([str(vision_msgs_prefix / "lib"), os.environ.get("LD_LIBRARY_PATH", "")]),
           "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [str(vision_msgs_prefix), str(ROS_PREFIX),
                                                              os.environ.get("AMENT_PREFIX_PATH")])),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "OMP_NUM_THREADS": "1"}
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = json.loads(_run([*python(), str(script), str(DOMAIN_ID + 1)], tmp_path, env, 180)
                     .strip().splitlines()[-1])
    alert = out["alert"]
    assert alert["confirmed"] and out["n"] == 1
    assert out["array_header"] == out["det_header"] == [42, "camera_cam_optical_frame"]
    x, y, w, h = alert["bbox"]
    assert out["id"] == str(alert["track_id"])
    assert out["center"] == [x + w / 2, y + h / 2, 0.0] and out["size"] == [w, h]
    assert out["class_id"] == ANOMALY_CLASS_ID and out["score"] == pytest.approx(alert["score_max"], rel=1e-6)
    assert out["cov0"] == -1.0  # no distance: the pose is unknown
