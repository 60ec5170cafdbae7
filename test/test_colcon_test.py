"""`colcon test` runs tests: the package configured with BUILD_TESTING=ON registers the ROS-side pytest files with
ament_cmake_pytest, and ctest (what colcon test drives for an ament_cmake package) runs one of them against the
install, leaving the xunit result colcon reads.

colcon itself is not installed here; the build is the colcon-style one of test_ros_build.py (cmake configure, build,
install into a prefix), and the registered test runs with the environment `source install/setup.bash` would give.
"""
from __future__ import annotations

import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ros_workspace import PACKAGE, REPO, VENV, colcon_build, install_env, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ros,
    pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None, reason="no cmake / ctest"),
    pytest.mark.skipif(not (VENV / "share" / "ament_cmake_pytest").is_dir(),
                       reason="ament_cmake_pytest (requirements-ros.txt) is not installed in this environment"),
]


def _registered_in_cmake() -> list[str]:
    text = (REPO / "CMakeLists.txt").read_text()
    block = re.search(r"set\(DSA_COLCON_TESTS(.*?)\)", text, re.S)
    assert block, "CMakeLists.txt registers no colcon tests"
    return block.group(1).split()


@pytest.fixture(scope="module")
def build_with_tests(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    build, install = colcon_build(tmp_path_factory.mktemp("colcon_test_ws"), testing=True)
    run_env = install_env(install)
    return build, install, run_env


def test_build_testing_registers_every_ros_side_test_file(build_with_tests) -> None:
    build, _, env = build_with_tests
    listed = re.findall(r"Test\s+#\d+: (\S+)", run(["ctest", "-N"], build, env))
    expected = _registered_in_cmake()
    assert listed == expected
    assert all((REPO / "test" / f"{name}.py").is_file() for name in expected)
    # the registered files are the ones that need ROS but not torch (torch has no rosdep key)
    for name in expected:
        text = (REPO / "test" / f"{name}.py").read_text()
        assert "import torch" not in text and "sys.prefix) / \"lib\"" not in text, name


def test_ctest_runs_a_registered_file_against_the_install(build_with_tests) -> None:
    build, install, env = build_with_tests
    out = run(["ctest", "-R", "^test_lifecycle_node$", "--output-on-failure"], build, env, timeout=600)
    assert "100% tests passed" in out, out
    result = build / "test_results" / PACKAGE / "test_lifecycle_node.xunit.xml"
    suite = ET.parse(result).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert int(suite.get("tests")) >= 4 and int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    assert int(suite.get("skipped", 0)) == 0
    # the executables it drove were the install's, not the repository's venv copies
    where = run([sys.executable, "-c", "import ros_paths; print(ros_paths.executable('dsa_perception_node'))"],
                 REPO / "test", env).strip()
    assert where == str(install / "lib" / PACKAGE / "dsa_perception_node")


def test_the_installed_dsa_core_finds_the_installed_message_definitions(build_with_tests, tmp_path: Path) -> None:
    """`dsa synth bag` / `dsa bag-eval` of a colcon install read msg/ from share/dsa_perception/msg (there is no
    source checkout next to site-packages); found by running the registered files under ctest."""
    _, install, env = build_with_tests
    where = run([sys.executable, "-c", "from dsa_core.bags.messages import MSG_DIR; print(MSG_DIR)"], tmp_path,
                 {**env, "AMENT_PREFIX_PATH": ""}).strip()
    assert where == str(install / "share" / PACKAGE / "msg")
