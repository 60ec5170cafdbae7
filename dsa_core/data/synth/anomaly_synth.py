"""Synthetic anomaly benchmarks in the real on-disk formats (docs/eval_reference.md §1.4-§1.7, §4), for ``dsa synth``.

Why: the real benchmarks cannot be downloaded here, yet ``dsa eval`` and its tests must run on exactly the layouts,
names, counts and label encodings the official loaders read (see ``anomaly_sets`` for the readers). Frames are
procedural road scenes (``scene.render_scene``) with anomalies drawn ONLY from ``scene.TEST_ANOMALY_FAMILIES``
(rock, cardboard box, tyre, animal, wooden crate): absent from the training scenes and from the COCO
outlier-exposure pool, so a benchmark measures generalisation, not memorisation of the OE generator.

What each format imitates:

* ``fs_laf``: small objects lying on the road; label 0 = road, 1 = object, 255 = everything off the road (as the
  real FS L&F), plus the LAF ``gtCoarse`` labelIds they derive from; one anomaly-free frame (index 79 of the
  official 100, the last frame of smaller sets).
* ``fs_static``: Cityscapes-val-like frames with objects soft-blended anywhere; stored as the unmodified
  Cityscapes image plus an integer overlay (``*_rgb.npz``); void = the Cityscapes void pixels.
* ``road_anomaly``: large objects (3-20 % of the frame) standing anywhere on the ground (road or not), under
  day/dusk/fog (domain shift), seen by a camera without ego hood or out-of-roi frame (web photos); labels
  0/1 = in-distribution (1 on the road), 2 = anomaly, no void.
* ``smiyc_ra21``: like Road Anomaly, labels 0/1/255 with void on Cityscapes-void content and a thin band around
  each anomaly border (SMIYC's labelling gaps); plus unlabelled test images so ``AnomalyTrack-all`` has 110.
* ``smiyc_ro21``: small obstacles on the road; 0 = road, 1 = obstacle, 255 = everything else; fids
  ``validation_<n>`` including the ten SMIYC excludes, so that ``count`` frames survive the exclusion.

Every frame depends only on (seed, format, index), so a larger set extends a smaller one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from dsa_core.data.anomaly_sets import RO21_EXCLUDED_PREFIXES
from dsa_core.labels import VOID, id_to_train_id_lut
from dsa_core.data.synth.scene import CONDITIONS, Scene, render_scene
from dsa_core.data.synth.sprites import TEST_ANOMALY_FAMILIES, Sprite, make_sprite, paste_sprite

log = logging.getLogger(__name__)

#: Lost & Found scenes of the FS L&F val frames (LAF split they come from).
LAF_SCENES: tuple[tuple[str, str], ...] = (
    ("04_Maurener_Weg_8", "test"), ("01_Hanns_Klemm_Str_45", "train"), ("13_Elly_Beinhorn_Str", "train"),
)
CS_VAL_CITIES: tuple[str, ...] = ("frankfurt", "lindau", "munster")
#: Class names and frame counts of the 100 SMIYC AnomalyTrack test fids (``<class>NNNN``; labels withheld).
RA21_TEST_CLASSES: tuple[tuple[str, int], ...] = (
    ("zebra", 2), ("sheep", 11), ("rhino", 2), ("pig", 2), ("lion", 1), ("leopard", 1), ("horse", 5),
    ("goose", 1), ("elephant", 12), ("donkey", 2), ("deer", 2), ("cow", 14), ("cock", 1), ("camel", 2),
    ("bear", 1), ("airplane", 2), ("boat_trailer", 5), ("caravan", 8), ("carriage", 8), ("scooter", 1),
    ("tractor", 6), ("coffin", 1), ("cones", 7), ("hay", 1), ("piano", 1), ("tent", 1),
)
RA21_TEST_FIDS: tuple[str, ...] = tuple(f"{c}{i:04d}" for c, n in RA21_TEST_CLASSES for i in range(n))
_FORMAT_CODE = {"fs_laf": 11, "fs_static": 12, "road_anomaly": 13, "smiyc_ra21": 14, "smiyc_ro21": 15}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Defaults of one format: the official validation count and a frame size.

    Sizes are below the real ones (FS 1024x2048, RA 720x1280, RO21 1080x1920) with the real aspect ratios, so that
    ``dsa synth all`` stays quick on a CPU; pass ``--height/--width`` for full-size frames.
    """

    key: str
    count: int
    height: int
    width: int
    help: str


