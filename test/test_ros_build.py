"""The ROS 2 package build: CMakeLists.txt against the pip ROS 2 wheels, the way colcon drives it.

colcon builds an ament_cmake package with `cmake <src> -B build/<pkg> -DCMAKE_INSTALL_PREFIX=install/<pkg>`,
`cmake --build`, `cmake --install`; this test does the same into a temporary prefix and checks the installed
layout and the generated message classes (in a fresh interpreter that only sees that install).
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ros_workspace import PACKAGE, REPO, VENV, colcon_build, install_env, run, site_packages

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ros,
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed"),
    pytest.mark.skipif(
        not (VENV / "share" / "rosidl_default_generators").is_dir(),
        reason="the ROS 2 build wheels (requirements-ros.txt) are not installed in this environment",
    ),
]


@pytest.fixture(scope="module")
def install_prefix(tmp_path_factory) -> Path:
    return colcon_build(tmp_path_factory.mktemp("colcon_ws"), testing=False)[1]


def _repo_files(folder: str) -> set[str]:
    return {p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()}


def test_node_executable_is_installed_for_ros2run(install_prefix: Path) -> None:
    executable = install_prefix / "lib" / PACKAGE / "dsa_perception_node"
    assert executable.is_file() and os.access(executable, os.X_OK)
    tree = ast.parse(executable.read_text())
    imports = [(node.module, [a.name for a in node.names]) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert ("dsa_perception.node", ["main"]) in imports
    assert executable.read_text().startswith("#!")


def test_share_holds_package_xml_launch_and_config(install_prefix: Path) -> None:
    share = install_prefix / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    for folder in ("launch", "config"):
        installed = {p.relative_to(share / folder).as_posix() for p in (share / folder).rglob("*") if p.is_file()}
        assert installed == _repo_files(folder), folder
        assert installed, f"{folder}/ is empty"
    assert {p.name for p in (share / "msg").glob("*.msg")} == {p.name for p in (REPO / "msg").glob("*.msg")}


def test_ament_index_registers_package_and_interfaces(install_prefix: Path) -> None:
    index = install_prefix / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / PACKAGE).is_file()
    interfaces = (index / "rosidl_interfaces" / PACKAGE).read_text().split()
    for msg in (REPO / "msg").glob("*.msg"):
        assert f"msg/{msg.name}" in interfaces


def test_python_packages_are_merged_with_the_generated_messages(install_prefix: Path) -> None:
    site = site_packages(install_prefix)
    package = site / PACKAGE
    for name in ("_obstacle.py", "_obstacle_alert.py", "__init__.py"):
        assert (package / "msg" / name).is_file(), name
    assert list(package.glob("dsa_perception_s__rosidl_typesupport_c*.so"))
    # our sources sit next to the generated code, and our __init__.py wins over the generated empty one
    # (names only: other files may be edited while this runs)
    assert {p.name for p in (REPO / PACKAGE).glob("*.py")} <= {p.name for p in package.glob("*.py")}
    assert (package / "__init__.py").read_bytes() == (REPO / PACKAGE / "__init__.py").read_bytes()
    assert (site / "dsa_core" / "__init__.py").read_bytes() == (REPO / "dsa_core" / "__init__.py").read_bytes()
    assert (site / "dsa_core" / "ops" / "ms_deform_attn.py").is_file()
    assert list((install_prefix / "lib").glob(f"lib{PACKAGE}__rosidl_typesupport_c.so"))


CHECK_INSTALL = textwrap.dedent(
    """
    import math, sys
    from pathlib import Path
    import numpy as np
    prefix = Path(sys.argv[1])
    import dsa_perception, dsa_perception.model_location
    from dsa_perception.msg import Obstacle, ObstacleAlert
    assert Path(dsa_perception.__file__).is_relative_to(prefix), dsa_perception.__file__
    from ament_index_python.packages import get_package_share_directory
    assert Path(get_package_share_directory("dsa_perception")) == prefix / "share" / "dsa_perception"
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import Header

    assert ObstacleAlert.SEVERITY_NONE < ObstacleAlert.SEVERITY_INFO < ObstacleAlert.SEVERITY_WARNING
    assert ObstacleAlert.SEVERITY_WARNING < ObstacleAlert.SEVERITY_CRITICAL
    assert Obstacle.DISTANCE_SOURCE_NONE != Obstacle.DISTANCE_SOURCE_FLAT_GROUND
    near = Obstacle(track_id=7, age_frames=4, bbox_x=10, bbox_y=20, bbox_width=30, bbox_height=15, pixel_area=321,
                    area_fraction=0.01, score_max=0.9, score_mean=0.6, drivable_fraction=0.75, distance_m=12.5,
                    distance_source=Obstacle.DISTANCE_SOURCE_FLAT_GROUND,
                    severity=ObstacleAlert.SEVERITY_WARNING, confirmed=True)
    near.first_seen.sec = 99
    near.ground_point.x, near.ground_point.z = 0.5, 12.4
    unknown = Obstacle(track_id=8, distance_m=float("nan"), distance_source=Obstacle.DISTANCE_SOURCE_NONE)
    header = Header(frame_id="front_optical")
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123
    alert = ObstacleAlert(header=header, camera_name="front", severity=ObstacleAlert.SEVERITY_WARNING,
                          most_severe_track_id=7, nearest_distance_m=12.5, image_width=640, image_height=480,
                          anomaly_threshold=0.5, min_area_pixels=50, frame_index=2**40, obstacles=[near, unknown])
    back = deserialize_message(serialize_message(alert), ObstacleAlert)
    assert back.header.frame_id == "front_optical" and back.header.stamp.nanosec == 123
    assert (back.camera_name, back.frame_index, back.most_severe_track_id) == ("front", 2**40, 7)
    assert len(back.obstacles) == 2
    got = back.obstacles[0]
    for field in ("track_id", "age_frames", "bbox_x", "bbox_y", "bbox_width", "bbox_height", "pixel_area",
                  "distance_source", "severity", "confirmed"):
        assert getattr(got, field) == getattr(near, field), field
    for field in ("area_fraction", "score_max", "score_mean", "drivable_fraction", "distance_m"):
        assert getattr(got, field) == np.float32(getattr(near, field)), field
    assert got.first_seen.sec == 99 and got.ground_point.z == 12.4
    assert math.isnan(back.obstacles[1].distance_m)

    # An independent implementation (rosbags, used by the bag tools) reads the same CDR bytes from the .msg text,
    # and computes the same type hashes as rosidl did.
    import json
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    store = get_typestore(Stores.LATEST)
    types = {}
    for name in ("Obstacle", "ObstacleAlert"):
        text = (prefix / "share" / "dsa_perception" / "msg" / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"dsa_perception/msg/{name}"))
    store.register(types)
    for name in ("Obstacle", "ObstacleAlert"):
        described = json.loads((prefix / "share" / "dsa_perception" / "msg" / f"{name}.json").read_text())
        rosidl_hash = {h["type_name"]: h["hash_string"] for h in described["type_hashes"]}[f"dsa_perception/msg/{name}"]
        assert store.hash_rihs01(f"dsa_perception/msg/{name}") == rosidl_hash, name
    other = store.deserialize_cdr(bytes(serialize_message(alert)), "dsa_perception/msg/ObstacleAlert")
    assert (other.camera_name, other.header.frame_id, other.frame_index) == ("front", "front_optical", 2**40)
    assert other.obstacles[0].track_id == 7 and other.obstacles[0].bbox_height == 15 and other.obstacles[0].confirmed
    assert other.obstacles[0].ground_point.z == 12.4 and math.isnan(other.obstacles[1].distance_m)
    print("ok")
    """
)


def test_generated_messages_round_trip_through_rclpy_serialization(install_prefix: Path, tmp_path: Path) -> None:
    env = install_env(install_prefix)
    script = tmp_path / "check_install.py"
    script.write_text(CHECK_INSTALL)
    # cwd outside the repository: there `import dsa_perception` would find the source tree first
    out = run([sys.executable, str(script), str(install_prefix)], cwd=tmp_path, env=env, timeout=120)
    assert out.strip().endswith("ok")


def test_venv_build_makes_sources_and_messages_importable(tmp_path: Path) -> None:
    """scripts/build_ros_interfaces.sh: the venv's dsa_perception holds msg/ plus symlinks to the sources."""
    run(["bash", str(REPO / "scripts" / "build_ros_interfaces.sh"), str(VENV)], cwd=tmp_path)
    code = (
        "import os, dsa_perception.model_location as c, dsa_core; from dsa_perception.msg import ObstacleAlert; "
        "print(os.path.realpath(c.__file__)); print(os.path.realpath(dsa_core.__file__)); print(ObstacleAlert().severity)"
    )
    for cwd, flags in ((tmp_path, []), (REPO, ["-P"])):  # -P: the repository root is not put on sys.path
        lines = run([sys.executable, *flags, "-c", code], cwd=cwd).split()
        assert lines == [
            str(REPO / PACKAGE / "model_location.py"),  # live source, not a stale copy
            str(REPO / "dsa_core" / "__init__.py"),  # from the editable install
            "0",
        ], cwd


