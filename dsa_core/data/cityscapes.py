"""Cityscapes reader for the real on-disk layout (leftImg8bit + gtFine), returning 19-class train ids.

Why a reader of our own: training and evaluation must run on the official download as is. ``*_labelTrainIds.png``
is not part of that download (it is made by ``csCreateTrainIdLabelImgs``), so when it is missing the train ids
are derived from ``*_labelIds.png`` with the ``cityscapesscripts`` label table; void and ignored classes -> 255.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from dsa_core.labels import NUM_CLASSES, VOID, id_to_train_id_lut, label_ids_to_train_ids

log = logging.getLogger(__name__)

IMAGE_SUFFIX = "_leftImg8bit.png"
TRAINID_SUFFIX = "_gtFine_labelTrainIds.png"
LABELID_SUFFIX = "_gtFine_labelIds.png"


def _read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I;16", "I"):
            raise ValueError(f"{path}: expected a single-channel label PNG, got mode {im.mode}")
        return np.asarray(im)


class CityscapesDataset:
    """Frames of one split: ``dataset[i]`` -> dict(image uint8 HxWx3 RGB, label int64 HxW train ids, name).

    ``transform`` (optional) is called as ``transform(image, label)``; the first two entries of what it returns
    are taken as the new image and label (so ``transforms.TrainAugment`` / ``ValTransform`` fit directly).
    ``void_ground`` (``labels.VOID_GROUND_MODES``, training only) reads void ground as VOID ("void", Cityscapes),
    as ``labels.VOID_GROUND`` ("marked") or as a flat class ("flat"); the last two need the label ids of
    ``*_labelIds.png``, since a train-id file has lost them.
    """

    def __init__(self, root: str | Path, split: str = "train",
                 transform: Callable[[np.ndarray, np.ndarray], tuple[Any, Any]] | None = None,
                 void_ground: str = "void") -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        id_to_train_id_lut(void_ground)  # refuses an unknown mode now, not at the first frame
        self.void_ground = void_ground
        needs_label_ids = void_ground != "void"
        img_dir = self.root / "leftImg8bit" / split
        gt_dir = self.root / "gtFine" / split
        for d in (img_dir, gt_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"Cityscapes {split!r} split: expected directory {d} (layout "
                                        f"<root>/leftImg8bit/<split>/<city>/ and <root>/gtFine/<split>/<city>/)")
        images = sorted(img_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise FileNotFoundError(f"no *{IMAGE_SUFFIX} files under {img_dir}/<city>/")
        self.items: list[tuple[str, Path, Path, bool]] = []  # name, image, label, label holds train ids
        missing: list[str] = []
        for img in images:
            stem = img.name[: -len(IMAGE_SUFFIX)]
            city = img.parent.name
            train_ids = gt_dir / city / f"{stem}{TRAINID_SUFFIX}"
            label_ids = gt_dir / city / f"{stem}{LABELID_SUFFIX}"
            if train_ids.is_file() and not (needs_label_ids and label_ids.is_file()):
                self.items.append((stem, img, train_ids, True))
            elif label_ids.is_file():
                self.items.append((stem, img, label_ids, False))
            else:
                missing.append(str(gt_dir / city / f"{stem}{LABELID_SUFFIX}"))
        train_ids_only = sum(t for *_, t in self.items)
        if needs_label_ids and train_ids_only:
            raise FileNotFoundError(f"void ground read as {void_ground!r} needs *{LABELID_SUFFIX} for every frame (the "
                                    f"label ids of void ground); {train_ids_only} frame(s) of {gt_dir} have train "
                                    "ids only")
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) without gtFine labels in {gt_dir}, e.g. {missing[:3]}")
        stems = {name for name, *_ in self.items}
        orphans = [p for p in gt_dir.glob(f"*/*{LABELID_SUFFIX}") if p.name[: -len(LABELID_SUFFIX)] not in stems]
        if orphans:
            raise FileNotFoundError(f"{len(orphans)} gtFine label(s) without a leftImg8bit image, e.g. "
                                    f"{[str(p) for p in orphans[:3]]}")
        derived = sum(not t for *_, t in self.items)
        if derived:
            log.info("Cityscapes %s: %d/%d frames lack *%s; deriving train ids from *%s", split, derived,
                     len(self.items), TRAINID_SUFFIX, LABELID_SUFFIX)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Raw (image RGB uint8, train-id label int64, name) without the transform."""
        name, img_path, label_path, is_train_ids = self.items[index]
        with Image.open(img_path) as im:
            image = np.asarray(im.convert("RGB"))
        raw = _read_gray(label_path)
        label = raw if is_train_ids else label_ids_to_train_ids(raw, self.void_ground)
        if label.shape != image.shape[:2]:
            raise ValueError(f"{name}: label {label_path.name} is {label.shape}, image is {image.shape[:2]}")
        if is_train_ids:
            counts = np.bincount(label.ravel(), minlength=256)  # linear time, unlike np.unique's sort
            bad = np.flatnonzero(counts[NUM_CLASSES:VOID]) + NUM_CLASSES
            if bad.size or counts.size > 256:
                raise ValueError(f"{label_path}: train ids must be 0..{NUM_CLASSES - 1} or {VOID}, found {bad[:5].tolist()}")
        return image, label.astype(np.int64), name

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label, name = self.load(index)
        if self.transform is not None:
            out = self.transform(image, label)  # (image, label) or (image, label, outlier) as transforms.py
            image, label = out[0], out[1]
        return {"image": image, "label": label, "name": name}
