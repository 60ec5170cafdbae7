"""`dsa synth` benchmark formats follow the official layouts / names / label values; the readers parse them and
reject malformed sets with specific errors.

The format checks re-implement the official loaders' file-name rules here (bdlb / pytorch-ood Fishyscapes,
detecting-the-unexpected Road Anomaly, SMIYC ``tracks.py``) instead of calling our reader.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dsa_core.cli import main as dsa_main
from dsa_core.data.anomaly_sets import DATASETS, open_benchmark
from dsa_core.data.synth.anomaly_synth import RA21_TEST_FIDS, SPECS, ro21_fids

N, H, W = 3, 64, 128
RA21_TEST_IMAGES = 2
# SMIYC tracks.py, ObstacleTrack-validation config (copied literally, not from our module).
OFFICIAL_RO21_EXCLUDES = {"validation_19", "validation_21", "validation_22", "validation_23", "validation_24",
                          "validation_25", "validation_26", "validation_27", "validation_28", "validation_29"}
KEYS = ("fs_laf", "fs_static", "road_anomaly", "smiyc_ra21", "smiyc_ro21")


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    for key in KEYS:
        extra = ["--test-images", str(RA21_TEST_IMAGES)] if key == "smiyc_ra21" else []
        rc = dsa_main(["synth", key, "--out", str(root / key), "--count", str(N), "--height", str(H), "--width",
                       str(W), "--seed", "5", "--no-progress", *extra])
        assert rc == 0
    return root


def _label(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode in ("L", "P"), f"{path}: label must be single-channel 8-bit, got {im.mode}"
        return np.asarray(im)


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def test_default_counts_are_the_official_validation_counts() -> None:
    assert {k: SPECS[k].count for k in KEYS} == {"fs_laf": 100, "fs_static": 30, "road_anomaly": 60,
                                                  "smiyc_ra21": 10, "smiyc_ro21": 30}


def test_fs_laf_format(bench_root: Path) -> None:
    root = bench_root / "fs_laf"
    labels = sorted((root / "fishyscapes_lostandfound").iterdir())
    assert len(labels) == N
    anomaly_free = 0
    for i, path in enumerate(labels):
        assert re.fullmatch(r"\d{4}_\d{2}_[A-Za-z0-9_]+_\d{6}_\d{6}_labels\.png", path.name)
        assert path.name.startswith(f"{i:04d}_")
        # pytorch-ood / bdlb rule: direc = parts[1:-3], file = parts[1:] with _labels.png -> _leftImg8bit.png
        parts = path.name.split("_")
        rel = Path("_".join(parts[1:-3])) / "_".join(parts[1:]).replace("_labels.png", "_leftImg8bit.png")
        found = [root / "lostandfound" / "leftImg8bit" / s / rel for s in ("train", "test")]
        found = [p for p in found if p.is_file()]
        assert len(found) == 1, rel
        assert rel.name == path.name[5:-10] + "leftImg8bit.png"  # RbA's recovery rule
        scene_no = parts[1]
        assert (scene_no, found[0].parts[-3]) in {("01", "train"), ("13", "train"), ("04", "test")}
        lab = _label(path)
        assert lab.shape == _size(found[0]) == (H, W)
        assert set(np.unique(lab)) <= {0, 1, 255}
        assert (lab == 255).any() and (lab == 0).any()  # void off the road, road in-distribution
        coarse = _label(root / "lostandfound" / "gtCoarse" / found[0].parts[-3] / found[0].parts[-2]
                        / rel.name.replace("_leftImg8bit.png", "_gtCoarse_labelIds.png"))
        # Mask2Anomaly's LostAndFound mapping of the LAF source labels: 0 -> 255, 1 -> 0, 2..200 -> 1
        mapped = np.where(coarse == 0, 255, np.where(coarse == 1, 0, 1))
        np.testing.assert_array_equal(lab, mapped)
        anomaly_free += not (lab == 1).any()
    assert anomaly_free == 1


def test_fs_static_format(bench_root: Path) -> None:
    root = bench_root / "fs_static"
    labels = sorted((root / "fs_val_v3").glob("*_labels.png"))
    overlays = sorted((root / "fs_val_v3").glob("*_rgb.npz"))
    assert len(labels) == len(overlays) == N
    for path, npz_path in zip(labels, overlays):
        assert re.fullmatch(r"\d{4}_[a-z]+_\d{6}_\d{6}_labels\.png", path.name)
        assert npz_path.name == path.name.replace("_labels.png", "_rgb.npz")
        parts = npz_path.name.split("_")  # pytorch-ood _get_org_img
        orig = root / "leftImg8bit" / "val" / parts[1] / "_".join(parts[1:]).replace("rgb.npz", "leftImg8bit.png")
        assert orig.is_file()
        with np.load(npz_path) as z:
            assert z.files == ["rgb"]
            overlay = z["rgb"]
        assert overlay.dtype.kind == "i" and overlay.shape == (H, W, 3)
        lab = _label(path)
        assert set(np.unique(lab)) <= {0, 1, 255} and (lab == 1).any()
        changed = (overlay != 0).any(-1)
        assert changed.any() and (lab[changed] == 1).all()  # the blended pixels are exactly anomaly pixels


def test_road_anomaly_format(bench_root: Path) -> None:
    base = bench_root / "road_anomaly" / "RoadAnomaly_jpg"
    names = json.loads((base / "frame_list.json").read_text())
    assert isinstance(names, list) and len(names) == N and all(n.endswith(".jpg") for n in names)
    for name in names:
        img = base / "frames" / name
        lab = _label(base / "frames" / f"{Path(name).stem}.labels" / "labels_semantic.png")
        assert _size(img) == lab.shape
        assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 2).any()  # 2 = anomaly, no void


def test_smiyc_ra21_format(bench_root: Path) -> None:
    base = bench_root / "smiyc_ra21" / "dataset_AnomalyTrack"
    fids = sorted(p.stem for p in (base / "images").glob("*.jpg"))
    assert len(fids) == N + RA21_TEST_IMAGES
    val = [f for f in fids if f.startswith("validation")]
    assert val == [f"validation{i:04d}" for i in range(N)]
    masks = sorted(p.name for p in (base / "labels_masks").iterdir())
    assert masks == [f"{f}_labels_semantic.png" for f in val]  # test labels withheld
    for f in val:
        lab = _label(base / "labels_masks" / f"{f}_labels_semantic.png")
        assert lab.shape == _size(base / "images" / f"{f}.jpg")
        assert set(np.unique(lab)) == {0, 1, 255}
    # with the default 100 test images, AnomalyTrack-all has the 110 frames SMIYC's check_size() demands
    assert len(set(RA21_TEST_FIDS)) == 100 and not any(f.startswith("validation") for f in RA21_TEST_FIDS)


def test_smiyc_ro21_format(bench_root: Path) -> None:
    base = bench_root / "smiyc_ro21" / "dataset_ObstacleTrack"
    fids = sorted(p.stem for p in (base / "images").glob("*.webp"))
    kept = [f for f in fids if f.split("_")[0] == "validation"
            and not any(f.startswith(p) for p in OFFICIAL_RO21_EXCLUDES)]
    assert len(kept) == N
    for f in kept:
        lab = _label(base / "labels_masks" / f"{f}_labels_semantic.png")
        assert lab.shape == _size(base / "images" / f"{f}.webp")
        assert set(np.unique(lab)) == {0, 1, 255}
        assert (lab == 255).mean() > 0.3  # only the road is evaluated
    all_fids, kept30 = ro21_fids(30)
    official = [f for f in all_fids if not any(f.startswith(p) for p in OFFICIAL_RO21_EXCLUDES)]
    assert len(all_fids) == 40 and official == kept30 and len(kept30) == 30


@pytest.mark.parametrize("key", KEYS)
def test_readers_parse_synthetic_sets(bench_root: Path, key: str) -> None:
    ds = open_benchmark(key, bench_root / key)
    assert len(ds) == N and ds.key == key
    for sample in ds:
        assert sample.image.dtype == np.uint8 and sample.image.shape == (H, W, 3)
        assert sample.label.dtype == np.uint8 and sample.label.shape == (H, W)
        assert set(np.unique(sample.label)) <= {0, 1, 255}
    # root may also be the dataset folder itself
    inner = {"smiyc_ra21": "dataset_AnomalyTrack", "smiyc_ro21": "dataset_ObstacleTrack",
             "road_anomaly": "RoadAnomaly_jpg"}
    if key in inner:
        assert open_benchmark(key, bench_root / key / inner[key]).names == ds.names


def test_reader_label_conversions(bench_root: Path) -> None:
    base = bench_root / "road_anomaly" / "RoadAnomaly_jpg"
    ra = open_benchmark("road_anomaly", bench_root / "road_anomaly")
    raw = _label(base / "frames" / f"{ra.names[0]}.labels" / "labels_semantic.png")
    np.testing.assert_array_equal(ra[0].label, (raw == 2).astype(np.uint8))
    static = open_benchmark("fs_static", bench_root / "fs_static")
    f = static.frames[0]
    with Image.open(f.image) as im:
        orig = np.asarray(im.convert("RGB")).astype(int)
    with np.load(f.extra) as z:
        expected = np.clip(orig + z["rgb"].astype(int), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(static[0].image, expected)


def test_ro21_reader_applies_smiyc_exclusions(bench_root: Path, tmp_path: Path) -> None:
    base = shutil.copytree(bench_root / "smiyc_ro21", tmp_path / "ro21") / "dataset_ObstacleTrack"
    for fid in ("validation_19", "validation_25", "validation_190"):
        shutil.copy(base / "images" / "validation_1.webp", base / "images" / f"{fid}.webp")
        shutil.copy(base / "labels_masks" / "validation_1_labels_semantic.png",
                    base / "labels_masks" / f"{fid}_labels_semantic.png")
    shutil.copy(base / "images" / "validation_1.webp", base / "images" / "gravel_x_1.webp")  # other scene
    ds = open_benchmark("smiyc_ro21", tmp_path / "ro21")
    assert ds.names == ["validation_1", "validation_2", "validation_3"]


def test_reader_errors(bench_root: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown dataset"):
        open_benchmark("lost_and_found", bench_root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_benchmark("fs_laf", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="fishyscapes_lostandfound"):
        open_benchmark("fs_laf", bench_root / "road_anomaly")

    laf = shutil.copytree(bench_root / "fs_laf", tmp_path / "laf")
    next((laf / "lostandfound" / "leftImg8bit").rglob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="without a Lost & Found image"):
        open_benchmark("fs_laf", laf)

    ra21 = shutil.copytree(bench_root / "smiyc_ra21", tmp_path / "ra21") / "dataset_AnomalyTrack"
    (ra21 / "images" / "validation0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="validation0001"):
        open_benchmark("smiyc_ra21", ra21)

    ro21 = shutil.copytree(bench_root / "smiyc_ro21", tmp_path / "ro21") / "dataset_ObstacleTrack"
    bad = ro21 / "labels_masks" / "validation_2_labels_semantic.png"
    lab = _label(bad).copy()
    lab[0, 0] = 7
    Image.fromarray(lab).save(bad)
    ds = open_benchmark("smiyc_ro21", ro21)
    with pytest.raises(ValueError, match=r"unexpected label values \[7\]"):
        ds[1]

    ra = shutil.copytree(bench_root / "road_anomaly", tmp_path / "ra") / "RoadAnomaly_jpg"
    name = json.loads((ra / "frame_list.json").read_text())[0]
    lab_path = ra / "frames" / f"{Path(name).stem}.labels" / "labels_semantic.png"
    lab = _label(lab_path).copy()
    lab[0, 0] = 255
    Image.fromarray(lab).save(lab_path)
    with pytest.raises(ValueError, match="no void"):
        open_benchmark("road_anomaly", ra)[0]

    static = shutil.copytree(bench_root / "fs_static", tmp_path / "static")
    next((static / "fs_val_v3").glob("*_rgb.npz")).unlink()
    with pytest.raises(FileNotFoundError, match="missing overlay"):
        open_benchmark("fs_static", static)


def test_registry_covers_every_key() -> None:
    assert set(DATASETS) == {"cityscapes", *KEYS}


def test_anomalies_come_only_from_test_families(tmp_path: Path, monkeypatch) -> None:
    """Every sprite a benchmark writer draws is of a TEST family (never the COCO outlier-pool families)."""
    from dsa_core.data.synth import anomaly_synth, sprites

    drawn: list[str] = []

    def recording_make_sprite(family, size, rng):
        drawn.append(family)
        return sprites.make_sprite(family, size, rng)

    monkeypatch.setattr(anomaly_synth, "make_sprite", recording_make_sprite)
    for key in KEYS:
        anomaly_synth.write_benchmark(key, tmp_path / key, count=2, height=48, width=96, seed=1, progress=False,
                                      **({"test_images": 1} if key == "smiyc_ra21" else {}))
    assert drawn and set(drawn) <= set(sprites.TEST_ANOMALY_FAMILIES)
    assert not set(drawn) & set(sprites.OUTLIER_POOL_FAMILIES)


def test_formats_registered_in_dsa_synth() -> None:
    from dsa_core.commands import load, synth

    assert set(KEYS) <= set(synth.FORMATS)
    for key in KEYS:
        module = load(synth.FORMATS, key, f"dsa synth {key}")
        assert callable(module.add_arguments) and callable(module.run)
