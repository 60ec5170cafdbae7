"""Readers for the evaluation benchmarks in their real on-disk layouts (docs/eval_reference.md §1.4-§1.7).

Every reader indexes its frames at construction (pairing each image with its label, failing early on missing
directories, unmatched pairs or unparsable names) and loads one frame per ``dataset[i]``, returning a
:class:`Sample`: name, RGB uint8 image HxWx3 and the anomaly label HxW uint8 with 0 = in-distribution,
1 = anomaly, 255 = void (plus Cityscapes train ids for ``cityscapes``). Each source encoding is converted here,
and label values outside the documented encoding raise ``ValueError``:

================  ========================================================================================
key               layout under ``root`` (label encoding -> 0/1/255)
================  ========================================================================================
cityscapes        ``leftImg8bit/val/<city>/*_leftImg8bit.png`` + ``gtFine/val/...`` (train ids; anomaly
                  label = 0 on every non-void pixel, 255 on void; evaluated by mIoU)
fs_laf            ``fishyscapes_lostandfound/NNNN_<lafid>_labels.png`` (0/1/255) +
                  ``lostandfound/leftImg8bit/{train,test}/<NN_Scene>/<lafid>_leftImg8bit.png``
fs_static         ``fs_val_v3/NNNN_<csid>_labels.png`` (0/1/255) + ``NNNN_<csid>_rgb.npz`` (key ``rgb``,
                  integer overlay) + Cityscapes val images ``leftImg8bit/val/<city>/<csid>_leftImg8bit.png``;
                  image = clip(Cityscapes image + overlay, 0, 255) as ``bdlb`` does
road_anomaly      ``RoadAnomaly_jpg/frame_list.json`` + ``frames/<name>.jpg`` +
                  ``frames/<stem>.labels/labels_semantic.png`` (0, 1 = in-distribution, 2 = anomaly; no void)
smiyc_ra21        ``dataset_AnomalyTrack/images/validationNNNN.jpg`` +
                  ``labels_masks/<fid>_labels_semantic.png`` (0/1/255); the test fids have no labels and
                  are skipped
smiyc_ro21        ``dataset_ObstacleTrack/images/validation_<n>.webp`` + ``labels_masks/...`` (0 = road,
                  1 = obstacle, 255 = everything else: only the road is evaluated); frames whose fid starts
                  with ``validation_19`` or ``validation_21`` ... ``validation_29`` are excluded as in SMIYC
================  ========================================================================================

``root`` may also be the dataset folder itself (e.g. ``.../dataset_AnomalyTrack``) where that is unambiguous.
A set whose frame count differs from the official validation count is accepted (small synthetic sets) and
logged, so a truncated download is visible.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from dsa_core.data.cityscapes import CityscapesDataset
from dsa_core.labels import VOID

log = logging.getLogger(__name__)


#: SMIYC ObstacleTrack-validation exclusions (prefix match on the fid, as ``tracks.py`` does).
RO21_EXCLUDED_PREFIXES: tuple[str, ...] = ("validation_19",) + tuple(f"validation_{n}" for n in range(21, 30))
RA21_VALIDATION_FID = re.compile(r"^validation\d{4}$")
FS_LAF_LABEL = re.compile(r"^(\d{4})_((\d{2}_.+)_\d{6}_\d{6})_labels\.png$")
FS_STATIC_LABEL = re.compile(r"^(\d{4})_(([a-z]+)_\d{6}_\d{6})_labels\.png$")


@dataclass(frozen=True)
class Sample:
    """One evaluation frame; ``semantic`` (train ids, int64) only for Cityscapes."""

    name: str
    image: np.ndarray
    label: np.ndarray
    semantic: np.ndarray | None = None


@dataclass(frozen=True)
class Frame:
    """Indexed files of one frame (``extra``: a second file some formats need, e.g. the FS Static overlay)."""

    name: str
    image: Path
    label: Path
    extra: Path | None = None


def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8 HxWx3 from png/jpg/webp."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_label(path: Path) -> np.ndarray:
    """A single-channel label PNG as stored (palette images give their indices, not colours)."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I;16", "I"):
            raise ValueError(f"{path}: expected a single-channel label PNG, got mode {im.mode}")
        return np.asarray(im)


