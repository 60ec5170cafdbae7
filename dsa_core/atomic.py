"""Atomic file writes: temp file in the same folder, then rename, so a reader (or a rerun after a kill) sees either
the old file or the new one, never a torn one. Every writer of results, manifests, checkpoints and caches uses this
module (one place for the temp-name, cleanup and fsync decisions)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    """The process umask. Reading it means setting it, which races with other threads creating files, so it is
    read once, at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", durable: bool = False) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``, on an exception it is
    removed and ``path`` is untouched. ``durable``: fsync before the rename (checkpoints: survive a power cut)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; a plain open() would give 0666 minus the umask. Model dirs and results are
        # read by other users (the node's service account on a vehicle), so the written file gets the latter.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(bytes(data))
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, default: Any = None) -> Path:
    """JSON with indent 2 and a final newline; ``default`` as in json.dump (e.g. ``float`` for numpy scalars)."""
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, default=default)
        f.write("\n")
    return Path(path)
