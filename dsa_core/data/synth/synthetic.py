"""Format-exact synthetic datasets: Cityscapes (gtFine) and COCO instances, written from seeded procedural scenes.

Why: tests, the training recipe and the demo must exercise the real readers on the real on-disk layouts
(docs/eval_reference.md §1.1, §1.3, §4.1), and no real data can be downloaded here. Every frame is seeded from
(seed, split, index) alone, so a set is reproducible and a bigger set extends a smaller one.

Cityscapes: ``leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png`` and
``gtFine/{split}/{city}/…_gtFine_{polygons.json,labelIds.png,instanceIds.png,labelTrainIds.png,color.png}``.
labelIds/instanceIds are exactly what cityscapesscripts draws from the polygons; labelTrainIds use its label
table (void = 255); instanceIds are 16-bit (id*1000+k for instance classes); color.png is RGBA like the official
``createLabelImage(…, "color")``.

COCO: ``train2017/{id:012d}.jpg`` + ``annotations/instances_train2017.json`` with the real 80 category ids/names.
Objects are outlier-pool sprites (sprites.OUTLIER_POOL_FAMILIES, mapped to non-Cityscapes COCO categories) or, with
``families="pretrain"``, the disjoint pre-training objects (sprites.PRETRAIN_OBJECT_FAMILIES, other categories), or,
with ``families="validation"``, the model-selection objects (sprites.VALIDATION_OBJECT_FAMILIES, other categories); a
fraction of images also contains a class that overlaps Cityscapes (person, car, bicycle, …) so that the standard
AnomalyMix filter has something to drop. Some images carry a crowd annotation (uncompressed RLE, iscrowd = 1).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from dsa_core.data.coco_categories import COCO_CATEGORIES, COCO_EXCLUDED_NAMES, COCO_NAME_TO_ID
from dsa_core.data.synth.scene import ID_TO_COLOR, Scene, draw_coco_overlap_object, render_scene, smooth_noise
from dsa_core.data.synth.sprites import make_sprite, paste_sprite, saturated_colour

log = logging.getLogger(__name__)

CITYSCAPES_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("aachen", "bochum", "bremen"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn"),
}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
CITYSCAPES_FRAME = 19  # gtFine frames are the 20th frame of each snippet: <city>_<seq>_000019

#: Which COCO category each outlier-pool sprite family is annotated as (all outside COCO_EXCLUDED_NAMES).
POOL_FAMILY_CATEGORY: dict[str, str] = {
    "checker_polygon": "kite", "striped_ellipse": "frisbee", "polka_star": "umbrella",
    "gradient_crescent": "banana", "plus_cross": "teddy bear", "noise_blob": "cake", "shaded_polygon": "suitcase",
    "thin_bar": "baseball bat", "patchwork": "handbag",
}
#: The same for the backbone pre-training objects: categories no pool family uses, so the two pools stay apart.
PRETRAIN_FAMILY_CATEGORY: dict[str, str] = {
    "shaded_sphere": "sports ball", "capsule": "bottle", "marbled_slab": "book", "plaid_cloth": "tie",
    "glyph_sign": "clock", "crumpled_sheet": "backpack",
}
#: The same for the validation objects (model selection only): categories neither pool above uses.
VALIDATION_FAMILY_CATEGORY: dict[str, str] = {
    "traffic_cone": "vase", "barrel": "cup", "tied_sack": "bowl", "furniture_silhouette": "chair",
    "fallen_branch": "skis",
}
#: ``write_coco(families=...)``: which sprite families an object set draws, and the category of each.
COCO_OBJECT_SETS: dict[str, dict[str, str]] = {"outlier_pool": POOL_FAMILY_CATEGORY, "pretrain": PRETRAIN_FAMILY_CATEGORY,
                                               "validation": VALIDATION_FAMILY_CATEGORY}


def cityscapes_paths(root: Path, split: str, city: str, seq: int, frame: int = CITYSCAPES_FRAME) -> dict[str, Path]:
    """All file paths of one frame in the official layout, keyed by suffix type."""
    stem = f"{city}_{seq:06d}_{frame:06d}"
    gt = root / "gtFine" / split / city
    return {
        "image": root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        "polygons": gt / f"{stem}_gtFine_polygons.json",
        "labelIds": gt / f"{stem}_gtFine_labelIds.png",
        "instanceIds": gt / f"{stem}_gtFine_instanceIds.png",
        "labelTrainIds": gt / f"{stem}_gtFine_labelTrainIds.png",
        "color": gt / f"{stem}_gtFine_color.png",
    }


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write {path}")


def write_cityscapes_frame(root: Path, split: str, city: str, seq: int, scene: Scene) -> dict[str, Path]:
    """Write one rendered scene as a Cityscapes frame (image + the five gtFine files)."""
    paths = cityscapes_paths(root, split, city, seq)
    _write_png(paths["image"], cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    _write_png(paths["labelIds"], scene.label_ids)
    _write_png(paths["labelTrainIds"], scene.label_train_ids())
    if scene.instance_ids.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"instance id {scene.instance_ids.max()} does not fit the 16-bit instanceIds PNG")
    _write_png(paths["instanceIds"], scene.instance_ids.astype(np.uint16))
    rgba = np.concatenate([ID_TO_COLOR[scene.label_ids], np.full(scene.label_ids.shape + (1,), 255, np.uint8)], -1)
    _write_png(paths["color"], cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    paths["polygons"].write_text(json.dumps(scene.polygons_json(), indent=1))
    return paths


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Per-frame generator: depends only on (seed, split, index)."""
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])


