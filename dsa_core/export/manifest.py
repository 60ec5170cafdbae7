"""The model directory's manifest: what each file is, its sha256, and everything a runtime needs to use it.

A runtime verifies every listed file against its sha256 before loading anything (``verify_model_dir``); a
mismatch, a missing file or an unreadable manifest raises ``ModelIntegrityError`` and the directory is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from dsa_core.atomic import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "dsa-model-dir-v1"

# Cityscapes train-id colours (cityscapesscripts labels.py), index = train id 0..18.


class ModelIntegrityError(RuntimeError):
    """A model directory does not match its manifest (missing/altered file, unreadable manifest): refused."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(model_dir: str | os.PathLike, files: dict[str, dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """Hash every file named in ``files`` (name -> description dict) and write ``manifest.json``."""
    model_dir = Path(model_dir)
    entries = {}
    for name, meta in files.items():
        path = model_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"manifest entry {name!r}: {path} does not exist")
        entries[name] = {**meta, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"format": MANIFEST_FORMAT, **info, "files": entries}
    write_json_atomic(model_dir / MANIFEST_NAME, manifest)
    return json.loads(json.dumps(manifest))  # exactly what a reader of the file gets (tuples -> lists)


def read_manifest(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Parse and shape-check ``manifest.json`` (no hashing)."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelIntegrityError(f"refusing model dir {model_dir}: no {MANIFEST_NAME}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelIntegrityError(f"refusing model dir {model_dir}: {MANIFEST_NAME} unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelIntegrityError(f"refusing model dir {model_dir}: expected manifest format {MANIFEST_FORMAT!r}, found {found!r}")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise ModelIntegrityError(f"refusing model dir {model_dir}: manifest lists no files")
    return manifest


def verify_model_dir(model_dir: str | os.PathLike, only: list[str] | None = None) -> dict[str, Any]:
    """Check the sha256 of every manifest file (or of ``only``) and return the manifest; raise on any mismatch."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    names = list(manifest["files"]) if only is None else only
    for name in names:
        entry = manifest["files"].get(name)
        if entry is None:
            raise ModelIntegrityError(f"refusing model dir {model_dir}: {name!r} is not listed in the manifest")
        path = model_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelIntegrityError(f"refusing model dir {model_dir}: manifest entry {name!r} escapes the directory")
        if not path.is_file():
            raise ModelIntegrityError(f"refusing model dir {model_dir}: {name} is missing")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ModelIntegrityError(
                f"refusing model dir {model_dir}: {name} sha256 {actual[:16]}... does not match the manifest's "
                f"{str(entry.get('sha256'))[:16]}... (file altered or replaced)")
    log.debug("verified %d files of %s", len(names), model_dir)
    return manifest


def anomaly_score_range(manifest: dict[str, Any]) -> tuple[float, float] | None:
    """(low, high) such that a useful anomaly threshold t satisfies low < t <= high, for the manifest's score type;
    None when the manifest does not say which score the graphs compute.

    Why: t <= low flags every pixel and t > high none. msp = 1 - max_k semantic[k] <= 1 and, for any model whose
    per-class scores stay within [0, 1], >= 0; rba = -sum_k tanh(semantic[k]) lies in [-K, 0] (semantic >= 0), with
    K the number of classes (dsa_core.model.scoring).
    """
    score = manifest.get("score")
    if score == "msp":
        return 0.0, 1.0
    if score == "rba":
        k = len(manifest.get("classes") or []) or int((manifest.get("config") or {}).get("num_classes") or 0)
        return (-float(k), 0.0) if k else None
    return None


def listed_file(model_dir: str | os.PathLike, manifest: dict[str, Any], name: str) -> Path:
    """The path of ``name`` in the model dir if the manifest lists it (``verify_model_dir`` checked its sha256).

    Why: every file a backend opens must be one the manifest vouches for; a file that merely lies in the directory
    (a graph the manifest does not list, a substituted checkpoint, ONNX external data) is refused.
    """
    path = Path(name)
    if path.is_absolute() or ".." in path.parts:
        raise ModelIntegrityError(f"refusing model dir {model_dir}: {name!r} escapes the directory")
    name = path.as_posix()
    if name not in manifest.get("files", {}):
        raise ModelIntegrityError(f"refusing model dir {model_dir}: {name} is not listed in {MANIFEST_NAME} (every "
                                  f"file a backend opens must be listed with its sha256)")
    return Path(model_dir) / name


def read_listed_file(model_dir: str | os.PathLike, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of a listed file, hashed in the same read (so the bytes used are the bytes checked)."""
    data = listed_file(model_dir, manifest, name).read_bytes()
    expected = manifest["files"][Path(name).as_posix()].get("sha256")
    if hashlib.sha256(data).hexdigest() != expected:
        raise ModelIntegrityError(f"refusing model dir {model_dir}: {name} changed since it was verified (sha256 "
                                  f"no longer matches the manifest)")
    return data


def verified_onnx_graph(model_dir: str | os.PathLike, manifest: dict[str, Any], name: str) -> bytes | str:
    """An ONNX graph of the model dir as the bytes that were hashed; its path only when its external data files (all
    listed in the manifest, or refused) must be found next to it. What ONNX Runtime and OpenVINO load."""
    data = read_listed_file(model_dir, manifest, name)
    external = onnx_external_data_files(data)
    for location in external:
        listed_file(model_dir, manifest, location)
    return str(listed_file(model_dir, manifest, name)) if external else data


def onnx_external_data_files(model_bytes: bytes) -> list[str]:
    """Files an ONNX model's tensors point to (external data), in the graph, its subgraphs and node attributes."""
    import onnx

    model = onnx.load_model_from_string(model_bytes)  # does not read external data
    found: list[str] = []

    def tensors(graph: Any):
        yield from graph.initializer
        yield from (s.values for s in graph.sparse_initializer)
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from tensors(attr.g)
                for sub in attr.graphs:
                    yield from tensors(sub)

    for tensor in tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location not in found:
                found.append(location)
    return found