def check_values(label: np.ndarray, allowed: tuple[int, ...], path: Path, encoding: str) -> None:
    """Raise if ``label`` holds a value outside ``allowed`` (linear time via bincount)."""
    if label.size == 0:
        raise ValueError(f"{path}: empty label image")
    if label.min() < 0:
        raise ValueError(f"{path}: negative label values; expected {encoding}")
    counts = np.bincount(label.ravel().astype(np.int64, copy=False))
    present = np.flatnonzero(counts)
    bad = np.setdiff1d(present, allowed)
    if bad.size:
        raise ValueError(f"{path}: unexpected label values {bad[:10].tolist()}; expected {encoding}")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: expected directory {path}")
    return path


def _pick_dir(root: Path, names: tuple[str, ...], marker: Callable[[Path], bool], what: str) -> Path:
    """``root/<name>`` for the first existing name, else ``root`` itself if ``marker(root)`` holds."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    if marker(root):
        return root
    raise FileNotFoundError(f"{what}: expected {' or '.join(str(root / n) for n in names)} (or {root} to be that "
                            f"folder itself)")


class BenchmarkDataset:
    """Base: ``frames`` indexed by the subclass, ``dataset[i]`` -> :class:`Sample`."""

    key = ""
    title = ""
    official_count = 0

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.key}: root directory {self.root} does not exist")
        self.frames: list[Frame] = self._index()
        if not self.frames:
            raise FileNotFoundError(f"{self.key}: no frames found under {self.root}")
        names = [f.name for f in self.frames]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.key}: duplicate frame names under {self.root}")
        if len(self.frames) != self.official_count:
            log.warning("%s: %d frames under %s (the official validation set has %d)", self.key, len(self.frames),
                        self.root, self.official_count)

    def _index(self) -> list[Frame]:
        raise NotImplementedError

    def _load(self, frame: Frame) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.frames]

    def __getitem__(self, index: int) -> Sample:
        frame = self.frames[index]
        sample = self._load(frame)
        if sample.label.shape != sample.image.shape[:2]:
            raise ValueError(f"{self.key} {frame.name}: label {frame.label.name} is {sample.label.shape}, image "
                             f"{frame.image.name} is {sample.image.shape[:2]}")
        return sample

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


class CityscapesVal(BenchmarkDataset):
    key, title, official_count = "cityscapes", "Cityscapes val", 500

    def __init__(self, root: str | Path, split: str = "val") -> None:
        self._cs = CityscapesDataset(root, split)
        super().__init__(root)

    def _index(self) -> list[Frame]:
        return [Frame(name, img, lab) for name, img, lab, _ in self._cs.items]

    def __getitem__(self, index: int) -> Sample:
        image, semantic, name = self._cs.load(index)
        label = np.where(semantic == VOID, VOID, 0).astype(np.uint8)
        return Sample(name, image, label, semantic)


class FishyscapesLostAndFound(BenchmarkDataset):
    key, title, official_count = "fs_laf", "Fishyscapes Lost & Found", 100
    LABEL_DIR = "fishyscapes_lostandfound"
    IMAGE_DIRS = ("lostandfound/leftImg8bit", "lost_and_found/leftImg8bit", "leftImg8bit")

    def _index(self) -> list[Frame]:
        label_dir = _require_dir(self.root / self.LABEL_DIR, "Fishyscapes Lost & Found labels")
        image_root = next((self.root / d for d in self.IMAGE_DIRS if (self.root / d).is_dir()), None)
        if image_root is None:
            raise FileNotFoundError(f"Lost & Found images: expected one of {[str(self.root / d) for d in self.IMAGE_DIRS]}"
                                    " with {train,test}/<NN_Scene>/<lafid>_leftImg8bit.png")
        frames, missing = [], []
        for path in sorted(label_dir.iterdir()):
            m = FS_LAF_LABEL.match(path.name)
            if m is None:
                raise ValueError(f"{path}: not a Fishyscapes L&F label name (NNNN_<NN_Scene_seq_frame>_labels.png)")
            laf_id, scene = m.group(2), m.group(3)
            candidates = [image_root / split / scene / f"{laf_id}_leftImg8bit.png" for split in ("train", "test")]
            image = next((c for c in candidates if c.is_file()), None)
            if image is None:
                missing.append(str(candidates[0]))
                continue
            frames.append(Frame(path.name[: -len("_labels.png")], image, path))
        if missing:
            raise FileNotFoundError(f"{len(missing)} Fishyscapes L&F label(s) without a Lost & Found image (looked in "
                                    f"train/ and test/), e.g. {missing[:3]}")
        return frames

    def _load(self, frame: Frame) -> Sample:
        label = read_label(frame.label)
        check_values(label, (0, 1, VOID), frame.label, "0 (in-distribution), 1 (anomaly), 255 (void)")
        return Sample(frame.name, read_rgb(frame.image), label.astype(np.uint8))


class FishyscapesStatic(BenchmarkDataset):
    key, title, official_count = "fs_static", "Fishyscapes Static", 30
    OVERLAY_DIRS = ("fs_val_v3", "fishyscapes-3.0.0")

    def __init__(self, root: str | Path, cs_root: str | Path | None = None) -> None:
        self.cs_root = Path(cs_root) if cs_root is not None else Path(root) / "leftImg8bit" / "val"
        super().__init__(root)

    def _index(self) -> list[Frame]:
        overlay_dir = _pick_dir(self.root, self.OVERLAY_DIRS, lambda p: any(p.glob("*_rgb.npz")),
                                "Fishyscapes Static overlays")
        _require_dir(self.cs_root, "Fishyscapes Static: Cityscapes val images (<city>/<csid>_leftImg8bit.png)")
        labels = sorted(overlay_dir.glob("*_labels.png"))
        frames, problems = [], []
        for path in labels:
            m = FS_STATIC_LABEL.match(path.name)
            if m is None:
                raise ValueError(f"{path}: not a Fishyscapes Static label name (NNNN_<city_seq_frame>_labels.png)")
            csid, city = m.group(2), m.group(3)
            overlay = path.with_name(path.name.replace("_labels.png", "_rgb.npz"))
            image = self.cs_root / city / f"{csid}_leftImg8bit.png"
            if not overlay.is_file():
                problems.append(f"missing overlay {overlay}")
            elif not image.is_file():
                problems.append(f"missing Cityscapes image {image}")
            else:
                frames.append(Frame(path.name[: -len("_labels.png")], image, path, overlay))
        orphans = [p for p in overlay_dir.glob("*_rgb.npz")
                   if not p.with_name(p.name.replace("_rgb.npz", "_labels.png")).is_file()]
        problems += [f"overlay without labels {p}" for p in orphans]
        if problems:
            raise FileNotFoundError(f"Fishyscapes Static under {overlay_dir}: {len(problems)} unmatched file(s), e.g. "
                                    f"{problems[:3]}")
        return frames

    def _load(self, frame: Frame) -> Sample:
        label = read_label(frame.label)
        check_values(label, (0, 1, VOID), frame.label, "0 (in-distribution), 1 (anomaly), 255 (void)")
        with np.load(frame.extra) as npz:
            if "rgb" not in npz.files:
                raise ValueError(f"{frame.extra}: expected key 'rgb', found {npz.files}")
            overlay = npz["rgb"]
        base = read_rgb(frame.image)
        if overlay.dtype.kind not in "iu" or overlay.shape != base.shape:
            raise ValueError(f"{frame.extra}: expected an integer overlay of shape {base.shape}, got "
                             f"{overlay.dtype} {overlay.shape}")
        image = np.clip(base.astype(np.int32) + overlay.astype(np.int32), 0, 255).astype(np.uint8)
        return Sample(frame.name, image, label.astype(np.uint8))


class RoadAnomaly(BenchmarkDataset):
    key, title, official_count = "road_anomaly", "Road Anomaly", 60
    DIR = "RoadAnomaly_jpg"

    def _index(self) -> list[Frame]:
        base = _pick_dir(self.root, (self.DIR,), lambda p: (p / "frame_list.json").is_file(), "Road Anomaly")
        list_path = base / "frame_list.json"
        if not list_path.is_file():
            raise FileNotFoundError(f"Road Anomaly: expected {list_path}")
        names = json.loads(list_path.read_text())
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{list_path}: expected a JSON list of image file names")
        frames, missing = [], []
        for name in names:
            image = base / "frames" / name
            label = base / "frames" / f"{Path(name).stem}.labels" / "labels_semantic.png"
            if not image.is_file():
                missing.append(str(image))
            elif not label.is_file():
                missing.append(str(label))
            else:
                frames.append(Frame(Path(name).stem, image, label))
        if missing:
            raise FileNotFoundError(f"Road Anomaly: {len(missing)} listed frame(s) lack an image or label, e.g. "
                                    f"{missing[:3]}")
        unlisted = sorted(set(p.name for p in (base / "frames").glob("*.jpg")) - set(names))
        if unlisted:
            log.warning("Road Anomaly: %d image(s) not in frame_list.json are ignored, e.g. %s", len(unlisted),
                        unlisted[:3])
        return frames

    def _load(self, frame: Frame) -> Sample:
        raw = read_label(frame.label)
        check_values(raw, (0, 1, 2), frame.label, "0, 1 (in-distribution) or 2 (anomaly); Road Anomaly has no void")
        return Sample(frame.name, read_rgb(frame.image), (raw == 2).astype(np.uint8))


class _SmiycTrack(BenchmarkDataset):
    DIR = ""
    IMAGE_EXT = ""

    def _is_eval_frame(self, fid: str) -> bool:
        raise NotImplementedError

    def _index(self) -> list[Frame]:
        base = _pick_dir(self.root, (self.DIR,), lambda p: (p / "images").is_dir(), self.title)
        images = _require_dir(base / "images", self.title)
        masks = _require_dir(base / "labels_masks", self.title)
        all_fids = sorted(p.stem for p in images.glob(f"*.{self.IMAGE_EXT}"))
        fids = [f for f in all_fids if self._is_eval_frame(f)]
        missing = [f for f in fids if not (masks / f"{f}_labels_semantic.png").is_file()]
        if missing:
            raise FileNotFoundError(f"{self.title}: {len(missing)} frame(s) without labels_masks/<fid>_labels_semantic"
                                    f".png, e.g. {missing[:3]}")
        orphans = [p.name for p in masks.glob("*_labels_semantic.png")
                   if p.name[: -len("_labels_semantic.png")] not in set(all_fids)]
        if orphans:
            raise FileNotFoundError(f"{self.title}: {len(orphans)} label(s) without images/<fid>.{self.IMAGE_EXT}, "
                                    f"e.g. {orphans[:3]}")
        log.info("%s: %d evaluation frames of %d images under %s", self.key, len(fids), len(all_fids), images)
        return [Frame(f, images / f"{f}.{self.IMAGE_EXT}", masks / f"{f}_labels_semantic.png") for f in fids]

    def _load(self, frame: Frame) -> Sample:
        label = read_label(frame.label)
        check_values(label, (0, 1, VOID), frame.label, "0 (not anomaly), 1 (anomaly), 255 (void)")
        return Sample(frame.name, read_rgb(frame.image), label.astype(np.uint8))


class SmiycRoadAnomaly21(_SmiycTrack):
    key, title, official_count = "smiyc_ra21", "SMIYC RoadAnomaly21 (val)", 10
    DIR, IMAGE_EXT = "dataset_AnomalyTrack", "jpg"

    def _is_eval_frame(self, fid: str) -> bool:
        return RA21_VALIDATION_FID.match(fid) is not None


class SmiycRoadObstacle21(_SmiycTrack):
    key, title, official_count = "smiyc_ro21", "SMIYC RoadObstacle21 (val)", 30
    DIR, IMAGE_EXT = "dataset_ObstacleTrack", "webp"

    def _is_eval_frame(self, fid: str) -> bool:
        return fid.split("_")[0] == "validation" and not any(fid.startswith(p) for p in RO21_EXCLUDED_PREFIXES)


#: Registry by dataset key (CLI names). Anomaly sets in the column order of the paper's Table 3.
DATASETS: dict[str, type[BenchmarkDataset]] = {
    "cityscapes": CityscapesVal,
    "smiyc_ra21": SmiycRoadAnomaly21,
    "smiyc_ro21": SmiycRoadObstacle21,
    "fs_laf": FishyscapesLostAndFound,
    "fs_static": FishyscapesStatic,
    "road_anomaly": RoadAnomaly,
}
ANOMALY_KEYS: tuple[str, ...] = ("smiyc_ra21", "smiyc_ro21", "fs_laf", "fs_static", "road_anomaly")


def open_benchmark(key: str, root: str | Path) -> BenchmarkDataset:
    """The reader for ``key`` (see ``DATASETS``) over ``root``."""
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {key!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key](root)


def benchmark_samples(key: str, root: str | Path, max_images: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``max_images`` (all when None) (image, anomaly label) pairs of a benchmark, read once: a small
    anomaly validation set for training (``dsa train --anomaly-set KEY:DIR``)."""
    ds = open_benchmark(key, root)
    n = len(ds) if max_images is None else min(len(ds), max_images)
    return [(ds[i].image, ds[i].label) for i in range(n)]