def _write_cityscapes_range(args: tuple[Path, str, int, int, int, int, int]) -> int:
    out, split, seed, height, width, start, stop = args
    cities = CITYSCAPES_CITIES[split]
    for i in range(start, stop):
        scene = render_scene(height, width, frame_rng(seed, split, i))
        write_cityscapes_frame(out, split, cities[i % len(cities)], i // len(cities), scene)
    return stop - start


def write_cityscapes(out: Path | str, n_train: int, n_val: int, height: int = 256, width: int = 512,
                     seed: int = 0, n_test: int = 0, progress: bool = True, workers: int = 1) -> dict[str, int]:
    """Write a synthetic Cityscapes under ``out``; frames are spread round-robin over the split's cities.

    Each frame depends only on (seed, split, index), so ``workers`` > 1 processes write the same files.
    """
    out = Path(out)
    counts = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"--{split} must be >= 0, got {n}")
    for split, n in counts.items():
        chunk = 16
        jobs = [(out, split, int(seed), height, width, a, min(a + chunk, n)) for a in range(0, n, chunk)]
        bar = tqdm(total=n, desc=f"cityscapes {split}", disable=not progress or n == 0, unit="frame")
        if workers > 1 and len(jobs) > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for done in pool.imap_unordered(_write_cityscapes_range, jobs):
                    bar.update(done)
        else:
            for job in jobs:
                bar.update(_write_cityscapes_range(job))
        bar.close()
    log.info("wrote synthetic Cityscapes to %s: %s", out, counts)
    return counts


# -------------------------------------------------------------------------------------------------------- COCO

@dataclass
class _CocoObject:
    category: str
    mask: np.ndarray
    polygon: np.ndarray | None  # None -> crowd (RLE)


