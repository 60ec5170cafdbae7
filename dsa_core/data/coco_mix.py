"""AnomalyMix outlier exposure: paste COCO objects into Cityscapes frames (Mask2Anomaly / PEBAL ``mix_object``).

Why: stage 2 of DSA fine-tunes the decoder with a contrastive loss on pasted "unknown" objects
(docs/model_reference.md §3.2, docs/eval_reference.md §1.3):

* Pool: COCO ``instances_*.json`` + images via pycocotools. Any image containing a class that overlaps
  Cityscapes (``COCO_EXCLUDED_NAMES``: person, bicycle, car, motorcycle, bus, truck, traffic light, stop sign) is
  dropped entirely; images smaller than ``min_size`` on a side are dropped (meta-ood keeps >= 480 px). The object
  of an image is the union of all its instance masks, crowd included.
* Mix: with probability ``p`` (0.2), take the bounding box of one pool image's object, copy only the mask pixels at
  full resolution (no resizing) to a uniformly random top-left position of the Cityscapes frame, and write
  ``OUTLIER`` (254) into the label there. This happens before augmentation, so the object is rescaled with
  the scene. If the object's box is larger than the frame (possible with small synthetic frames), a random
  frame-sized window of it is used (still no resizing).

Labels: 0..18 classes, 254 = pasted outlier (no class target; anomaly for the contrastive loss),
255 = void (no class target; in-distribution for the contrastive loss, as Mask2Anomaly's ``ood_mask = label == 254``).
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO

from dsa_core.data.cityscapes import CityscapesDataset
from dsa_core.data.coco_categories import COCO_EXCLUDED_NAMES
from dsa_core.data.transforms import TrainAugment, ValTransform
from dsa_core.labels import OUTLIER, ROAD, VOID

log = logging.getLogger(__name__)



class CocoOutlierPool:
    """Images of a COCO split that contain none of ``excluded`` classes, with their union object masks."""

    def __init__(self, root: str | Path, split: str = "train2017", annotation_file: str | Path | None = None,
                 excluded: tuple[str, ...] = COCO_EXCLUDED_NAMES, min_size: int = 480,
                 max_images: int | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        self.image_dir = self.root / split
        ann = Path(annotation_file) if annotation_file else self.root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise FileNotFoundError(f"COCO annotations not found: expected {ann}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"COCO images not found: expected directory {self.image_dir}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
            self.coco = COCO(str(ann))
        names = {c["name"] for c in self.coco.loadCats(self.coco.getCatIds())}
        unknown = [n for n in excluded if n not in names]
        if unknown:
            raise ValueError(f"excluded class names {unknown} are not categories of {ann}")
        excluded_ids = self.coco.getCatIds(catNms=list(excluded))
        dropped: set[int] = set()
        for cid in excluded_ids:
            dropped.update(self.coco.getImgIds(catIds=[cid]))
        keep = []
        for img_id in sorted(self.coco.getImgIds()):
            info = self.coco.imgs[img_id]
            if img_id in dropped or min(info["height"], info["width"]) < min_size:
                continue
            if not self.coco.getAnnIds(imgIds=[img_id], iscrowd=None):
                continue
            keep.append(img_id)
        if max_images is not None and len(keep) > max_images:
            keep = sorted(np.random.default_rng(seed).choice(keep, size=max_images, replace=False).tolist())
        self.image_ids: list[int] = keep
        self.dropped_ids: set[int] = dropped
        log.info("COCO outlier pool %s: %d images kept, %d dropped for overlapping classes", ann,
                 len(keep), len(dropped))
        if not keep:
            raise ValueError(f"COCO outlier pool from {ann} is empty after filtering (min_size={min_size})")

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image, bool union mask of all its instances incl. crowd) of pool entry ``index``."""
        img_id = self.image_ids[index]
        info = self.coco.imgs[img_id]
        with Image.open(self.image_dir / info["file_name"]) as im:
            image = np.asarray(im.convert("RGB"))
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"{info['file_name']}: image is {image.shape[:2]}, annotation says "
                             f"{(info['height'], info['width'])}")
        mask = np.zeros(image.shape[:2], bool)
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[img_id], iscrowd=None)):
            mask |= self.coco.annToMask(ann).astype(bool)
        return image, mask