SPECS: dict[str, BenchmarkSpec] = {
    "fs_laf": BenchmarkSpec("fs_laf", 100, 256, 512, "Fishyscapes Lost & Found val (labels + LAF images)"),
    "fs_static": BenchmarkSpec("fs_static", 30, 256, 512, "Fishyscapes Static val (overlays + Cityscapes val)"),
    "road_anomaly": BenchmarkSpec("road_anomaly", 60, 360, 640, "Road Anomaly (frame_list.json + frames/)"),
    "smiyc_ra21": BenchmarkSpec("smiyc_ra21", 10, 360, 640, "SMIYC RoadAnomaly21 (dataset_AnomalyTrack)"),
    "smiyc_ro21": BenchmarkSpec("smiyc_ro21", 30, 360, 640, "SMIYC RoadObstacle21 (dataset_ObstacleTrack)"),
}


def _frame_rng(seed: int, key: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _FORMAT_CODE[key], int(index)])


def _write(path: Path, rgb_or_label: np.ndarray, params: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = cv2.cvtColor(rgb_or_label, cv2.COLOR_RGB2BGR) if rgb_or_label.ndim == 3 else rgb_or_label
    if not cv2.imwrite(str(path), arr, params or []):
        raise OSError(f"could not write {path}")


def _family(rng: np.random.Generator) -> str:
    return TEST_ANOMALY_FAMILIES[int(rng.integers(len(TEST_ANOMALY_FAMILIES)))]


def _road_obstacle(image: np.ndarray, scene: Scene, rng: np.random.Generator, scale: tuple[float, float]) -> np.ndarray:
    """Paste a small object standing on a random road pixel, sized by its distance below the horizon.

    The ground-plane camera gives (apparent size) ∝ (row - horizon); ``scale`` is that ratio's range.
    Returns the frame mask (empty if the frame shows no road).
    """
    h, w = scene.label_ids.shape
    road = scene.road_mask.copy()
    road[: min(h, scene.horizon + 3)] = False
    ys, xs = np.nonzero(road)
    if ys.size == 0:
        return np.zeros((h, w), bool)
    i = int(rng.integers(ys.size))
    y, x = int(ys[i]), int(xs[i])
    size = int(np.clip((y - scene.horizon) * rng.uniform(*scale), 6, max(6, min(h, w) // 3)))
    sprite = make_sprite(_family(rng), size, rng)
    top_left = (x - size // 2, y - int(size * 0.9))
    return paste_sprite(image, sprite, top_left, soft=0.0, shadow=float(rng.uniform(0.2, 0.5)))


def _large_anomaly(image: np.ndarray, rng: np.random.Generator, area: tuple[float, float],
                   horizon: int | None = None, soft: float = 0.0, shadow: float = 0.3) -> np.ndarray:
    """Paste one object covering about ``area`` (fraction of the frame); returns its frame mask.

    With ``horizon`` the object stands on the ground: its bottom row lies below the horizon, lower for bigger
    (nearer) objects, and it may be cut by the frame edges. Without it, it is placed anywhere (FS Static pastes).
    """
    h, w = image.shape[:2]
    frac = rng.uniform(*area)
    size = int(np.clip(np.sqrt(2.0 * frac * h * w), 6, 0.95 * min(h, w)))
    sprite = make_sprite(_family(rng), size, rng)
    x = int(rng.integers(-size // 4, max(1, w - 3 * size // 4)))
    if horizon is None:
        y = int(rng.integers(-size // 4, max(1, h - 3 * size // 4)))
    else:
        low = min(h - 1, max(horizon, 0) + max(4, size // 3))
        y = int(rng.integers(low, max(low + 1, h + size // 8))) - size
    blur = soft * size / 40.0 if soft > 0 else 0.0
    return paste_sprite(image, sprite, (x, y), soft=blur, shadow=shadow)


#: Hard held-out kinds for the FS L&F format (``dsa synth fs_laf --kind K``): each frame's obstacles are all of one
#: kind, so a report per kind says where a score fails. Appearances still come only from TEST_ANOMALY_FAMILIES (or,
#: for photo_like, from another street rendered upside down in shifted hues), never from the outlier pool.
HARD_KINDS: tuple[str, ...] = ("road_coloured", "tiny", "thin_pole", "photo_like", "large_near")
#: Kinds made after every recipe decision had been taken on the hard kinds, to measure once whether those decisions
#: carry to kinds nothing was chosen on (results/train_nano.md, "Fresh held-out kinds"): objects lying flat on the
#: road, clusters of small debris, near-black objects, and ordinary obstacles at dusk or in fog.
FRESH_KINDS: tuple[str, ...] = ("flat", "cluster", "dark", "weather")
#: ``dsa synth fs_laf --kind`` choices; a kind's random stream is its index here, so adding kinds at the end keeps
#: every existing set byte for byte.
FS_LAF_KINDS: tuple[str, ...] = HARD_KINDS + FRESH_KINDS


def _road_pixel(scene: Scene, rng: np.random.Generator, near: bool = False) -> tuple[int, int] | None:
    h = scene.label_ids.shape[0]
    road = scene.road_mask.copy()
    road[: min(h, scene.horizon + 3)] = False
    if near:  # the lowest quarter of the road rows
        rows = np.nonzero(road.any(1))[0]
        if rows.size:
            road[: rows[0] + 3 * (rows[-1] - rows[0]) // 4] = False
    ys, xs = np.nonzero(road)
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    return int(ys[i]), int(xs[i])


def _resized_sprite(src: Sprite, width: int, height: int) -> Sprite:
    """``src``'s object (its mask's bounding box) resized to ``width`` x ``height`` pixels."""
    ys, xs = np.nonzero(src.mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rgb = cv2.resize(src.rgb[box], (width, height), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(src.mask[box].astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    if not mask.any():
        mask[:] = 1
    poly = max(cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0], key=cv2.contourArea)
    return Sprite(src.family, rgb, mask.astype(bool), poly.reshape(-1, 2))


def _fresh_obstacle(kind: str, image: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Paste one obstacle of a fresh held-out ``kind`` (FRESH_KINDS) on the road; returns its frame mask."""
    h, w = scene.label_ids.shape
    if kind == "weather":  # the scene carries the shift (render_scene's condition); the obstacle is FS L&F's own
        return _road_obstacle(image, scene, rng, (0.1, 0.35))
    where = _road_pixel(scene, rng)
    if where is None:
        return np.zeros((h, w), bool)
    y, x = where
    dist_scale = max(8.0, float(y - scene.horizon))
    if kind == "flat":  # lying on the road: 2.5-5 times wider than high (lost cargo, a plank, a flattened box)
        width = int(np.clip(dist_scale * rng.uniform(0.5, 1.0), 12, w // 2))
        height = max(4, int(round(width * rng.uniform(0.2, 0.4))))
        sprite = _resized_sprite(make_sprite(_family(rng), max(width, 6), rng), width, height)
    elif kind == "dark":  # near black, the texture kept (dark objects on dark asphalt)
        size = int(np.clip(dist_scale * rng.uniform(0.15, 0.4), 8, min(h, w) // 3))
        src = make_sprite(_family(rng), size, rng)
        rgb = src.rgb.astype(np.float32) * rng.uniform(0.12, 0.3)
        sprite = Sprite(src.family, np.clip(rgb, 0, 255).astype(np.uint8), src.mask, src.polygon)
    elif kind == "cluster":  # 3-6 small objects of one family close together (a debris field)
        family, mask = _family(rng), np.zeros((h, w), bool)
        for _ in range(int(rng.integers(3, 7))):
            size = int(np.clip(dist_scale * rng.uniform(0.06, 0.15), 6, min(h, w) // 4))
            cx = x + int(rng.integers(-2 * size, 2 * size + 1))
            cy = int(np.clip(y + int(rng.integers(-size // 2, size // 2 + 1)), scene.horizon + 2, h - 1))
            sprite = make_sprite(family, size, rng)
            mask |= paste_sprite(image, sprite, (cx - size // 2, cy - size + 1), shadow=float(rng.uniform(0.1, 0.4)))
        return mask
    else:
        raise ValueError(f"unknown fresh kind {kind!r}; expected one of {FRESH_KINDS}")
    sh, sw = sprite.mask.shape
    return paste_sprite(image, sprite, (x - sw // 2, y - sh + 1), shadow=float(rng.uniform(0.0, 0.4)))


def _held_out_obstacle(kind: str, image: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Paste one obstacle of a held-out ``kind`` (FS_LAF_KINDS) standing on the road; returns its frame mask."""
    h, w = scene.label_ids.shape
    if kind in FRESH_KINDS:
        return _fresh_obstacle(kind, image, scene, rng)
    if kind == "large_near":
        return _large_anomaly(image, rng, (0.06, 0.18), horizon=scene.horizon)
    where = _road_pixel(scene, rng)
    if where is None:
        return np.zeros((h, w), bool)
    y, x = where
    dist_scale = max(8.0, float(y - scene.horizon))
    if kind == "tiny":  # at most 20 px on its longer side
        size = int(rng.integers(6, 21))
        sprite = make_sprite(_family(rng), size, rng)
    elif kind == "road_coloured":  # the local road colour, the texture kept at low contrast
        size = int(np.clip(dist_scale * rng.uniform(0.15, 0.4), 8, min(h, w) // 3))
        sprite = make_sprite(_family(rng), size, rng)
        y0, y1, x0, x1 = max(0, y - size), min(h, y + size), max(0, x - size), min(w, x + size)
        patch = image[y0:y1, x0:x1][scene.road_mask[y0:y1, x0:x1]]
        road_rgb = patch.reshape(-1, 3).mean(0) if patch.size else np.array([128.0, 128.0, 128.0])
        lum = sprite.rgb.astype(np.float32).mean(-1, keepdims=True)
        mean = max(float(lum[sprite.mask].mean()), 1.0)
        rgb = road_rgb * (1.0 + 0.25 * (lum / mean - 1.0)) * rng.uniform(0.85, 1.1)
        sprite = Sprite(sprite.family, np.clip(rgb, 0, 255).astype(np.uint8), sprite.mask, sprite.polygon)
    elif kind == "thin_pole":  # tall and a few pixels wide, textured like a held-out family
        ph = int(np.clip(dist_scale * rng.uniform(0.6, 1.2), 20, h - 2))
        pw = max(2, int(round(ph * rng.uniform(0.04, 0.09))))
        src = make_sprite(_family(rng), max(ph, 6), rng)
        rgb = cv2.resize(src.rgb, (pw, ph), interpolation=cv2.INTER_AREA)
        mask = np.ones((ph, pw), bool)
        poly = np.array([[0, 0], [pw - 1, 0], [pw - 1, ph - 1], [0, ph - 1]], np.int32)
        sprite = Sprite("thin_pole", rgb, mask, poly)
    elif kind == "photo_like":  # a crop of another street, upside down and hue-shifted: busy, photo-like
        size = int(np.clip(dist_scale * rng.uniform(0.25, 0.6), 12, min(h, w) // 2))
        other = render_scene(h, w, rng).image
        cy, cx = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = np.ascontiguousarray(other[cy:cy + size, cx:cx + size][::-1])
        hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(rng.integers(40, 140))) % 180).astype(np.uint8)
        crop = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(mask, (size // 2, size // 2), (size // 2 - 1, int(size * rng.uniform(0.3, 0.48))), 0, 0, 360, 1, -1)
        poly = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0][0].reshape(-1, 2)
        sprite = Sprite("photo_like", crop, mask.astype(bool), poly)
    else:
        raise ValueError(f"unknown held-out kind {kind!r}; expected one of {FS_LAF_KINDS}")
    sh, sw = sprite.mask.shape
    return paste_sprite(image, sprite, (x - sw // 2, y - sh + 1), shadow=float(rng.uniform(0.0, 0.4)))


def _void_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the mask border, outside the mask (SMIYC leaves such gaps unlabelled)."""
    if width <= 0 or not mask.any():
        return np.zeros_like(mask)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask


def _scene_void(scene: Scene) -> np.ndarray:
    return id_to_train_id_lut()[scene.label_ids] == VOID


# --------------------------------------------------------------------------------------------------- writers

def write_fs_laf(out: Path, count: int, height: int, width: int, seed: int = 0, progress: bool = True,
                 kind: str | None = None) -> list[str]:
    """``fishyscapes_lostandfound/NNNN_<lafid>_labels.png`` + ``lostandfound/leftImg8bit/<split>/<scene>/...``
    (+ the source ``lostandfound/gtCoarse/.../<lafid>_gtCoarse_labelIds.png``: 0 ignore, 1 road, 2.. objects).

    ``kind`` (one of FS_LAF_KINDS) makes every obstacle of that held-out kind, with its own random stream."""
    if kind is not None and kind not in FS_LAF_KINDS:
        raise ValueError(f"unknown held-out kind {kind!r}; expected one of {FS_LAF_KINDS}")
    clean = 79 if count > 79 else (count - 1 if count >= 3 else -1)
    names = []
    for i in tqdm(range(count), desc="synth fs_laf", unit="frame", disable=not progress):
        rng = _frame_rng(seed, "fs_laf", i) if kind is None else np.random.default_rng(
            [int(seed), _FORMAT_CODE["fs_laf"], 100 + FS_LAF_KINDS.index(kind), i])
        scene_name, split = LAF_SCENES[i % len(LAF_SCENES)]
        laf_id = f"{scene_name}_{i // len(LAF_SCENES):06d}_{30 + 30 * (i % 7):06d}"
        condition = "day" if kind != "weather" else ("dusk", "fog")[int(rng.integers(2))]
        scene = render_scene(height, width, rng, condition=condition)
        image = scene.image.copy()
        coarse = np.zeros((height, width), np.uint8)  # LAF gtCoarse: 0 = ignore, 1 = free road, 2.. = objects
        coarse[scene.road_mask] = 1
        if i != clean:
            for k in range(int(rng.integers(1, 4)) if kind != "large_near" else 1):
                mask = (_road_obstacle(image, scene, rng, (0.1, 0.35)) if kind is None
                        else _held_out_obstacle(kind, image, scene, rng))
                coarse[mask] = 2 + k
        label = np.select([coarse == 0, coarse == 1], [VOID, 0], 1).astype(np.uint8)  # the FS remapping
        name = f"{i:04d}_{laf_id}"
        _write(out / "fishyscapes_lostandfound" / f"{name}_labels.png", label)
        _write(out / "lostandfound" / "leftImg8bit" / split / scene_name / f"{laf_id}_leftImg8bit.png", image)
        _write(out / "lostandfound" / "gtCoarse" / split / scene_name / f"{laf_id}_gtCoarse_labelIds.png", coarse)
        names.append(name)
    return names


def write_fs_static(out: Path, count: int, height: int, width: int, seed: int = 0, progress: bool = True) -> list[str]:
    """``fs_val_v3/NNNN_<csid>_{labels.png,rgb.npz}`` + the Cityscapes val images ``leftImg8bit/val/...``."""
    names = []
    for i in tqdm(range(count), desc="synth fs_static", unit="frame", disable=not progress):
        rng = _frame_rng(seed, "fs_static", i)
        city = CS_VAL_CITIES[i % len(CS_VAL_CITIES)]
        csid = f"{city}_{i // len(CS_VAL_CITIES):06d}_{19 + 10 * (i % 5):06d}"
        scene = render_scene(height, width, rng)
        blended = scene.image.copy()
        anomaly = np.zeros((height, width), bool)
        for _ in range(int(rng.integers(1, 3))):
            anomaly |= _large_anomaly(blended, rng, (0.01, 0.06), soft=float(rng.uniform(0.5, 1.5)), shadow=0.0)
        label = np.where(_scene_void(scene), VOID, 0).astype(np.uint8)
        label[anomaly] = 1
        overlay = blended.astype(np.int16) - scene.image.astype(np.int16)
        name = f"{i:04d}_{csid}"
        _write(out / "leftImg8bit" / "val" / city / f"{csid}_leftImg8bit.png", scene.image)
        _write(out / "fs_val_v3" / f"{name}_labels.png", label)
        np.savez_compressed(out / "fs_val_v3" / f"{name}_rgb.npz", rgb=overlay)
        names.append(name)
    return names


def _anomaly_track_frame(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, Scene]:
    """Road-Anomaly-like frame: 1-2 large objects anywhere under a random condition; (image, anomaly mask, scene).

    Rendered without the vehicle camera's hood and out-of-roi frame: the real sets are web photos, and a hood
    labelled in-distribution made these sets score a camera property (void in training) instead of anomalies."""
    scene = render_scene(height, width, rng, condition=CONDITIONS[int(rng.integers(len(CONDITIONS)))],
                         vehicle_camera=False)
    image = scene.image.copy()
    anomaly = np.zeros((height, width), bool)
    for _ in range(1 + int(rng.random() < 0.3)):
        anomaly |= _large_anomaly(image, rng, (0.03, 0.2), horizon=scene.horizon)
    return image, anomaly, scene


def write_road_anomaly(out: Path, count: int, height: int, width: int, seed: int = 0,
                       progress: bool = True) -> list[str]:
    """``RoadAnomaly_jpg/frame_list.json`` + ``frames/<name>.jpg`` + ``frames/<name>.labels/labels_semantic.png``."""
    base = out / "RoadAnomaly_jpg"
    names = []
    for i in tqdm(range(count), desc="synth road_anomaly", unit="frame", disable=not progress):
        rng = _frame_rng(seed, "road_anomaly", i)
        image, anomaly, scene = _anomaly_track_frame(rng, height, width)
        label = np.zeros((height, width), np.uint8)
        label[scene.road_mask] = 1
        label[anomaly] = 2
        stem = f"synth{i:02d}_scene"
        _write(base / "frames" / f"{stem}.jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        _write(base / "frames" / f"{stem}.labels" / "labels_semantic.png", label)
        names.append(f"{stem}.jpg")
    base.mkdir(parents=True, exist_ok=True)
    (base / "frame_list.json").write_text(json.dumps(names, indent=1))
    return [Path(n).stem for n in names]


def write_smiyc_ra21(out: Path, count: int, height: int, width: int, seed: int = 0, progress: bool = True,
                     test_images: int = len(RA21_TEST_FIDS)) -> list[str]:
    """``dataset_AnomalyTrack/images/<fid>.jpg`` (+ labels for ``validationNNNN``); ``test_images`` unlabelled
    test frames (default 100, so that SMIYC's ``AnomalyTrack-all`` finds its 110 images)."""
    if not 0 <= test_images <= len(RA21_TEST_FIDS):
        raise ValueError(f"test_images must lie in [0, {len(RA21_TEST_FIDS)}], got {test_images}")
    base = out / "dataset_AnomalyTrack"
    band = max(1, min(height, width) // 180)
    fids = [f"validation{i:04d}" for i in range(count)]
    jobs = [(fid, True) for fid in fids] + [(fid, False) for fid in RA21_TEST_FIDS[:test_images]]
    for j, (fid, labelled) in enumerate(tqdm(jobs, desc="synth smiyc_ra21", unit="frame", disable=not progress)):
        rng = _frame_rng(seed, "smiyc_ra21", j)
        image, anomaly, scene = _anomaly_track_frame(rng, height, width)
        _write(base / "images" / f"{fid}.jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if labelled:
            label = np.where(_scene_void(scene), VOID, 0).astype(np.uint8)
            label[anomaly] = 1
            label[_void_band(anomaly, band)] = VOID
            _write(base / "labels_masks" / f"{fid}_labels_semantic.png", label)
    return fids


def ro21_fids(count: int) -> tuple[list[str], list[str]]:
    """(all fids ``validation_1..M``, the ``count`` that survive SMIYC's prefix exclusions)."""
    all_fids, kept = [], []
    n = 0
    while len(kept) < count:
        n += 1
        fid = f"validation_{n}"
        all_fids.append(fid)
        if not any(fid.startswith(p) for p in RO21_EXCLUDED_PREFIXES):
            kept.append(fid)
    return all_fids, kept


def write_smiyc_ro21(out: Path, count: int, height: int, width: int, seed: int = 0, progress: bool = True) -> list[str]:
    """``dataset_ObstacleTrack/images/validation_<n>.webp`` + ``labels_masks/<fid>_labels_semantic.png``."""
    base = out / "dataset_ObstacleTrack"
    all_fids, kept = ro21_fids(count)
    for j, fid in enumerate(tqdm(all_fids, desc="synth smiyc_ro21", unit="frame", disable=not progress)):
        rng = _frame_rng(seed, "smiyc_ro21", j)
        scene = render_scene(height, width, rng)
        image = scene.image.copy()
        label = np.full((height, width), VOID, np.uint8)
        label[scene.road_mask] = 0
        for _ in range(int(rng.integers(1, 4))):
            label[_road_obstacle(image, scene, rng, (0.05, 0.25))] = 1
        _write(base / "images" / f"{fid}.webp", image, [cv2.IMWRITE_WEBP_QUALITY, 95])
        _write(base / "labels_masks" / f"{fid}_labels_semantic.png", label)
    return kept


WRITERS: dict[str, Callable[..., list[str]]] = {
    "fs_laf": write_fs_laf, "fs_static": write_fs_static, "road_anomaly": write_road_anomaly,
    "smiyc_ra21": write_smiyc_ra21, "smiyc_ro21": write_smiyc_ro21,
}


def write_benchmark(key: str, out: Path | str, count: int | None = None, height: int | None = None,
                    width: int | None = None, seed: int = 0, progress: bool = True, **kwargs) -> list[str]:
    """Write benchmark ``key`` under ``out`` (defaults from ``SPECS``); returns the evaluated frame names."""
    if key not in SPECS:
        raise KeyError(f"unknown benchmark format {key!r}; expected one of {sorted(SPECS)}")
    spec = SPECS[key]
    count = spec.count if count is None else int(count)
    height = spec.height if height is None else int(height)
    width = spec.width if width is None else int(width)
    if count < 1:
        raise ValueError(f"{key}: --count must be >= 1, got {count}")
    if min(height, width) < 32:
        raise ValueError(f"{key}: frames must be at least 32x32, got {height}x{width}")
    names = WRITERS[key](Path(out), count, height, width, seed=seed, progress=progress, **kwargs)
    log.info("wrote synthetic %s (%d evaluation frames, %dx%d) to %s", key, len(names), height, width, out)
    return names
