"""Every document the repository cites must be in the repository, and every cited section must exist.

Why: code and docs explain themselves by pointing at design notes (``docs/design.md §3.7``). A pointer to a file
that only existed on the author's machine, or to a section that was renumbered away, leaves a reader stranded.
The scan covers the repository's own text files (tracked and untracked, minus what git ignores: .venv, build
output, data, runs). Rules:

1. ``X.md §N`` (also ``§N-§M``, ``§N, §M``, ``[X.md](X.md) §N``): X.md resolves from the citing file's folder or the
   repository root, and has a Markdown heading numbered N.
2. The reference notes (design, model, evaluation, stack, ROS) are cited by file name with ``.md``, and that file
   must resolve; the shared design text and reference folder outside the repository are never cited.
3. A path-like ``a/b.md`` whose first folder is a top-level folder of the repository must exist.
4. Relative Markdown links ``[text](target)`` in ``.md`` files must exist.
5. Every repository path in ``docs/design.md`` (its "where is it implemented" table) must exist.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".txt", ".xml", ".cfg", ".msg"}
SKIP_DIRS = {".git", ".venv", "build", "install", "log", "data", "runs", "demo_output", "work_dirs", "__pycache__",
             ".pytest_cache", ".torch_extensions", "node_modules"}
# Upstream files cited by their own repository's path (``docs/operators.md`` of onnx/onnx-tensorrt): allowed when
# the upstream repository is named on the same line.
UPSTREAM = {"docs/operators.md": "onnx/onnx-tensorrt"}
NOTE_STEMS = ("model_reference", "eval_reference", "stack_notes", "ros_reference")
# Material outside the repository (the team's design notes and references): users do not have it, so nothing may
# point there. Spelled in parts so that this guard does not itself contain such a path.
_OUTSIDE = "sha" + "red"
FORBIDDEN = (re.compile(r"\bDES" + r"IGN\.md\b"), re.compile(_OUTSIDE + r"/reference\b"),
             re.compile(r"\.\./" + _OUTSIDE + "/"))

SECTION = r"§\s*\d+(?:\.\d+)*(?:\s*[-–]\s*§?\s*\d+(?:\.\d+)*)?"
CITATION = re.compile(
    r"(?P<path>[\w./-]*[\w-]\.md)[`)\]]*\s*(?P<sections>" + SECTION + r"(?:\s*(?:,|;|/|and|or)\s*" + SECTION + r")*)")
PATH_MD = re.compile(r"(?<![\w./:-])(?P<path>(?:[\w.-]+/)+[\w.-]+\.md)\b")
MD_LINK = re.compile(r"\[[^\]\n]*\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")
HEADING = re.compile(r"^#{1,6}\s+(?:§\s*)?(\d+(?:\.\d+)*)\.?(?:\s|$)", re.M)
REPO_PATH = re.compile(r"`(?P<path>[\w.-]+/[\w./-]*)`")


def _text_files() -> list[Path]:
    """Tracked + untracked-but-not-ignored files when git is there, else a walk that skips build/data folders."""
    files: list[Path] | None = None
    if (ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.splitlines()
            files = [ROOT / line for line in out]
        except (OSError, subprocess.CalledProcessError):
            files = None
    if files is None:
        files = [p for p in ROOT.rglob("*") if not (set(p.relative_to(ROOT).parts) & SKIP_DIRS)]
    me = Path(__file__).resolve()
    return sorted(p for p in files if p.suffix in SUFFIXES and p.is_file() and p.resolve() != me
                  and not (set(p.relative_to(ROOT).parts) & SKIP_DIRS))


def _top_dirs() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in SKIP_DIRS}


def _resolve(path: str, citing: Path) -> Path | None:
    """The cited file, looked up next to the citing file first, then from the repository root."""
    for base in (citing.parent, ROOT):
        candidate = (base / path).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    return None


def _section_numbers(sections: str) -> list[str]:
    """'§1.4-§1.7, §4' -> ['1.4', '1.7', '4']; a shortened range end ('§7.6-7') replaces the last components."""
    numbers: list[str] = []
    for part in re.finditer(r"§\s*(\d+(?:\.\d+)*)(?:\s*[-–]\s*§?\s*(\d+(?:\.\d+)*))?", sections):
        start, end = part.group(1), part.group(2)
        numbers.append(start)
        if end:
            head = start.split(".")
            tail = end.split(".")
            numbers.append(".".join(head[: max(0, len(head) - len(tail))] + tail))
    return numbers


def _headings(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text(encoding="utf-8")))


def _where(path: Path, text: str, pos: int) -> str:
    return f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, pos) + 1}"


def _scan() -> list[str]:
    problems: list[str] = []
    top = _top_dirs()
    for path in _text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for pattern in FORBIDDEN:
            for m in pattern.finditer(text):
                problems.append(f"{_where(path, text, m.start())}: cites {m.group(0)!r}, which is outside the "
                                f"repository (the design and reference notes live in docs/)")
        for stem in NOTE_STEMS:
            for m in re.finditer(rf"(?<![\w])(?P<path>[\w./-]*{stem})(?P<ext>\.md)?\b", text):
                target = m.group("path") + ".md"
                if not m.group("ext") or _resolve(target, path) is None:
                    problems.append(f"{_where(path, text, m.start())}: {m.group(0)!r} does not name a file in the "
                                    f"repository; cite it as docs/{stem}.md")
        for m in CITATION.finditer(text):
            doc = _resolve(m.group("path"), path)
            if doc is None:
                problems.append(f"{_where(path, text, m.start())}: {m.group('path')} (cited with "
                                f"{m.group('sections')!r}) is not in the repository")
                continue
            have = _headings(doc)
            for number in _section_numbers(m.group("sections")):
                if number not in have:
                    problems.append(f"{_where(path, text, m.start())}: {doc.relative_to(ROOT)} has no heading "
                                    f"numbered {number} (cited as {m.group(0)!r})")
        for m in PATH_MD.finditer(text):
            cited = m.group("path")
            line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end())]
            if cited in UPSTREAM and UPSTREAM[cited] in line:
                continue
            if cited.split("/")[0] in top and _resolve(cited, path) is None:
                problems.append(f"{_where(path, text, m.start())}: {cited} is not in the repository")
        if path.suffix == ".md":
            for m in MD_LINK.finditer(text):
                target = m.group("target")
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not (path.parent / target).exists():
                    problems.append(f"{_where(path, text, m.start())}: link target {target} does not exist")
    return problems


def test_every_cited_document_and_section_exists() -> None:
    problems = _scan()
    assert not problems, "dangling citations:\n" + "\n".join(problems)


def test_design_doc_paths_exist() -> None:
    design = ROOT / "docs" / "design.md"
    text = design.read_text(encoding="utf-8")
    top = _top_dirs()
    missing = sorted({m.group("path") for m in REPO_PATH.finditer(text)
                      if m.group("path").split("/")[0] in top and not (ROOT / m.group("path")).exists()})
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"


def test_design_doc_covers_the_paper_equations_and_topics() -> None:
    """The "where is it implemented" table is the one hop from a paper item to its file."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    table = text[text.index("## 11."):]
    for item in ("Eq. 1", "Eq. 2", "Eq. 4", "Eq. 6", "Eq. 8", "Eq. 10", "λ_ubhl", "~/C/anomaly_score", "/diagnostics",
                 "ObstacleAlert"):
        assert item in table, f"docs/design.md §11 does not say where {item} is implemented"