def write_ood_masks(pool: CocoOutlierPool, out_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Write the meta-ood preparation output: ``<id:012d>.png`` with 0 = background, 254 = object union.

    Default location ``<root>/annotations/ood_seg_<split>/`` as ``prepare_coco_segmentation.py`` writes it (the
    layout PEBAL / RbA loaders read). Only pool images (filtered) are written.
    """
    from tqdm import tqdm

    out = Path(out_dir) if out_dir else pool.root / "annotations" / f"ood_seg_{pool.image_dir.name}"
    out.mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(pool)), desc="ood masks", disable=not progress, unit="img"):
        _, mask = pool.load(i)
        Image.fromarray(np.where(mask, OUTLIER, 0).astype(np.uint8)).save(out / f"{pool.image_ids[i]:012d}.png")
    return out


def paste_object(image: np.ndarray, label: np.ndarray, obj_image: np.ndarray, obj_mask: np.ndarray,
                 rng: np.random.Generator, outlier_label: int = OUTLIER, scale: float = 1.0,
                 on_road_label: int | None = None, foot: tuple[int, int] | None = None,
                 stretch: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy the mask pixels of the object's bounding box to a random top-left position; returns new arrays.

    ``scale`` resizes the object's box first (image bilinear, mask nearest); ``stretch`` multiplies its height by
    sqrt(stretch) and divides its width by it (the area kept, the height / width ratio times ``stretch``). With
    ``on_road_label`` the object stands with its bottom centre on a random pixel of that train id when the frame has
    one (road obstacles are what the node must find); with ``foot`` (row, column) it stands on that pixel; otherwise
    the position is uniform over the frame.
    """
    ys, xs = np.nonzero(obj_mask)
    if ys.size == 0:
        raise ValueError("outlier object mask is empty")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    if not stretch > 0.0:
        raise ValueError(f"stretch must be > 0, got {stretch}")
    if scale != 1.0 or stretch != 1.0:
        obj_image, obj_mask = obj_image[y0:y1, x0:x1], obj_mask[y0:y1, x0:x1]
        root = float(np.sqrt(stretch))
        size = (max(1, int(round((x1 - x0) * scale / root))), max(1, int(round((y1 - y0) * scale * root))))
        obj_image = cv2.resize(obj_image, size, interpolation=cv2.INTER_LINEAR)
        obj_mask = cv2.resize(obj_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        if not obj_mask.any():
            obj_mask[obj_mask.shape[0] // 2, obj_mask.shape[1] // 2] = True
        ys, xs = np.nonzero(obj_mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    H, W = label.shape
    if y1 - y0 > H:  # larger than the frame: a random frame-sized window of the object (no resizing)
        y0 = y0 + int(rng.integers(0, y1 - y0 - H + 1))
        y1 = y0 + H
    if x1 - x0 > W:
        x0 = x0 + int(rng.integers(0, x1 - x0 - W + 1))
        x1 = x0 + W
    cut_mask = obj_mask[y0:y1, x0:x1]
    cut_img = obj_image[y0:y1, x0:x1]
    oh, ow = cut_mask.shape
    ty = int(rng.integers(0, H - oh + 1))
    tx = int(rng.integers(0, W - ow + 1))
    if foot is None and on_road_label is not None:
        ry, rx = np.nonzero(label == on_road_label)
        if ry.size:
            k = int(rng.integers(ry.size))
            foot = int(ry[k]), int(rx[k])
    if foot is not None:
        ty = int(np.clip(foot[0] - oh + 1, 0, H - oh))
        tx = int(np.clip(foot[1] - ow // 2, 0, W - ow))
    image, label = image.copy(), label.copy()
    outlier = np.zeros((H, W), bool)
    image[ty:ty + oh, tx:tx + ow][cut_mask] = cut_img[cut_mask]
    label[ty:ty + oh, tx:tx + ow][cut_mask] = outlier_label
    outlier[ty:ty + oh, tx:tx + ow] = cut_mask
    return image, label, outlier


#: Ranges of ``blend_into_background``: the object's own contrast kept, and how far its mean stays from the
#: background's (0 = the background's mean colour exactly).
LOW_CONTRAST_TEXTURE = (0.15, 0.6)
LOW_CONTRAST_MEAN_OFFSET = (0.0, 0.35)


def blend_into_background(mixed: np.ndarray, background: np.ndarray, outlier: np.ndarray,
                          rng: np.random.Generator) -> np.ndarray:
    """Recolour the pasted pixels towards the mean colour of the pixels they cover, keeping a little of the object's
    texture and mean: a low-contrast outlier.

    Why: an obstacle is anomalous because of what it is, not because its colour stands out. Without such outliers
    outlier exposure can learn "an unusual colour" and a dark object on dark asphalt stays "road". The recolouring is
    generic (any pool object, any background), not a copy of an evaluation kind's appearance."""
    if not outlier.any():
        return mixed
    obj = mixed[outlier].astype(np.float32)
    bg_mean = background[outlier].astype(np.float32).mean(0)
    obj_mean = obj.mean(0)
    texture = rng.uniform(*LOW_CONTRAST_TEXTURE)
    offset = rng.uniform(*LOW_CONTRAST_MEAN_OFFSET)
    out = mixed.copy()
    out[outlier] = np.clip(bg_mean + texture * (obj - obj_mean) + offset * (obj_mean - bg_mean), 0, 255).astype(np.uint8)
    return out


#: Range of the log-uniform height / width factor of a stretched outlier (``AnomalyMix(stretch_prob=...)``).
OUTLIER_STRETCH_RANGE = (1.0 / 8.0, 8.0)


#: Smallest height in pixels of an object sized by ``road_foot_and_scale`` (a far object is still a few pixels).
MIN_ROAD_OBJECT_PX = 6


def road_foot_and_scale(label: np.ndarray, obj_mask: np.ndarray, height_ratio: tuple[float, float],
                        rng: np.random.Generator) -> tuple[tuple[int, int], float] | None:
    """A road pixel for the object to stand on, and the resize that gives it the height an object standing there has.

    Why: over flat ground a pinhole camera sees an object of height h at the row y of its foot as
    (h / camera height) * (y - horizon) pixels tall, so a road obstacle is small near the horizon and large near the
    camera. The horizon is taken as the top road row of the frame (the road vanishes there); the ratio h / camera
    height is drawn log-uniformly from ``height_ratio``. None when the frame shows no road below its top road row."""
    ry, rx = np.nonzero(label == ROAD)
    if ry.size == 0:
        return None
    below = ry > ry.min()
    if not below.any():
        return None
    ry, rx = ry[below], rx[below]
    k = int(rng.integers(ry.size))
    lo, hi = height_ratio
    ratio = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    rows = np.nonzero(obj_mask.any(1))[0]
    if rows.size == 0:
        raise ValueError("outlier object mask is empty")
    target = max(MIN_ROAD_OBJECT_PX, ratio * float(ry[k] - ry.min() + 1))
    return (int(ry[k]), int(rx[k])), target / float(rows[-1] - rows[0] + 1)


class AnomalyMix:
    """With probability ``p`` paste one random pool object into (image, label); returns the outlier mask too."""

    def __init__(self, pool: CocoOutlierPool, p: float = 0.2, outlier_label: int = OUTLIER,
                 scale_range: tuple[float, float] = (1.0, 1.0), road_prob: float = 0.0,
                 low_contrast_prob: float = 0.0, road_height_ratio: tuple[float, float] | None = None,
                 stretch_prob: float = 0.0, max_objects: int = 1) -> None:
        """``scale_range``: the object is resized by a log-uniform factor in it (tiny to large outliers);
        ``road_prob``: probability that it is placed standing on the road instead of anywhere;
        ``low_contrast_prob``: probability that its colours are pulled towards what it covers
        (``blend_into_background``); ``road_height_ratio``: objects on the road get the height of an object of
        that range of heights relative to the camera's, standing where they stand (``road_foot_and_scale``),
        instead of a ``scale_range`` factor; ``stretch_prob``: probability that its height / width ratio is
        multiplied by a log-uniform factor in ``OUTLIER_STRETCH_RANGE``.

        Why stretch: the pool's objects are blobs (height / width 0.45-2.4 for 90 % of them), so outlier exposure
        never shows a pole, a plank or a pipe, and a tall thin unknown object standing on the road is called a
        person. Stretching is a shape augmentation of any pool object, not a copy of an evaluation kind.
        ``max_objects``: a frame that gets outliers gets 1..max_objects of them (uniform), each drawn and placed as
        above; why: with few stage-2 steps, more outlier pixels and sizes per frame (the paper pastes one)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mix probability must be in [0, 1], got {p}")
        if not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {scale_range}")
        if not 0.0 <= road_prob <= 1.0:
            raise ValueError(f"road_prob must be in [0, 1], got {road_prob}")
        if not 0.0 <= low_contrast_prob <= 1.0:
            raise ValueError(f"low_contrast_prob must be in [0, 1], got {low_contrast_prob}")
        if not 0.0 <= stretch_prob <= 1.0:
            raise ValueError(f"stretch_prob must be in [0, 1], got {stretch_prob}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if road_height_ratio is not None and not 0.0 < road_height_ratio[0] <= road_height_ratio[1]:
            raise ValueError(f"road_height_ratio must be 0 < lo <= hi, got {road_height_ratio}")
        self.pool, self.p, self.outlier_label = pool, p, outlier_label
        self.scale_range, self.road_prob, self.low_contrast_prob = tuple(scale_range), road_prob, low_contrast_prob
        self.road_height_ratio = None if road_height_ratio is None else tuple(road_height_ratio)
        self.stretch_prob, self.max_objects = stretch_prob, int(max_objects)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if rng.random() >= self.p:
            return image, label, np.zeros(label.shape, bool)
        # the count is drawn only when more than one is allowed, so that one-object runs keep their random stream
        count = 1 if self.max_objects == 1 else int(rng.integers(1, self.max_objects + 1))
        mixed, mixed_label, outlier = image, label, np.zeros(label.shape, bool)
        for _ in range(count):
            mixed, mixed_label, one = self._paste_one(mixed, mixed_label, rng)
            outlier |= one
        return mixed, mixed_label, outlier

    def _paste_one(self, image: np.ndarray, label: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obj_image, obj_mask = self.pool.load(int(rng.integers(len(self.pool))))
        lo, hi = self.scale_range
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
        stretch = 1.0  # drawn only when asked for, so that runs without stretching keep their random stream
        if self.stretch_prob > 0.0 and rng.random() < self.stretch_prob:
            stretch = float(np.exp(rng.uniform(*np.log(OUTLIER_STRETCH_RANGE))))
        road = ROAD if rng.random() < self.road_prob else None
        foot = None
        if road is not None and self.road_height_ratio is not None:
            placed = road_foot_and_scale(label, obj_mask, self.road_height_ratio, rng)
            if placed is not None:
                foot, scale = placed
        mixed, mixed_label, outlier = paste_object(image, label, obj_image, obj_mask, rng, self.outlier_label,
                                                   scale=scale, on_road_label=road, foot=foot, stretch=stretch)
        if self.low_contrast_prob > 0.0 and rng.random() < self.low_contrast_prob:
            mixed = blend_into_background(mixed, image, outlier, rng)
        return mixed, mixed_label, outlier


def pasted_outlier_frame(mix: AnomalyMix, image: np.ndarray, label: np.ndarray, seed: int,
                         index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame ``index`` of a pasted-outlier check set (AnomalyMix on a val frame): (image, anomaly label, outlier).

    Why one function: training validation and ``dsa calibrate`` score the same kind of set, so the seeding
    ((seed, index): the same object at the same place in every run and tool) and the label (1 on pasted pixels,
    VOID where the frame's own label is void, 0 elsewhere) must not drift apart. ``label`` is left unchanged."""
    mixed, mixed_label, outlier = mix(image, label.copy(), np.random.default_rng([seed, 7919, index]))
    anomaly = np.where(outlier, 1, np.where(mixed_label == VOID, VOID, 0)).astype(np.uint8)
    return mixed, anomaly, outlier


class CityscapesTrainSet(torch.utils.data.Dataset):
    """Cityscapes reader + optional AnomalyMix + augmentation, as tensors for the training loop.

    Item: ``image`` uint8 tensor [3, H, W] RGB 0..255 (the model normalises with the config's mean/std itself),
    ``label`` int64 [H, W] (0..18, 254 pasted outlier, 255 void/padding, and 253 void ground with ``void_ground="marked"``),
    ``outlier`` bool [H, W] (pasted pixels),
    ``valid`` bool [H, W] (False on crop padding), ``name`` str. Randomness is drawn from ``default_rng([seed, epoch, index])``: identical across workers and
    runs; call ``set_epoch`` each epoch for fresh draws.
    """

    def __init__(self, root: str | Path, split: str = "train", augment: TrainAugment | ValTransform | None = None,
                 mix: AnomalyMix | None = None, seed: int = 0, void_ground: str = "void") -> None:
        self.reader = CityscapesDataset(root, split, void_ground=void_ground)
        self.augment = augment
        self.mix = mix
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, label, name = self.reader.load(index)
        if self.mix is not None:
            image, label, outlier = self.mix(image, label, rng)
        else:
            outlier = np.zeros(label.shape, bool)
        if isinstance(self.augment, TrainAugment):
            image, label, outlier, valid = self.augment.with_valid(image, label, outlier, rng)
        else:
            if self.augment is not None:
                image, label, outlier = self.augment(image, label, outlier, rng)
            valid = np.ones(label.shape, bool)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
            "outlier": torch.from_numpy(np.ascontiguousarray(outlier, dtype=bool)),
            "valid": torch.from_numpy(np.ascontiguousarray(valid, dtype=bool)),
            "name": name,
        }


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items of equal size: image [B, 3, H, W] uint8, label [B, H, W] int64, outlier [B, H, W] bool."""
    shapes = {tuple(item["image"].shape) for item in batch}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack images of different sizes {sorted(shapes)}; use a crop/pad transform")
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "label": torch.stack([b["label"] for b in batch]),
        "outlier": torch.stack([b["outlier"] for b in batch]),
        "valid": torch.stack([b["valid"] if "valid" in b else torch.ones_like(b["outlier"]) for b in batch]),
        "name": [b["name"] for b in batch],
    }
