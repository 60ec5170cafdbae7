"""dsa_core/atomic.py: a write either replaces the whole file or leaves the old one, and leaves no temp file."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from dsa_core.atomic import atomic_open, write_bytes_atomic, write_json_atomic


def test_json_and_bytes_replace_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "result.json"  # the folder is created
    write_json_atomic(path, {"a": 1, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1, 2]} and path.read_text().endswith("\n")
    import numpy as np

    write_json_atomic(path, {"x": np.float32(0.5)}, default=float)
    assert json.loads(path.read_text()) == {"x": 0.5}
    write_bytes_atomic(tmp_path / "cache.bin", b"\x00\x01")
    assert (tmp_path / "cache.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache.bin", "result.json", "sub"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"version": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"version": 2, "bad": object()})  # fails half-way through serialising
    assert json.loads(path.read_text()) == {"version": 1}
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(path, "w", durable=True) as f:
            f.write("{half")
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(path, "a"):
            pass


def test_written_files_get_the_mode_a_plain_open_gives_not_mkstemps_0600(tmp_path: Path) -> None:
    """A manifest written by the exporter must be readable by another user (the node's account on a vehicle)."""
    (tmp_path / "plain").write_bytes(b"x")  # 0666 minus the umask: the reference
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    write_json_atomic(tmp_path / "manifest.json", {"a": 1})
    with atomic_open(tmp_path / "model.bin", "wb", durable=True) as f:
        f.write(b"x")
    for name in ("manifest.json", "model.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected != 0o600, name