def _coco_image(h: int, w: int, rng: np.random.Generator, excluded: str | None, crowd: bool,
                category_of: dict[str, str]) -> tuple[np.ndarray, list[_CocoObject]]:
    families = tuple(category_of)
    base = np.stack([saturated_colour(rng) * 0.5 + 60] * 2)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = base[0] * (1 - t) + base[1][::-1] * t + 25 * smooth_noise(rng, h, w, 8)[..., None]
    img = np.broadcast_to(img, (h, w, 3)).clip(0, 255).astype(np.uint8).copy()
    objects: list[_CocoObject] = []
    for _ in range(int(rng.integers(1, 4))):
        fam = families[int(rng.integers(len(families)))]
        size = max(6, int(rng.uniform(0.15, 0.5) * min(h, w)))
        sp = make_sprite(fam, size, rng)
        x0, y0 = int(rng.integers(0, w - size)), int(rng.integers(0, h - size))
        m = paste_sprite(img, sp, (x0, y0))
        objects.append(_CocoObject(category_of[fam], m, sp.polygon + np.array([x0, y0], np.int32)))
    if excluded is not None:
        size = rng.uniform(0.2, 0.45) * min(h, w)
        poly, m = draw_coco_overlap_object(excluded, img, rng.uniform(size, w - size), rng.uniform(size, h - size), size, rng)
        objects.append(_CocoObject(excluded, m, poly))
    if crowd:
        fam = families[int(rng.integers(len(families)))]
        m = np.zeros((h, w), bool)
        for _ in range(3):
            size = max(6, int(rng.uniform(0.06, 0.12) * min(h, w)))
            m |= paste_sprite(img, make_sprite(fam, size, rng), (int(rng.integers(0, w - size)), int(rng.integers(0, h - size))))
        objects.append(_CocoObject(category_of[fam], m, None))
    return img, objects


def _rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO crowd encoding: column-major run lengths starting with a background run."""
    flat = mask.astype(np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"counts": [int(r) for r in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def write_coco(out: Path | str, n_images: int, height: int = 480, width: int = 640, seed: int = 0,
               excluded_fraction: float = 0.3, crowd_fraction: float = 0.15, split: str = "train2017",
               progress: bool = True, families: str = "outlier_pool") -> dict[str, int]:
    """Write a synthetic COCO instances set (see module docstring); returns counts of images / annotations.

    ``families``: ``outlier_pool`` (the outlier-exposure pool), ``pretrain`` (objects for backbone pre-training) or
    ``validation`` (objects for model selection, never trained on).
    """
    if families not in COCO_OBJECT_SETS:
        raise ValueError(f"unknown object set {families!r}; expected one of {tuple(COCO_OBJECT_SETS)}")
    if n_images < 0:
        raise ValueError(f"--images must be >= 0, got {n_images}")
    if min(height, width) < 32:
        raise ValueError(f"COCO images must be at least 32 px per side, got {height}x{width}")
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(n_images), desc="coco", disable=not progress or n_images == 0, unit="img"):
        rng = np.random.default_rng([int(seed), 7, i])
        excluded = (COCO_EXCLUDED_NAMES[int(rng.integers(len(COCO_EXCLUDED_NAMES)))]
                    if rng.random() < excluded_fraction else None)
        img, objects = _coco_image(height, width, rng, excluded, crowd=rng.random() < crowd_fraction,
                                   category_of=COCO_OBJECT_SETS[families])
        image_id = i + 1
        file_name = f"{image_id:012d}.jpg"
        if not cv2.imwrite(str(out / split / file_name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {out / split / file_name}")
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width,
                       "license": 1, "coco_url": "", "flickr_url": "", "date_captured": ""})
        for obj in objects:
            if obj.polygon is None:
                seg = _rle_uncompressed(obj.mask)
                rle = mask_utils.frPyObjects(seg, height, width)
                iscrowd = 1
            else:
                seg = [obj.polygon.astype(float).ravel().tolist()]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
                iscrowd = 0
            area = float(mask_utils.area(rle))
            if area <= 0:
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": COCO_NAME_TO_ID[obj.category], "segmentation": seg, "area": area,
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": iscrowd})
    data = {
        "info": {"description": "dsa synth coco (synthetic, format-exact)", "version": "1.0", "year": 2017},
        "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
        "images": images, "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": sup} for cid, name, sup in COCO_CATEGORIES],
    }
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    log.info("wrote synthetic COCO to %s: %d images, %d annotations", out, len(images), len(annotations))
    return {"images": len(images), "annotations": len(annotations)}
