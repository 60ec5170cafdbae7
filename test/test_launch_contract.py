"""What the launch file, the config files and RViz layout pass to the node is what the node accepts.

launch / launch_ros cannot be installed here, so the launch file is read with `ast`: its executable is the
installed one and every argument maps onto a declared parameter. The config files are checked key by key against
the parameter table and then given to the real installed executable (separate process, real model exported from
a random-init dsa_nano, ONNX Runtime), which must accept them; a two-camera run answers frames on both cameras.
"""
from __future__ import annotations

import ast
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dsa_core.perception.params import CAMERA_PARAMS, NODE_PARAMS, spec_for

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "dsa.launch.py"
INSTALLED_EXE = Path(sys.prefix) / "lib" / "dsa_perception" / "dsa_perception_node"
DOMAIN_ID = 76
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass  # not a literal (substitutions)
    return out


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call: ast.Call, key: str, constants: dict[str, object]) -> object:
    for kw in call.keywords:
        if kw.arg == key:
            if isinstance(kw.value, ast.Name):
                return constants[kw.value.id]
            return ast.literal_eval(kw.value)
    raise KeyError(key)


def _declared_names() -> set[str]:
    return {p.name for p in NODE_PARAMS} | {"use_sim_time"}


def test_launch_file_passes_only_what_the_node_declares() -> None:
    tree = ast.parse(LAUNCH.read_text())
    constants = _module_constants(tree)
    nodes = {_kw(c, "package", constants): c for c in _calls(tree, "Node")}
    ours = nodes["dsa_perception"]
    assert _kw(ours, "executable", constants) == "dsa_perception_node" == INSTALLED_EXE.name
    assert _kw(ours, "name", constants) == "dsa_perception"
    # the executable is installed by CMake (ros2 run) and by setup.py (console script) under that name
    assert "install(PROGRAMS scripts/dsa_perception_node DESTINATION lib/${PROJECT_NAME})" in (REPO / "CMakeLists.txt").read_text()
    assert '"dsa_perception_node = dsa_perception.node:main"' in (REPO / "setup.py").read_text()
    assert os.access(REPO / "scripts" / "dsa_perception_node", os.X_OK)
    # every argument -> parameter mapping targets a declared parameter
    mapping = constants["ARG_TO_PARAM"]
    assert set(mapping.values()) <= _declared_names(), set(mapping.values()) - _declared_names()
    assert constants["CAMERA_TOPIC_PARAM"] in {p.name for p in CAMERA_PARAMS}
    # arguments: the required ones are declared, every LaunchConfiguration refers to a declared one
    declared_args = {a[0] for a in constants.get("ARGUMENTS", [])} or {
        ast.literal_eval(t.elts[0]) for t in ast.walk(tree)
        if isinstance(t, ast.Tuple) and t.elts and isinstance(t.elts[0], ast.Constant) and isinstance(t.elts[0].value, str)}
    assert {"params_file", "model_dir", "backend", "camera_topics", "use_sim_time", "build_only", "rviz"} <= declared_args
    used = {ast.literal_eval(c.args[0]) for c in _calls(tree, "LaunchConfiguration") if c.args and isinstance(c.args[0], ast.Constant)}
    assert used <= declared_args, used - declared_args
    assert set(mapping) <= declared_args
    # files referenced by the launch file exist in config/
    referenced = {c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                  and c.value.endswith((".yaml", ".rviz")) and " " not in c.value}
    assert {"dsa.yaml", "dsa.rviz"} <= referenced and all((REPO / "config" / f).exists() for f in referenced)


