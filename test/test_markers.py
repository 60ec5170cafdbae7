"""Every test that starts rclpy or the node carries the ``ros`` marker, so the inner loop
``pytest -m "not slow and not ros"`` (README, Tests) never starts ROS. Checked statically with ast over test/."""
from __future__ import annotations

import ast
import re
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent
#: What starting ROS looks like in a test body: rclpy itself, the node class, the node harness, the installed node
#: executable run by a helper, or bag-eval's live mode (which starts the node).
STARTS_ROS = re.compile(r"import rclpy|from rclpy|rclpy\.|RosHarness\(|DsaPerceptionNode\(|_run_node\(|\"--live\"")


def _marks(source: str, decorators: list[ast.expr]) -> set[str]:
    return {m for d in decorators for m in re.findall(r"pytest\.mark\.(\w+)", ast.get_source_segment(source, d))}


def unmarked_ros_tests(path: Path) -> list[str]:
    source = path.read_text()
    tree = ast.parse(source)
    file_marks: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            file_marks |= set(re.findall(r"pytest\.mark\.(\w+)", ast.get_source_segment(source, node.value)))
    if "ros" in file_marks:
        return []
    return [f"{path.name}::{node.name}" for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            and STARTS_ROS.search(ast.get_source_segment(source, node))
            and "ros" not in _marks(source, node.decorator_list)]


def test_the_check_sees_an_unmarked_ros_test(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_a():\n    import rclpy\n\n"
                                        "@pytest.mark.ros\ndef test_b():\n    import rclpy\n\ndef test_c():\n    pass\n")
    assert unmarked_ros_tests(tmp_path / "test_x.py") == ["test_x.py::test_a"]


def test_every_test_that_starts_ros_is_marked_ros() -> None:
    found = [name for path in sorted(TEST_DIR.glob("test_*.py")) if path.name != Path(__file__).name
             for name in unmarked_ros_tests(path)]
    assert found == []
