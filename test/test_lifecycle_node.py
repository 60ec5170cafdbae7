"""The lifecycle variant through real lifecycle service calls (lifecycle_msgs ChangeState / GetState over DDS):
configure loads the backend, activate subscribes and publishes, deactivate stops publishing and keeps the backend,
activate again answers at once; a configure that cannot load fails and leaves the node unconfigured. The installed
executable is driven the same way from another process, on the shipped model."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from dsa_perception.lifecycle_node import DsaPerceptionLifecycleNode
from dsa_perception.msg import ObstacleAlert
from dsa_core.perception.testing import ColourRuleBackend, road_scene
from node_harness import RELIABLE, RosHarness, encode_raw, wait_for, with_stamp
from ros_paths import executable, python

pytestmark = pytest.mark.ros

# Own harness and domain, not conftest.py's session ``ros_harness``: `colcon test` runs this file with
# --noconftest (conftest.py imports torch, which has no rosdep key), where that fixture does not exist.
DOMAIN_ID = 84
H, W = 48, 64
NAME = "/dsa_perception"


class CountingFactory:
    """Every backend creation is counted: deactivate/activate must not create another one."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def __call__(self, kind: str):
        self.created.append(kind)
        return ColourRuleBackend()


def _call(harness: RosHarness, srv_type, name: str, request):
    client = harness.probe.create_client(srv_type, name)
    try:
        wait_for(lambda: client.wait_for_service(timeout_sec=0.1), what=f"service {name}")
        future = client.call_async(request)
        wait_for(future.done, timeout=60, what=f"answer of {name}")
        return future.result()
    finally:
        harness.probe.destroy_client(client)


def _transition(harness: RosHarness, transition_id: int) -> bool:
    return _call(harness, ChangeState, f"{NAME}/change_state",
                 ChangeState.Request(transition=Transition(id=transition_id))).success


def _state(harness: RosHarness) -> int:
    return _call(harness, GetState, f"{NAME}/get_state", GetState.Request()).current_state.id


def test_configure_activate_deactivate_activate_cleanup_through_the_services() -> None:
    harness = RosHarness(DOMAIN_ID)
    factory = CountingFactory()
    node = DsaPerceptionLifecycleNode(context=harness.context, backend_factory=factory, parameter_overrides=[
        Parameter("cameras", value=["cam"]), Parameter("backends", value=["onnxruntime"]),
        Parameter("min_obstacle_area", value=20)])
    pub = harness.probe.create_publisher(Image, "/cam/image_raw", RELIABLE)
    harness.listen(f"{NAME}/cam/obstacles", ObstacleAlert)
    harness.start(node)
    stamp = iter(range(1, 1000))

    def send() -> int:
        sec = next(stamp)
        msg = encode_raw(road_scene(H, W, (26, 34, 10, 6)), "rgb8")
        msg.header.stamp.sec = sec
        pub.publish(msg)
        return sec

    try:
        assert _state(harness) == State.PRIMARY_STATE_UNCONFIGURED
        assert not node.loaded and factory.created == [] and pub.get_subscription_count() == 0
        assert _transition(harness, Transition.TRANSITION_CONFIGURE)
        assert _state(harness) == State.PRIMARY_STATE_INACTIVE and node.loaded and factory.created == ["onnxruntime"]
        time.sleep(0.3)
        assert pub.get_subscription_count() == 0  # inactive: nothing subscribed, nothing published

        assert _transition(harness, Transition.TRANSITION_ACTIVATE)
        assert _state(harness) == State.PRIMARY_STATE_ACTIVE
        wait_for(lambda: pub.get_subscription_count() > 0, what="the camera subscription")
        sec = send()
        alert = wait_for(lambda: with_stamp(harness.messages(f"{NAME}/cam/obstacles"), sec), what="an answer")
        assert alert.camera_name == "cam" and alert.obstacles

        assert _transition(harness, Transition.TRANSITION_DEACTIVATE)
        assert _state(harness) == State.PRIMARY_STATE_INACTIVE and node.loaded
        wait_for(lambda: pub.get_subscription_count() == 0, what="the subscription to go")
        before = len(harness.messages(f"{NAME}/cam/obstacles"))
        send()
        time.sleep(1.0)
        assert len(harness.messages(f"{NAME}/cam/obstacles")) == before  # no output while inactive

        assert _transition(harness, Transition.TRANSITION_ACTIVATE)  # no reload: the backend stayed
        wait_for(lambda: pub.get_subscription_count() > 0, what="the subscription again")
        sec = send()
        wait_for(lambda: with_stamp(harness.messages(f"{NAME}/cam/obstacles"), sec), what="an answer again")
        assert factory.created == ["onnxruntime"]

        assert _transition(harness, Transition.TRANSITION_DEACTIVATE)
        assert _transition(harness, Transition.TRANSITION_CLEANUP)
        assert _state(harness) == State.PRIMARY_STATE_UNCONFIGURED and not node.loaded
        assert _transition(harness, Transition.TRANSITION_CONFIGURE)  # a second configure loads again
        assert factory.created == ["onnxruntime", "onnxruntime"]
    finally:
        harness.close(node)