@pytest.mark.parametrize("sections, expected", [
    ("§5", ["5"]), ("§1.4-§1.7, §4", ["1.4", "1.7", "4"]), ("§7.6-7", ["7.6", "7.7"]), ("§5/§7", ["5", "7"]),
])
def test_section_parser(sections: str, expected: list[str]) -> None:
    assert _section_numbers(sections) == expected


def test_scanner_catches_dangling_citations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan must fail on the kinds of citation it exists to catch (and pass on good ones)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text("# d\n\n## 3. Model\n\n### 3.7 Loss\n", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "good.py").write_text('"""See docs/design.md §3.7 and `docs/design.md` §3."""\n',
                                              encoding="utf-8")
    bad = {
        "missing_section.py": '"""docs/design.md §9"""\n',
        "missing_file.py": '"""docs/nothing.md §1"""\n',
        "shared.py": '"""see ' + "DESIGN" + '.md §3"""\n',
        "bare_stem.py": '"""' + "model" + '_reference §5"""\n',
        "path.py": '"""docs/gone.md"""\n',
    }
    for name, body in bad.items():
        (tmp_path / "pkg" / name).write_text(body, encoding="utf-8")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    problems = _scan()
    flagged = {p.split(":")[0] for p in problems}
    assert flagged == {f"pkg/{name}" for name in bad}, problems
