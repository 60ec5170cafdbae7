"""One code base for Humble, Jazzy and Kilted (issue 14).

* The node runs its real tests with the rclpy Node methods that Humble lacks removed (test/humble_surface.py).
* Every Python file parses as Python 3.10 (Humble's) and uses no standard-library name newer than 3.10.
* The codec, pipeline and obstacle tests run in a venv with each distro's Python, numpy, OpenCV, Pillow and SciPy
  (scripts/compat_env.sh), and every file compiles there with the real 3.10 interpreter.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "build", "install", "log", "__pycache__", ".git", "runs", "data", "demo_output", "models",
             "results", "work_dirs", ".torch_extensions"}

# Standard-library names that Python 3.11+ added and that code could reach for (module -> names; "" = builtins).
NEWER_THAN_310 = {
    "tomllib": None, "wsgiref.types": None,  # whole modules
    "typing": {"Self", "LiteralString", "Never", "assert_never", "assert_type", "reveal_type", "TypeVarTuple",
               "Unpack", "Required", "NotRequired", "dataclass_transform", "override", "get_overloads",
               "clear_overloads", "TypeAliasType", "ReadOnly", "TypeIs"},
    "enum": {"StrEnum", "ReprEnum", "verify", "member", "nonmember", "global_enum", "EnumCheck", "FlagBoundary"},
    "datetime": {"UTC"},
    "asyncio": {"TaskGroup", "timeout", "Runner", "Barrier"},
    "hashlib": {"file_digest"},
    "contextlib": {"chdir"},
    "itertools": {"batched"},
    "math": {"cbrt", "exp2", "sumprod"},
    "operator": {"call"},
    "": {"ExceptionGroup", "BaseExceptionGroup"},
}


def python_files() -> list[Path]:
    """Every Python source of the repository: *.py plus the python scripts without suffix."""
    out = []
    for path in REPO.rglob("*"):
        if any(part in SKIP_DIRS or part.startswith(".venv") for part in path.relative_to(REPO).parts[:-1]):
            continue
        if path.is_file() and (path.suffix == ".py" or (path.suffix == "" and path.parent.name == "scripts"
                                                        and path.read_bytes()[:40].startswith(b"#!/usr/bin/env python"))):
            out.append(path)
    return sorted(out)


def py310_problems(source: str, name: str = "<source>") -> list[str]:
    """Why ``source`` would not run on Python 3.10: grammar newer than 3.10, or a standard-library name from 3.11+."""
    try:
        tree = ast.parse(source, name, feature_version=(3, 10))
    except SyntaxError as exc:
        return [f"{name}:{exc.lineno}: {exc.msg} (Python 3.10 grammar)"]
    problems = []
    aliases: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in NEWER_THAN_310 and NEWER_THAN_310[a.name] is None:
                    problems.append(f"{name}:{node.lineno}: module {a.name} is new in Python 3.11+")
                aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            newer = NEWER_THAN_310.get(node.module, set())
            if newer is None:
                problems.append(f"{name}:{node.lineno}: module {node.module} is new in Python 3.11+")
                continue
            problems += [f"{name}:{node.lineno}: {node.module}.{a.name} is new in Python 3.11+"
                         for a in node.names if a.name in newer]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr in (NEWER_THAN_310.get(module) or set()):
                problems.append(f"{name}:{node.lineno}: {module}.{node.attr} is new in Python 3.11+")
        elif isinstance(node, ast.Name) and node.id in NEWER_THAN_310[""]:
            problems.append(f"{name}:{node.lineno}: builtin {node.id} is new in Python 3.11+")
    return problems


def test_the_310_check_finds_newer_grammar_and_names() -> None:
    assert py310_problems("try:\n    pass\nexcept* ValueError:\n    pass\n")  # exception groups: 3.11 grammar
    assert py310_problems("from typing import Self\n")
    assert py310_problems("import datetime\nx = datetime.UTC\n")
    assert py310_problems("import tomllib\n")
    assert py310_problems("raise ExceptionGroup('x', [ValueError()])\n")
    assert not py310_problems("match x:\n    case 1:\n        pass\n")  # 3.10 has match
    assert not py310_problems("from typing import TypeAlias\nimport datetime\nx = datetime.timezone.utc\n")


def test_every_python_file_is_python_310() -> None:
    files = python_files()
    assert len(files) > 100 and REPO / "dsa_perception" / "node.py" in files
    assert REPO / "scripts" / "dsa_perception_node" in files
    problems = [p for f in files for p in py310_problems(f.read_text(), str(f.relative_to(REPO)))]
    assert not problems, "\n".join(problems)


@pytest.mark.ros
@pytest.mark.slow
def test_node_tests_pass_on_the_humble_rclpy_surface() -> None:
    """test_node.py's start-up, every-encoding and run-time-parameter tests, in a process whose rclpy Node has no
    add_post_set_parameters_callback (and the other post-Humble methods)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "test"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-p", "humble_surface", "-p", "no:cacheprovider",
         str(REPO / "test" / "test_node.py"), "-k", "run_time_parameters or every_encoding or invalid_start"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "removed rclpy Node.add_pre_set_parameters_callback, Node.add_post_set_parameters_callback" in out, out
    assert proc.returncode == 0 and "3 passed" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_codec_pipeline_and_obstacles_on_the_distro_python_stack(distro: str) -> None:
    """Builds (or reuses) .venv-compat-<distro> with scripts/compat_env.sh and runs the codec, pipeline and
    obstacle tests there with the repository on PYTHONPATH (the ROS-message cases skip: no rclpy there)."""
    made = subprocess.run(["bash", str(REPO / "scripts" / "compat_env.sh"), distro], capture_output=True, text=True,
                          timeout=900)
    if made.returncode == 3:
        pytest.skip(made.stderr.strip())
    assert made.returncode == 0, made.stderr
    python = Path(made.stdout.strip().splitlines()[-1]) / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    versions = subprocess.run([str(python), "-c", "import sys, numpy, cv2, PIL; print(sys.version_info[:2], "
                               "numpy.__version__, cv2.__version__, PIL.__version__)"],
                              env=env, capture_output=True, text=True, check=True).stdout
    expected = {"humble": "(3, 10) 1.21.5 4.5.4 9.0.1", "jazzy": "(3, 12) 1.26.4 4.6.0 10.2.0"}[distro]
    assert versions.strip() == expected
    if distro == "humble":  # the real 3.10 compiler over every file (catches what ast's feature_version misses)
        compiled = subprocess.run([str(python), "-c", "import sys\nfor f in sys.argv[1:]:\n"
                                   "    compile(open(f, encoding='utf-8').read(), f, 'exec')",
                                   *map(str, python_files())], env=env, capture_output=True, text=True)
        assert compiled.returncode == 0, compiled.stderr
    proc = subprocess.run([str(python), "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-q",
                           "test/test_image_codec.py", "test/test_pipeline.py", "test/test_obstacles.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and " passed" in out and "failed" not in out, out
