"""Issue 13: every file a backend opens is listed in the model dir's manifest with its sha256; anything else is
refused. Real export, real ONNX Runtime and torch backends; the directories are altered on disk the way an
attacker or a bad copy would."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from dsa_core.atomic import write_json_atomic
from dsa_core.export.manifest import MANIFEST_NAME, ModelIntegrityError, sha256_file
from dsa_core.runtime import create_backend


@pytest.fixture
def copy_model(exported_nano):
    """``copy_model(folder)``: a private copy of the session's export under ``folder`` (tests alter files)."""
    return lambda folder: Path(shutil.copytree(exported_nano.model_dir, folder / "model"))


def _unlist(model_dir: Path, *names: str) -> None:
    manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    for name in names:
        del manifest["files"][name]
    write_json_atomic(model_dir / MANIFEST_NAME, manifest)


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)


def test_an_unlisted_graph_next_to_the_manifest_is_refused(tmp_path: Path, copy_model) -> None:
    model_dir = copy_model(tmp_path)
    _unlist(model_dir, "fused.onnx")  # the file stays: substituted or left over, nothing vouches for it
    with pytest.raises(ModelIntegrityError, match="fused.onnx is not listed"):
        create_backend("onnxruntime", model_dir, graph="fused")
    split = create_backend("onnxruntime", model_dir, graph="split", intra_op_threads=1)  # listed graphs still run
    assert split.infer(_images()).class_ids.shape == (1, 64, 128)


def test_an_unlisted_checkpoint_is_refused_by_the_torch_backend(tmp_path: Path, copy_model) -> None:
    model_dir = copy_model(tmp_path)
    _unlist(model_dir, "model.pt")
    with pytest.raises(ModelIntegrityError, match="model.pt is not listed"):
        create_backend("torch", model_dir)


def _with_external_data(model_dir: Path, list_it: bool) -> None:
    """Rewrite fused.onnx with its weights in weights.bin (ONNX external data); list the new graph, and the data
    file only if ``list_it``."""
    model = onnx.load(str(model_dir / "fused.onnx"))
    onnx.save_model(model, str(model_dir / "fused.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    manifest = json.loads((model_dir / MANIFEST_NAME).read_text())
    manifest["files"]["fused.onnx"]["sha256"] = sha256_file(model_dir / "fused.onnx")
    if list_it:
        manifest["files"]["weights.bin"] = {"kind": "onnx external data", "sha256": sha256_file(model_dir / "weights.bin")}
    write_json_atomic(model_dir / MANIFEST_NAME, manifest)


def test_onnx_external_data_must_be_listed(tmp_path: Path, copy_model) -> None:
    reference = create_backend("onnxruntime", copy_model(tmp_path / "a"), intra_op_threads=1).infer(_images())
    unlisted = copy_model(tmp_path / "b")
    _with_external_data(unlisted, list_it=False)
    with pytest.raises(ModelIntegrityError, match="weights.bin is not listed"):
        create_backend("onnxruntime", unlisted)
    listed = copy_model(tmp_path / "c")
    _with_external_data(listed, list_it=True)
    out = create_backend("onnxruntime", listed, intra_op_threads=1).infer(_images())
    np.testing.assert_array_equal(out.class_ids, reference.class_ids)
    # listed, but replaced after the export: the sha256 check refuses it
    (listed / "weights.bin").write_bytes(bytes((listed / "weights.bin").stat().st_size))
    with pytest.raises(ModelIntegrityError, match="weights.bin sha256"):
        create_backend("onnxruntime", listed)
