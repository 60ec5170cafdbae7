"""The import graph has no upward edges: dsa_core (ROS-free) never imports the ROS shell dsa_perception, and
dsa_core.export never imports dsa_core.runtime (a model is exported without the code that runs it).

Read statically with ast over every file, so function-level (lazy) imports count as much as module-level ones."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports anywhere in its body, relative imports resolved to absolute names."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _edges(package: str, forbidden: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        for module in sorted(_imports(path)):
            if module == forbidden or module.startswith(forbidden + "."):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_the_scan_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "dsa_core" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("import os\n"
                              "def f():\n    from dsa_perception.node import X\n"
                              "from ..runtime import base\n"
                              "from . import sibling\n")
    found = _imports(pkg / "m.py", tmp_path)
    assert {"os", "dsa_perception.node", "dsa_perception.node.X", "dsa_core.runtime", "dsa_core.runtime.base",
            "dsa_core.sub.sibling"} <= found


def test_dsa_core_never_imports_the_ros_shell() -> None:
    assert _edges("dsa_core", "dsa_perception") == []


def test_export_never_imports_runtime() -> None:
    assert _edges("dsa_core.export", "dsa_core.runtime") == []


def test_no_module_imports_rclpy_outside_the_ros_shell() -> None:
    assert _edges("dsa_core", "rclpy") == []