def _install_env(install_prefix: Path) -> dict[str, str]:
    return install_env(install_prefix, ROS_DOMAIN_ID="71", OMP_NUM_THREADS="1")


def test_install_has_the_dsa_cli_and_the_default_model(install_prefix: Path, tmp_path: Path) -> None:
    for exe in (install_prefix / "bin" / "dsa", install_prefix / "lib" / PACKAGE / "dsa"):
        assert exe.is_file() and os.access(exe, os.X_OK), exe
    out = run([sys.executable, str(install_prefix / "bin" / "dsa"), "--help"], cwd=tmp_path,
               env=_install_env(install_prefix), timeout=120)
    assert "export" in out and "bag-eval" in out
    model = install_prefix / "share" / PACKAGE / "models" / "dsa_nano"
    assert (model / "manifest.json").is_file()
    assert {p.name for p in model.iterdir()} == {p.name for p in (REPO / "models" / "dsa_nano").iterdir()}


def test_installed_node_without_model_dir_uses_the_installed_default_model(install_prefix: Path,
                                                                           tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(install_prefix / "lib" / PACKAGE / "dsa_perception_node"), "--ros-args",
         "-p", "backends:=[onnxruntime]", "-p", "inference_threads:=1", "-p", "build_only:=true"],
        cwd=tmp_path, env=_install_env(install_prefix), capture_output=True, text=True, timeout=180)
    log = proc.stdout + proc.stderr
    default = install_prefix / "share" / PACKAGE / "models" / "dsa_nano"
    assert proc.returncode == 0, log
    assert f"model_dir is empty: using the default model {default}" in log, log
    assert "build_only: backend onnxruntime is ready" in log