def _flatten(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else k, v))
        return out
    return {prefix: value}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_keys_are_declared_parameters(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"] and list(doc["/**"]) == ["ros__parameters"]
    params = _flatten("", doc["/**"]["ros__parameters"])
    unknown = [k for k in params if k != "use_sim_time" and spec_for(k) is None]
    assert not unknown, unknown
    cameras = params.get("cameras", ["front"])
    for key in params:
        if key.startswith("camera."):
            assert key.split(".")[1] in cameras, f"{key}: camera not in cameras {cameras}"


def test_default_config_equals_the_declared_defaults() -> None:
    params = _flatten("", yaml.safe_load((REPO / "config" / "dsa.yaml").read_text())["/**"]["ros__parameters"])
    for spec in NODE_PARAMS:
        if isinstance(spec.default, float) and math.isnan(spec.default):  # NaN = unset, and NaN != NaN
            assert isinstance(params[spec.name], float) and math.isnan(params[spec.name]), spec.name
        else:
            assert params[spec.name] == spec.default, spec.name
    for spec in CAMERA_PARAMS:
        assert params[f"camera.front.{spec.name}"] == spec.default, spec.name


def test_rviz_layout_shows_topics_the_node_publishes() -> None:
    rviz = yaml.safe_load((REPO / "config" / "dsa.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    topics = {d["Class"].split("/")[-1]: d["Topic"]["Value"] for d in displays if "Topic" in d}
    node_outputs = {f"/dsa_perception/front/{t}" for t in ("overlay", "anomaly_mask", "semantic_color", "markers")}
    assert set(topics.values()) <= node_outputs and {"Image", "MarkerArray"} <= set(topics)


# --- the real installed executable ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(exported_nano) -> Path:
    return exported_nano.model_dir


def _env() -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "PYTHONUNBUFFERED": "1",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def _run_node(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", str(INSTALLED_EXE), "--ros-args", *args], env=_env(),
                          capture_output=True, text=True, timeout=timeout, cwd="/")


CPU_ARGS = ["-p", "device:=cpu", "-p", "precision:=fp32", "-p", "inference_threads:=1"]


@pytest.mark.ros
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_installed_node_accepts_each_config_file(path: Path, model_dir: Path) -> None:
    proc = _run_node(["--params-file", str(path), "-p", f"model_dir:={model_dir}", *CPU_ARGS, "-p", "build_only:=true"])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "build_only: backend onnxruntime is ready" in log  # tensorrt (first preference) reported unavailable
    assert "backend tensorrt unavailable" in log


@pytest.mark.ros
def test_installed_node_refuses_an_invalid_config(tmp_path: Path, model_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    drivable_classes: [0, 400]\n")
    proc = _run_node(["--params-file", str(bad), "-p", f"model_dir:={model_dir}", "-p", "build_only:=true"])
    assert proc.returncode != 0 and "drivable_classes" in proc.stdout + proc.stderr


@pytest.mark.ros
def test_two_camera_vehicle_config_answers_both_cameras_with_the_real_model(model_dir: Path, tmp_path: Path) -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import CompressedImage, Image

    from dsa_core.runtime.operating_point import write_operating_point
    from dsa_perception.msg import ObstacleAlert
    from node_harness import RELIABLE, encode_compressed, encode_raw, stop_node_process

    # the vehicle file leaves threshold and minimum area unset: the node must take the model's calibrated values.
    # A copy: the session's exported model is shared with other tests, which check its manifest.
    model_dir = Path(shutil.copytree(model_dir, tmp_path / "model"))
    write_operating_point(model_dir, {"anomaly_threshold": 0.375, "min_obstacle_area_fraction": 0.01})
    node_proc = subprocess.Popen(
        [sys.executable, "-P", str(INSTALLED_EXE), "--ros-args", "--params-file",
         str(REPO / "config" / "vehicle_two_cameras.yaml"), "-p", f"model_dir:={model_dir}", *CPU_ARGS,
         "-p", "backends:=[onnxruntime]"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd="/")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    probe = Node("contract_probe", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(probe)
    got: dict[str, dict[int, object]] = {"front": {}, "rear": {}}
    sem: dict[str, dict[int, object]] = {"front": {}, "rear": {}}
    for cam in got:
        probe.create_subscription(ObstacleAlert, f"/dsa_perception/{cam}/obstacles",
                                  lambda m, c=cam: got[c].__setitem__(m.header.stamp.sec, m), RELIABLE)
        probe.create_subscription(Image, f"/dsa_perception/{cam}/semantic",
                                  lambda m, c=cam: sem[c].__setitem__(m.header.stamp.sec, m), RELIABLE)
    front = probe.create_publisher(Image, "/sensing/camera/front/image_raw", RELIABLE)
    rear = probe.create_publisher(CompressedImage, "/sensing/camera/rear/image_raw/compressed", RELIABLE)
    try:
        deadline = time.monotonic() + 90
        while not (front.get_subscription_count() and rear.get_subscription_count()):
            assert node_proc.poll() is None, node_proc.stdout.read()
            assert time.monotonic() < deadline, "node did not subscribe"
            executor.spin_once(timeout_sec=0.1)
        rng = np.random.default_rng(0)
        for sec in (1, 2):
            img = rng.integers(0, 256, (72, 128, 3), dtype=np.uint8)
            f, r = encode_raw(img, "bgr8"), encode_compressed(img, "jpeg")
            for m, fid in ((f, "front_optical"), (r, "rear_optical")):
                m.header.stamp.sec, m.header.frame_id = sec, fid
            front.publish(f)
            rear.publish(r)
            deadline = time.monotonic() + 30
            while not all(sec in got[c] and sec in sem[c] for c in got):
                assert node_proc.poll() is None, node_proc.stdout.read()
                assert time.monotonic() < deadline, f"no answer for frame {sec}: {got}"
                executor.spin_once(timeout_sec=0.05)
        for cam, fid in (("front", "front_optical"), ("rear", "rear_optical")):
            a, s = got[cam][2], sem[cam][2]
            assert a.header.frame_id == s.header.frame_id == fid and (s.width, s.height) == (128, 72)
            assert max(np.frombuffer(bytes(s.data), np.uint8)) < 19  # train ids from the real model
            assert a.anomaly_threshold == 0.375 and a.min_area_pixels == math.ceil(0.01 * 72 * 128)  # manifest
    finally:
        out = stop_node_process(node_proc, executor, probe, ctx)
    assert "Traceback" not in out, out
