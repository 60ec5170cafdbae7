"""Cityscapes reader, COCO outlier pool, AnomalyMix, joint augmentation and the training set."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label
from PIL import Image
from pycocotools.coco import COCO

from dsa_core.data.cityscapes import CityscapesDataset
from dsa_core.labels import OUTLIER, VOID
from dsa_core.data.coco_mix import (
    AnomalyMix, CityscapesTrainSet, CocoOutlierPool, collate, paste_object, pasted_outlier_frame, write_ood_masks,
)
from dsa_core.data.synth.synthetic import write_cityscapes, write_coco
from dsa_core.data.transforms import TrainAugment, ValTransform, photometric_distortion

EXCLUDED = {"person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "stop sign"}


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    write_cityscapes(root, 4, 2, height=80, width=160, seed=5, progress=False)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco(root, 14, height=48, width=64, seed=1, excluded_fraction=0.4, crowd_fraction=0.3, progress=False)
    return root


@pytest.fixture(scope="module")
def pool(coco_root: Path) -> CocoOutlierPool:
    return CocoOutlierPool(coco_root, min_size=32)


# ---------------------------------------------------------------------------------------------- Cityscapes reader

def test_reader_round_trip(cs_root: Path) -> None:
    ds = CityscapesDataset(cs_root, "train")
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        name = item["name"]
        city = name.split("_")[0]
        img = np.asarray(Image.open(cs_root / "leftImg8bit" / "train" / city / f"{name}_leftImg8bit.png"))
        lab = np.asarray(Image.open(cs_root / "gtFine" / "train" / city / f"{name}_gtFine_labelTrainIds.png"))
        assert item["image"].dtype == np.uint8 and item["image"].shape == (80, 160, 3)
        assert item["label"].dtype == np.int64
        np.testing.assert_array_equal(item["image"], img)
        np.testing.assert_array_equal(item["label"], lab)
        assert set(np.unique(item["label"])) <= set(range(19)) | {255}


def test_reader_derives_train_ids_without_trainid_files(cs_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cs"
    shutil.copytree(cs_root, copy)
    removed = list(copy.glob("gtFine/*/*/*_labelTrainIds.png"))
    assert removed
    for p in removed:
        p.unlink()
    full, derived = CityscapesDataset(cs_root, "val"), CityscapesDataset(copy, "val")
    for i in range(len(full)):
        a, b = full[i], derived[i]
        assert a["name"] == b["name"]
        np.testing.assert_array_equal(a["label"], b["label"])
        # and independently: trainId of each labelId via the cityscapesscripts table
        city = b["name"].split("_")[0]
        ids = np.asarray(Image.open(copy / "gtFine" / "val" / city / f"{b['name']}_gtFine_labelIds.png"))
        expected = np.array([[id2label[v].trainId if id2label[v].trainId not in (-1, 255) else 255 for v in row]
                             for row in ids])
        np.testing.assert_array_equal(b["label"], expected)


def test_reader_errors(cs_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        CityscapesDataset(tmp_path, "train")
    copy = tmp_path / "cs"
    shutil.copytree(cs_root, copy)
    # An image without any gtFine label.
    victim = sorted(copy.glob("gtFine/train/*/*_gtFine_labelIds.png"))[0]
    victim.unlink()
    Path(str(victim).replace("labelIds", "labelTrainIds")).unlink()
    with pytest.raises(FileNotFoundError, match="without gtFine labels"):
        CityscapesDataset(copy, "train")
    # A label without an image.
    img = sorted(copy.glob("leftImg8bit/val/*/*.png"))[0]
    img.unlink()
    with pytest.raises(FileNotFoundError, match="without a leftImg8bit image"):
        CityscapesDataset(copy, "val")
    # Size mismatch between image and label.
    shutil.rmtree(copy)
    shutil.copytree(cs_root, copy)
    lab = sorted(copy.glob("gtFine/train/*/*_labelTrainIds.png"))[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(lab)
    ds = CityscapesDataset(copy, "train")
    with pytest.raises(ValueError, match="is \\(10, 10\\), image is"):
        [ds[i] for i in range(len(ds))]


# ------------------------------------------------------------------------------------------------ COCO pool

def test_pool_drops_images_with_overlapping_classes(coco_root: Path, pool: CocoOutlierPool) -> None:
    data = json.loads((coco_root / "annotations" / "instances_train2017.json").read_text())
    cat_name = {c["id"]: c["name"] for c in data["categories"]}
    bad = {a["image_id"] for a in data["annotations"] if cat_name[a["category_id"]] in EXCLUDED}
    with_anns = {a["image_id"] for a in data["annotations"]}
    assert bad and with_anns - bad
    assert pool.image_ids == sorted(with_anns - bad)
    assert pool.dropped_ids == bad
    # min_size: every image is 48x64, so 49 drops them all
    with pytest.raises(ValueError, match="empty after filtering"):
        CocoOutlierPool(coco_root, min_size=49)


def test_pool_mask_is_union_of_all_instances_incl_crowd(coco_root: Path, pool: CocoOutlierPool) -> None:
    coco = COCO(str(coco_root / "annotations" / "instances_train2017.json"))
    saw_crowd = False
    for i, img_id in enumerate(pool.image_ids):
        image, mask = pool.load(i)
        assert image.shape == (48, 64, 3) and mask.dtype == bool
        anns = [a for a in coco.dataset["annotations"] if a["image_id"] == img_id]
        saw_crowd |= any(a["iscrowd"] for a in anns)
        expected = np.zeros((48, 64), bool)
        for a in anns:
            expected |= coco.annToMask(a) > 0
        np.testing.assert_array_equal(mask, expected)
    assert saw_crowd


def test_ood_mask_preparation(pool: CocoOutlierPool, tmp_path: Path) -> None:
    out = write_ood_masks(pool, tmp_path / "ood", progress=False)
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"{i:012d}.png" for i in pool.image_ids]
    for i, f in enumerate(files):
        png = np.asarray(Image.open(f))
        assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 254}
        np.testing.assert_array_equal(png == 254, pool.load(i)[1])


# ------------------------------------------------------------------------------------------------ AnomalyMix

def test_anomaly_mix_pastes_exactly_the_mask_pixels(pool: CocoOutlierPool) -> None:
    rng = np.random.default_rng(0)
    base_img = rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)
    base_lab = rng.integers(0, 19, (70, 150)).astype(np.int64)
    base_lab[:5] = 255
    for k in range(len(pool)):
        obj_img, obj_mask = pool.load(k)
        img, lab, out = paste_object(base_img, base_lab, obj_img, obj_mask, np.random.default_rng(k))
        ys, xs = np.nonzero(obj_mask)
        oy, ox = np.nonzero(out)
        dy, dx = oy.min() - ys.min(), ox.min() - xs.min()  # translation of the object's box
        shifted = np.zeros_like(out)
        shifted[ys + dy, xs + dx] = True
        np.testing.assert_array_equal(out, shifted)
        np.testing.assert_array_equal(img[ys + dy, xs + dx], obj_img[ys, xs])
        np.testing.assert_array_equal(img[~out], base_img[~out])
        assert (lab[out] == OUTLIER).all()
        np.testing.assert_array_equal(lab[~out], base_lab[~out])
    # Inputs are not modified in place.
    assert not (base_lab == OUTLIER).any()


def test_anomaly_mix_object_larger_than_frame_is_windowed(pool: CocoOutlierPool) -> None:
    obj_img, obj_mask = pool.load(0)
    small_img = np.zeros((8, 8, 3), np.uint8)
    small_lab = np.zeros((8, 8), np.int64)
    full = np.ones_like(obj_mask)  # the whole 48x64 image as object
    img, lab, out = paste_object(small_img, small_lab, obj_img, full, np.random.default_rng(0))
    assert out.all() and (lab == OUTLIER).all()


def test_anomaly_mix_probability(pool: CocoOutlierPool) -> None:
    mix = AnomalyMix(pool, p=0.2)
    rng = np.random.default_rng(123)
    img = np.zeros((60, 80, 3), np.uint8)
    lab = np.zeros((60, 80), np.int64)
    n = 1500
    hits = sum(bool(mix(img, lab, rng)[2].any()) for _ in range(n))
    assert abs(hits / n - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)
    never = AnomalyMix(pool, p=0.0)
    assert not any(never(img, lab, rng)[2].any() for _ in range(50))
    with pytest.raises(ValueError, match="probability"):
        AnomalyMix(pool, p=1.5)


def test_low_contrast_outliers_take_the_colour_of_what_they_cover(pool: CocoOutlierPool) -> None:
    from dsa_core.data.coco_mix import LOW_CONTRAST_MEAN_OFFSET, LOW_CONTRAST_TEXTURE, blend_into_background

    rng = np.random.default_rng(3)
    background = np.empty((60, 80, 3), np.uint8)
    background[:] = (90, 95, 100)  # asphalt-grey
    lab = np.zeros((60, 80), np.int64)
    plain = AnomalyMix(pool, p=1.0, scale_range=(1.0, 1.0))
    blended = AnomalyMix(pool, p=1.0, scale_range=(1.0, 1.0), low_contrast_prob=1.0)
    for seed in range(6):
        img0, lab0, out0 = plain(background, lab, np.random.default_rng(seed))
        img1, lab1, out1 = blended(background, lab, np.random.default_rng(seed))
        # the same object at the same place with the same label; only its colours change
        np.testing.assert_array_equal(out0, out1)
        np.testing.assert_array_equal(lab0, lab1)
        np.testing.assert_array_equal(img1[~out1], background[~out1])
        obj0, obj1 = img0[out0].astype(np.float64), img1[out1].astype(np.float64)
        # mean pulled towards the background by at least 1 - max offset, spread shrunk by at least the max texture
        d0 = np.abs(obj0.mean(0) - background[0, 0]).max()
        d1 = np.abs(obj1.mean(0) - background[0, 0]).max()
        assert d1 <= LOW_CONTRAST_MEAN_OFFSET[1] * d0 + 1.0
        assert obj1.std(0).max() <= LOW_CONTRAST_TEXTURE[1] * obj0.std(0).max() + 1.0
    # against a float64 evaluation of the formula with the same draws
    img0, _, out0 = plain(background, lab, np.random.default_rng(0))
    draws = np.random.default_rng(11)
    got = blend_into_background(img0, background, out0, draws)
    draws = np.random.default_rng(11)
    texture, offset = draws.uniform(*LOW_CONTRAST_TEXTURE), draws.uniform(*LOW_CONTRAST_MEAN_OFFSET)
    obj = img0[out0].astype(np.float64)
    bg = background[out0].astype(np.float64).mean(0)
    want = np.clip(bg + texture * (obj - obj.mean(0)) + offset * (obj.mean(0) - bg), 0, 255)
    assert np.abs(got[out0].astype(np.float64) - want).max() <= 1.0
    with pytest.raises(ValueError, match="low_contrast_prob"):
        AnomalyMix(pool, p=1.0, low_contrast_prob=2.0)


def test_stretched_outliers_change_shape_not_area(pool: CocoOutlierPool) -> None:
    obj_img, obj_mask = pool.load(0)
    ys, xs = np.nonzero(obj_mask)
    h0, w0 = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    base_img = np.zeros((400, 400, 3), np.uint8)
    base_lab = np.zeros((400, 400), np.int64)
    for stretch in (0.125, 0.5, 4.0, 8.0):
        _, _, out = paste_object(base_img, base_lab, obj_img, obj_mask, np.random.default_rng(0), stretch=stretch)
        oy, ox = np.nonzero(out)
        h, w = oy.max() - oy.min() + 1, ox.max() - ox.min() + 1
        assert h == round(h0 * np.sqrt(stretch)) and w == round(w0 / np.sqrt(stretch))  # nearest-neighbour mask
        assert abs(out.sum() / obj_mask.sum() - 1.0) < 0.15  # the area is kept
    with pytest.raises(ValueError, match="stretch"):
        paste_object(base_img, base_lab, obj_img, obj_mask, np.random.default_rng(0), stretch=0.0)
    mix = AnomalyMix(pool, p=1.0, stretch_prob=1.0)
    # pasted through AnomalyMix, stretched objects are elongated far beyond the pool's own shapes
    elongation: dict[float, list[float]] = {0.0: [], 1.0: []}
    for prob in elongation:
        for seed in range(40):
            _, _, out = AnomalyMix(pool, p=1.0, stretch_prob=prob)(base_img, base_lab, np.random.default_rng(seed))
            oy, ox = np.nonzero(out)
            hh, ww = oy.max() - oy.min() + 1, ox.max() - ox.min() + 1
            elongation[prob].append(max(hh / ww, ww / hh))
    assert max(elongation[1.0]) > 4.0 > max(elongation[0.0])  # the pool's own shapes are not that long
    assert np.median(elongation[1.0]) > 1.5 * np.median(elongation[0.0])
    with pytest.raises(ValueError, match="stretch_prob"):
        AnomalyMix(pool, p=1.0, stretch_prob=1.5)


def test_several_outliers_per_frame_are_all_labelled_and_one_object_runs_keep_their_stream(
        pool: CocoOutlierPool) -> None:
    import cv2

    rng = np.random.default_rng(4)
    base_img = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    base_lab = rng.integers(0, 19, (200, 300)).astype(np.int64)
    one, three = AnomalyMix(pool, p=1.0, scale_range=(0.3, 0.6)), AnomalyMix(pool, p=1.0, scale_range=(0.3, 0.6),
                                                                              max_objects=3)
    components, areas = [], {1: [], 3: []}
    for seed in range(30):
        for n, mix in ((1, one), (3, three)):
            img, lab, out = mix(base_img, base_lab, np.random.default_rng(seed))
            assert (lab[out] == OUTLIER).all() and (lab[~out] == base_lab[~out]).all()  # every pasted pixel labelled
            np.testing.assert_array_equal(img[~out], base_img[~out])
            areas[n].append(int(out.sum()))
            if n == 3:
                components.append(cv2.connectedComponents(out.astype(np.uint8), connectivity=8)[0] - 1)
    assert max(components) >= 2 and min(components) >= 1  # several objects in some frames
    assert np.mean(areas[3]) > 1.3 * np.mean(areas[1])
    from dsa_core.labels import ROAD

    on_road = AnomalyMix(pool, p=1.0, scale_range=(0.3, 0.6), road_prob=0.5)
    for seed in range(5):  # one object, no stretch: exactly the draws of the single-paste algorithm, in its order
        rng = np.random.default_rng(seed)
        assert rng.random() < 1.0
        obj_img, obj_mask = pool.load(int(rng.integers(len(pool))))
        scale = float(np.exp(rng.uniform(np.log(0.3), np.log(0.6))))
        road = ROAD if rng.random() < 0.5 else None
        want = paste_object(base_img, base_lab, obj_img, obj_mask, rng, scale=scale, on_road_label=road)
        for x, y in zip(on_road(base_img, base_lab, np.random.default_rng(seed)), want):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="max_objects"):
        AnomalyMix(pool, p=1.0, max_objects=0)


def test_pasted_outlier_frame_labels_pasted_void_and_in_distribution_pixels_and_is_seeded(
        pool: CocoOutlierPool) -> None:
    from dsa_core.train.validation import mixed_anomaly_samples

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (70, 150, 3), dtype=np.uint8)
    label = rng.integers(0, 19, (70, 150)).astype(np.int64)
    label[:6] = VOID
    before = label.copy()
    mix = AnomalyMix(pool, p=1.0)
    mixed, anomaly, outlier = pasted_outlier_frame(mix, image, label, seed=3, index=1)
    np.testing.assert_array_equal(label, before)  # the caller's label is not modified
    assert outlier.any() and anomaly.dtype == np.uint8
    assert (anomaly[outlier] == 1).all()
    np.testing.assert_array_equal(anomaly[~outlier], np.where(before[~outlier] == VOID, VOID, 0))
    again = pasted_outlier_frame(mix, image, label, seed=3, index=1)
    np.testing.assert_array_equal(again[0], mixed)
    np.testing.assert_array_equal(again[1], anomaly)
    others = [pasted_outlier_frame(mix, image, label, seed=3, index=i)[2] for i in range(2, 8)]
    assert any(not np.array_equal(o, outlier) for o in others)  # each frame index draws its own paste
    # training validation builds its set through the same function (the pool fixture: min_size=32)
    samples = mixed_anomaly_samples([(image, label), (image, label)], str(pool.root), seed=3, min_size=32)
    np.testing.assert_array_equal(samples[1][0], mixed)
    np.testing.assert_array_equal(samples[1][1], anomaly)


def test_mixed_anomaly_samples_at_a_fixed_scale_on_the_road(pool: CocoOutlierPool) -> None:
    """The size check (scripts/pool_val_sizes.py): the same objects as training validation, resized and standing on
    the road."""
    from dsa_core.labels import ROAD
    from dsa_core.train.validation import mixed_anomaly_samples

    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (120, 240, 3), dtype=np.uint8)
    label = np.full((120, 240), 2, np.int64)
    label[70:, 20:220] = ROAD
    frames = [(image, label)] * 4
    native = mixed_anomaly_samples(frames, str(pool.root), seed=3, min_size=32)
    double = mixed_anomaly_samples(frames, str(pool.root), seed=3, min_size=32, scale=2.0, road_prob=1.0)
    for (_, a1), (_, a2) in zip(native, double):
        n1, n2 = int((a1 == 1).sum()), int((a2 == 1).sum())
        assert 3.0 * n1 <= n2 <= 5.0 * n1 or n2 >= 0.95 * a2.size  # area ~4x unless clipped by the frame
        ys, xs = np.nonzero(a2 == 1)
        bottom = ys.max()
        centre = int(round((xs.min() + xs.max()) / 2))
        assert label[bottom, centre] == ROAD or bottom == label.shape[0] - 1  # stands on the road
    # --low-contrast: the same objects at the same places, recoloured towards the pixels they cover
    faint = mixed_anomaly_samples(frames, str(pool.root), seed=3, min_size=32, scale=2.0, road_prob=1.0,
                                  low_contrast_prob=1.0)
    for (bright, a2), (dim, a3) in zip(double, faint):
        np.testing.assert_array_equal(a2, a3)
        obj = a3 == 1
        contrast = [float(np.abs(x[obj].astype(float) - image[obj].astype(float)).mean()) for x in (bright, dim)]
        assert contrast[1] < contrast[0]
        np.testing.assert_array_equal(dim[~obj], bright[~obj])


# ------------------------------------------------------------------------------------------------ transforms

PALETTE = np.array([[(37 * k) % 256, (91 * k + 40) % 256, (53 * k + 200) % 256] for k in range(19)], np.uint8)


def _colour_coded(rng: np.random.Generator, h: int = 60, w: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """A label of 6x6 blocks and an image whose colour is a function of the label."""
    blocks = rng.integers(0, 19, (h // 6, w // 6))
    label = np.kron(blocks, np.ones((6, 6), np.int64))
    return PALETTE[label], label


def _decode(image: np.ndarray) -> np.ndarray:
    d = ((image[:, :, None, :].astype(int) - PALETTE[None, None].astype(int)) ** 2).sum(-1)
    return d.argmin(-1)


@pytest.mark.parametrize("seed", range(6))
def test_augment_keeps_image_label_outlier_aligned(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image, label = _colour_coded(rng)
    outlier = label == 3
    aug = TrainAugment(crop_size=(48, 64), photometric=False, cat_max_ratio=0.75)
    img2, lab2, out2 = aug(image, label, outlier, np.random.default_rng(100 + seed))
    assert img2.shape == (48, 64, 3) and lab2.shape == out2.shape == (48, 64)
    valid = lab2 != 255
    np.testing.assert_array_equal(out2[valid], lab2[valid] == 3)  # nearest-resized the same way
    assert not out2[~valid].any()
    # Away from block borders the bilinear image colour still decodes to the label.
    interior = valid.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            interior &= np.roll(np.roll(lab2, dy, 0), dx, 1) == lab2
    interior[[0, -1]] = False
    interior[:, [0, -1]] = False
    assert interior.sum() > 50
    np.testing.assert_array_equal(_decode(img2)[interior], lab2[interior])
    assert (img2[~valid] == 0).all()


def test_augment_scale_range_and_padding() -> None:
    rng = np.random.default_rng(0)
    image, label = _colour_coded(rng)
    aug = TrainAugment(crop_size=(300, 300), photometric=False, cat_max_ratio=None, flip_prob=0.0)
    for s in range(20):
        _, lab, _ = aug(image, label, None, np.random.default_rng(s))
        ys, xs = np.nonzero(lab != 255)
        h, w = ys.max() + 1, xs.max() + 1
        assert 0.5 * 60 - 1 <= h <= 2.0 * 60 + 1 and abs(h / 60 - w / 90) < 0.05
        assert (lab[h:] == 255).all() and (lab[:, w:] == 255).all()
    base = TrainAugment(crop_size=(300, 300), base_size=(120, 180), ratio_range=(1.0, 1.0), photometric=False,
                        cat_max_ratio=None)
    _, lab, _ = base(image, label, None, np.random.default_rng(0))
    assert ((lab != 255).sum(0) > 0).sum() == 180  # fitted to the base scale: 60x90 -> 120x180


def test_augment_cat_max_ratio_retries_dominated_crops() -> None:
    label = np.zeros((60, 90), np.int64)
    label[24:36, 36:54] = 1
    label[:, :4] = 255  # ignored pixels do not count
    image = PALETTE[np.where(label == 255, 2, label)]

    def balanced_fraction(ratio: float | None) -> float:
        aug = TrainAugment(crop_size=(24, 24), ratio_range=(1.0, 1.0), cat_max_ratio=ratio, flip_prob=0.0,
                           photometric=False)
        ok = 0
        for s in range(200):
            _, lab, _ = aug(image, label, None, np.random.default_rng(s))
            cnt = np.array([(lab == 0).sum(), (lab == 1).sum()])
            ok += cnt.min() > 0 and cnt.max() / cnt.sum() < 0.75
        return ok / 200

    plain, balanced = balanced_fraction(None), balanced_fraction(0.75)
    assert plain < 0.3 and balanced > 2 * plain


def test_augment_determinism_and_photometric() -> None:
    rng = np.random.default_rng(3)
    image, label = _colour_coded(rng)
    aug = TrainAugment(crop_size=(40, 40))
    a = aug(image, label, label == 1, np.random.default_rng(9))
    b = aug(image, label, label == 1, np.random.default_rng(9))
    c = aug(image, label, label == 1, np.random.default_rng(10))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    changed = [not np.array_equal(photometric_distortion(image, np.random.default_rng(s)), image) for s in range(10)]
    assert any(changed)
    out = photometric_distortion(image, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == image.shape
    with pytest.raises(ValueError, match="label shape"):
        aug(image, label[:-1], None)
    img_v, lab_v, _ = ValTransform(size=(30, 45))(image, label)
    assert img_v.shape == (30, 45, 3)
    np.testing.assert_array_equal(lab_v, label[::2, ::2])


# ------------------------------------------------------------------------------------------------ training set

def test_train_set_tensors_and_collate(cs_root: Path, pool: CocoOutlierPool) -> None:
    ds = CityscapesTrainSet(cs_root, "train", augment=TrainAugment(crop_size=(64, 96)), mix=AnomalyMix(pool, p=1.0),
                            seed=7)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (4, 3, 64, 96) and batch["image"].dtype == torch.uint8
    assert batch["label"].dtype == torch.int64 and batch["outlier"].dtype == torch.bool
    assert batch["outlier"].any()
    torch.testing.assert_close(batch["label"] == OUTLIER, batch["outlier"])
    assert set(torch.unique(batch["label"]).tolist()) <= set(range(19)) | {254, 255}
    again = ds[1]
    torch.testing.assert_close(again["image"], batch["image"][1])
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], batch["image"][1])
    plain = CityscapesTrainSet(cs_root, "val")  # no mix, no augmentation: the raw frames
    item = plain[0]
    assert item["image"].shape == (3, 80, 160) and not item["outlier"].any()
    with pytest.raises(ValueError, match="different sizes"):
        collate([item, ds[0]])


def test_pool_category_split_keeps_each_side_to_its_categories(tmp_path):
    """scripts/pool_category_split.py: an image is on a side only if every instance is of that side's categories."""
    import importlib.util
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    write_coco(tmp_path / "coco", 24, height=96, width=128, seed=5, excluded_fraction=0.25, progress=False)
    held = ["handbag", "kite", "teddy bear"]
    out = subprocess.run([sys.executable, str(repo / "scripts" / "pool_category_split.py"), str(tmp_path / "coco"),
                          str(tmp_path / "split"), "--held-out", *held], check=True, capture_output=True, text=True)
    counts = json.loads(out.stdout)
    full = COCO(str(tmp_path / "coco" / "annotations" / "instances_train2017.json"))
    held_ids = set(full.getCatIds(catNms=held))
    cats = {i: {a["category_id"] for a in full.loadAnns(full.getAnnIds(imgIds=[i]))} for i in full.getImgIds()}
    expect = {"held_out": {i for i, c in cats.items() if c and c <= held_ids},
              "seen": {i for i, c in cats.items() if c and not c & held_ids}}
    assert expect["held_out"] and expect["seen"] and len(expect["held_out"]) + len(expect["seen"]) < len(cats)
    for side, ids in expect.items():
        sub = COCO(str(tmp_path / "split" / side / "annotations" / "instances_train2017.json"))
        assert set(sub.getImgIds()) == ids and counts[side] == len(ids)
        pool = CocoOutlierPool(tmp_path / "split" / side, min_size=64)  # reads like the full pool
        assert set(pool.image_ids) <= ids and pool.load(0)[1].any()
    spec = importlib.util.spec_from_file_location("split", repo / "scripts" / "pool_category_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit, match="unknown category"):
        module.split_pool(tmp_path / "coco", tmp_path / "bad", ["car-ish"])


def test_merge_coco_pools_keeps_every_object_of_every_pool(tmp_path):
    """scripts/merge_coco_pools.py: the merged pool holds each pool's images and masks unchanged, under new ids."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    write_coco(tmp_path / "a", 10, height=96, width=128, seed=5, progress=False)
    write_coco(tmp_path / "b", 8, height=96, width=128, seed=6, progress=False, families="pretrain")
    out = subprocess.run([sys.executable, str(repo / "scripts" / "merge_coco_pools.py"), str(tmp_path / "m"),
                          str(tmp_path / "a"), str(tmp_path / "b")], check=True, capture_output=True, text=True)
    counts = json.loads(out.stdout)
    merged = COCO(str(tmp_path / "m" / "annotations" / "instances_train2017.json"))
    parts = [COCO(str(tmp_path / r / "annotations" / "instances_train2017.json")) for r in ("a", "b")]
    assert counts == {"images": sum(len(p.imgs) for p in parts), "annotations": sum(len(p.anns) for p in parts)}
    assert len(merged.imgs) == counts["images"] and len(merged.anns) == counts["annotations"]
    for k, (root, part) in enumerate(zip(("a", "b"), parts)):
        for img in part.imgs.values():
            new = [i for i in merged.imgs.values() if i["file_name"] == f"p{k}_{img['file_name']}"]
            assert len(new) == 1
            assert (tmp_path / "m" / "train2017" / new[0]["file_name"]).read_bytes() == \
                (tmp_path / root / "train2017" / img["file_name"]).read_bytes()
            old_masks = [part.annToMask(a) for a in part.loadAnns(part.getAnnIds(imgIds=[img["id"]]))]
            new_masks = [merged.annToMask(a) for a in merged.loadAnns(merged.getAnnIds(imgIds=[new[0]["id"]]))]
            assert len(old_masks) == len(new_masks) and all((o == n).all() for o, n in zip(old_masks, new_masks))
    pool = CocoOutlierPool(tmp_path / "m", min_size=64)  # reads like a generated pool
    assert pool.load(0)[1].any()
    ann = tmp_path / "b" / "annotations" / "instances_train2017.json"
    data = json.loads(ann.read_text())
    data["categories"][0]["name"] = "renamed"
    ann.write_text(json.dumps(data))
    refused = subprocess.run([sys.executable, str(repo / "scripts" / "merge_coco_pools.py"), str(tmp_path / "m2"),
                              str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True)
    assert refused.returncode != 0 and "merge_coco_pools: category id" in refused.stderr
    assert "Traceback" not in refused.stderr  # a clear message, not a crash


def test_separation_guard_accepts_the_stage2_pool_and_refuses_validation_objects(tmp_path):
    """The recipe's stage-2 pool (outlier pool + pre-training objects) passes the guard; a pool that also holds the
    model-selection objects is refused, by the function and by `python -m dsa_core.study.separation`."""
    from dsa_core.data.coco_merge import merge_pools
    from dsa_core.data.synth.synthetic import PRETRAIN_FAMILY_CATEGORY, VALIDATION_FAMILY_CATEGORY
    from dsa_core.study.separation import check_anomaly_separation, main

    for name, families in (("pool", "outlier_pool"), ("pre", "pretrain"), ("val", "validation")):
        write_coco(tmp_path / name, 12, height=96, width=128, seed=3, progress=False, families=families)
    merge_pools(tmp_path / "wide", [tmp_path / "pool", tmp_path / "pre"])
    used = check_anomaly_separation(tmp_path / "wide")["pool_categories_used"]
    assert set(used) & set(PRETRAIN_FAMILY_CATEGORY.values()), "the merged pool holds pre-training objects"
    assert main([str(tmp_path / "pool"), str(tmp_path / "wide")]) == 0
    merge_pools(tmp_path / "leak", [tmp_path / "pool", tmp_path / "val"])
    with pytest.raises(AssertionError, match="neither training-object categories"):
        check_anomaly_separation(tmp_path / "leak")
    assert main([str(tmp_path / "wide"), str(tmp_path / "leak")]) == 1
    assert not set(used) & set(VALIDATION_FAMILY_CATEGORY.values())