def test_a_configure_that_cannot_load_fails_and_stays_unconfigured(tmp_path: Path, capfd) -> None:
    harness = RosHarness(DOMAIN_ID + 1)
    node = DsaPerceptionLifecycleNode(context=harness.context, parameter_overrides=[
        Parameter("model_dir", value=str(tmp_path / "missing"))])
    harness.start(node)
    try:
        assert not _transition(harness, Transition.TRANSITION_CONFIGURE)
        assert _state(harness) == State.PRIMARY_STATE_UNCONFIGURED and not node.loaded
    finally:
        harness.close(node)
    assert f"configure failed: parameter model_dir: {tmp_path / 'missing'} does not exist" in capfd.readouterr().err


def test_installed_lifecycle_executable_on_the_shipped_model() -> None:
    exe = executable("dsa_perception_lifecycle_node")
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID + 2), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*python(), str(exe), "--ros-args", "-p", "backends:=[onnxruntime]",
                             "-p", "inference_threads:=1"], env=env, cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    harness = RosHarness(DOMAIN_ID + 2)
    pub = harness.probe.create_publisher(Image, "/front/image_raw", RELIABLE)
    harness.listen(f"{NAME}/front/obstacles", ObstacleAlert)
    harness.spin()  # the probe only
    try:
        assert _state(harness) == State.PRIMARY_STATE_UNCONFIGURED
        assert _transition(harness, Transition.TRANSITION_CONFIGURE)
        assert _transition(harness, Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: pub.get_subscription_count() > 0, timeout=30, what="the node's subscription")
        msg = encode_raw(road_scene(256, 512), "rgb8")
        msg.header.stamp.sec = 7
        pub.publish(msg)
        alert = wait_for(lambda: with_stamp(harness.messages(f"{NAME}/front/obstacles"), 7), timeout=60,
                         what="the answer to a frame")
        assert (alert.image_width, alert.image_height) == (512, 256)
        assert _transition(harness, Transition.TRANSITION_DEACTIVATE)
        assert _state(harness) == State.PRIMARY_STATE_INACTIVE
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        harness.close()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert out.count("running backend onnxruntime") == 1, out


def test_launch_file_starts_the_lifecycle_executable_with_lifecycle_true() -> None:
    """launch_ros cannot be installed here: the launch file is read with ast. Humble's launch_ros LifecycleNode
    requires `namespace`, so it is passed."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    tree = ast.parse((repo / "launch" / "dsa.launch.py").read_text())
    consts = {n.targets[0].id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.value, ast.Constant) and isinstance(n.targets[0], ast.Name)}
    (call,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "LifecycleNode"]
    kw = {k.arg: k.value for k in call.keywords}
    assert consts[kw["executable"].id] == "dsa_perception_lifecycle_node"
    assert ast.literal_eval(kw["name"]) == "dsa_perception" and ast.literal_eval(kw["namespace"]) == ""
    args = {ast.literal_eval(t.elts[0]) for t in ast.walk(tree) if isinstance(t, ast.Tuple) and t.elts
            and isinstance(t.elts[0], ast.Constant) and isinstance(t.elts[0].value, str)}
    assert "lifecycle" in args
    assert "install(PROGRAMS scripts/dsa_perception_lifecycle_node DESTINATION lib/${PROJECT_NAME})" in (
        repo / "CMakeLists.txt").read_text()
    assert '"dsa_perception_lifecycle_node = dsa_perception.lifecycle_node:main"' in (repo / "setup.py").read_text()
    assert os.access(executable("dsa_perception_lifecycle_node"), os.X_OK)


@pytest.mark.slow
def test_lifecycle_node_on_the_humble_rclpy_surface() -> None:
    """The two in-process lifecycle tests again, in a process whose rclpy Node lacks the post-Humble methods
    (test/humble_surface.py; rclpy.lifecycle itself exists from Humble on, with the same Node / State /
    TransitionCallbackReturn names this module imports)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*python(), "-m", "pytest", "-p", "humble_surface", "-p", "no:cacheprovider", __file__,
                           "-k", "through_the_services or cannot_load"],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "removed rclpy Node.add_pre_set_parameters_callback, Node.add_post_set_parameters_callback" in out, out
    assert proc.returncode == 0 and "2 passed" in out, out
