"""`dsa synth`: the written files follow the official Cityscapes / COCO formats exactly."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.csHelpers import getCsFileInfo
from cityscapesscripts.helpers.labels import id2label, labels as CS_LABELS, name2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from PIL import Image
from pycocotools.coco import COCO

from dsa_core.cli import main as dsa_main
from dsa_core.data.synth.anomaly_synth import _anomaly_track_frame
from dsa_core.data.synth.scene import render_scene
from dsa_core.data.synth.sprites import (
    OUTLIER_POOL_FAMILIES, PAINTERS, PRETRAIN_OBJECT_FAMILIES, TEST_ANOMALY_FAMILIES, VALIDATION_OBJECT_FAMILIES,
    make_sprite, paste_sprite,
)

H, W = 64, 128
GT_SUFFIXES = ("gtFine_color.png", "gtFine_instanceIds.png", "gtFine_labelIds.png", "gtFine_labelTrainIds.png",
               "gtFine_polygons.json")


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    rc = dsa_main(["synth", "cityscapes", "--out", str(root), "--train", "5", "--val", "3", "--height", str(H),
                   "--width", str(W), "--seed", "11", "--no-progress"])
    assert rc == 0
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    rc = dsa_main(["synth", "coco", "--out", str(root), "--images", "16", "--height", "72", "--width", "96",
                   "--seed", "2", "--excluded-fraction", "0.4", "--crowd-fraction", "0.3", "--no-progress"])
    assert rc == 0
    return root


def _frames(root: Path, split: str) -> list[Path]:
    return sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))


def test_cityscapes_layout_and_names(cs_root: Path) -> None:
    for split, n in (("train", 5), ("val", 3)):
        frames = _frames(cs_root, split)
        assert len(frames) == n
        for img in frames:
            city = img.parent.name
            assert "_" not in city
            assert re.fullmatch(rf"{city}_\d{{6}}_\d{{6}}_leftImg8bit\.png", img.name)
            info = getCsFileInfo(str(img))  # the official parser accepts the name
            assert info.city == city and info.type == "leftImg8bit"
            stem = img.name[: -len("_leftImg8bit.png")]
            gt = cs_root / "gtFine" / split / city
            for suffix in GT_SUFFIXES:
                assert (gt / f"{stem}_{suffix}").is_file()
        gt_files = sorted((cs_root / "gtFine" / split).glob("*/*"))
        assert len(gt_files) == n * len(GT_SUFFIXES)  # nothing else in gtFine


def test_cityscapes_dtypes_and_official_tools_agree(cs_root: Path) -> None:
    id_to_train = {lab.id: (lab.trainId if 0 <= lab.trainId < 255 else 255) for lab in CS_LABELS if lab.id >= 0}
    seen_ids: set[int] = set()
    for js in sorted(cs_root.glob("gtFine/*/*/*_gtFine_polygons.json")):
        stem = str(js)[: -len("polygons.json")]
        data = json.loads(js.read_text())
        assert data["imgHeight"] == H and data["imgWidth"] == W
        assert all(set(o) >= {"label", "polygon"} and o["label"] in {l.name for l in CS_LABELS} for o in data["objects"])
        ann = Annotation()
        ann.fromJsonFile(str(js))
        with Image.open(stem + "labelIds.png") as im:
            assert im.mode == "L"
            label_ids = np.asarray(im)
        with Image.open(stem + "instanceIds.png") as im:
            assert im.mode == "I;16"
            inst = np.asarray(im).astype(np.int64)
        with Image.open(stem + "labelTrainIds.png") as im:
            assert im.mode == "L"
            train_ids = np.asarray(im)
        with Image.open(stem + "color.png") as im:
            assert im.mode == "RGBA"
            color = np.asarray(im)
        img_path = js.parents[3] / "leftImg8bit" / js.parent.parent.name / js.parent.name / \
            js.name.replace("gtFine_polygons.json", "leftImg8bit.png")
        with Image.open(img_path) as im:
            assert im.mode == "RGB" and im.size == (W, H)
        # The official renderers reproduce every PNG from the polygons.
        np.testing.assert_array_equal(np.asarray(createLabelImage(ann, "ids")), label_ids)
        np.testing.assert_array_equal(np.asarray(createLabelImage(ann, "trainIds")), train_ids)
        np.testing.assert_array_equal(np.asarray(createLabelImage(ann, "color")), color)
        np.testing.assert_array_equal(np.asarray(createInstanceImage(ann, "ids")).astype(np.int64), inst)
        # labelTrainIds consistent with labelIds through the label table.
        expected = np.vectorize(id_to_train.__getitem__)(label_ids)
        np.testing.assert_array_equal(train_ids, expected)
        assert set(np.unique(train_ids)) <= set(range(19)) | {255}
        # instanceIds: id*1000+k for instance classes, plain id elsewhere.
        has_inst = np.vectorize(lambda i: id2label[i].hasInstances)(label_ids)
        np.testing.assert_array_equal(inst[has_inst] // 1000, label_ids[has_inst])
        np.testing.assert_array_equal(inst[~has_inst], label_ids[~has_inst])
        assert (label_ids[-1] == 1).mean() > 0.9  # ego-vehicle hood on the bottom row
        seen_ids |= set(np.unique(label_ids).tolist())
    assert {1, 7, 8, 11, 23, 26} <= seen_ids  # ego vehicle, road, sidewalk, building, sky, car
    assert seen_ids & {4, 5, 6}  # void static / dynamic / ground content


def test_cityscapes_seeded(tmp_path: Path) -> None:
    for out, seed in (("a", 3), ("b", 3), ("c", 4)):
        dsa_main(["synth", "cityscapes", "--out", str(tmp_path / out), "--train", "1", "--val", "0",
                  "--height", "48", "--width", "96", "--seed", str(seed), "--no-progress"])
    read = lambda d: np.asarray(Image.open(_frames(tmp_path / d, "train")[0]))
    np.testing.assert_array_equal(read("a"), read("b"))
    assert not np.array_equal(read("a"), read("c"))


def test_scene_variety() -> None:
    a, b = render_scene(96, 192, 0), render_scene(96, 192, 1)
    assert a.image.dtype == np.uint8 and a.image.shape == (96, 192, 3)
    assert not np.array_equal(a.label_ids, b.label_ids)
    # Classes are not identifiable from a fixed colour: the mean road colour differs between scenes.
    road = lambda s: s.image[s.label_ids == 7].mean(0)
    assert np.abs(road(a) - road(b)).max() > 1.0
    with pytest.raises(ValueError, match="at least 32x32"):
        render_scene(16, 16, 0)
    # Ground scale: persons (1.5-1.95 m) standing on the ground have plausible pixel heights for their rows.
    ratios = []
    for seed in range(6):
        sc = render_scene(96, 192, seed)
        for inst in np.unique(sc.instance_ids[sc.instance_ids // 1000 == 24]):
            rows = np.nonzero((sc.instance_ids == inst).any(1))[0]
            if sc.horizon + 3 < rows.max() < sc.label_ids.shape[0] - 15 and rows.min() > 0:  # not cut off
                ratios.append((rows.max() - rows.min() + 1) / sc.pixels_per_metre(rows.max() + 0.5))
    assert len(ratios) >= 5 and 1.2 < np.median(ratios) < 2.2
    with pytest.raises(ValueError, match="horizon"):
        a.pixels_per_metre(a.horizon - 1)
    # Conditions shift the appearance only: identical labels, different pixels.
    for cond in ("dusk", "fog"):
        shifted = render_scene(96, 192, 0, condition=cond)
        np.testing.assert_array_equal(shifted.label_ids, a.label_ids)
        assert np.abs(shifted.image.astype(int) - a.image.astype(int)).mean() > 10
    with pytest.raises(ValueError, match="condition"):
        render_scene(96, 192, 0, condition="snow")


def test_scene_without_vehicle_camera() -> None:
    """Web-photo benchmarks (Road Anomaly) have no ego hood and no out-of-roi frame; the rest of the scene is the
    same rendering, and the generator's frames carry neither."""
    rig_ids = [name2label["ego vehicle"].id, name2label["out of roi"].id]
    hoods = 0
    for seed in range(4):
        rig, web = render_scene(96, 192, seed), render_scene(96, 192, seed, vehicle_camera=False)
        in_rig = np.isin(rig.label_ids, rig_ids)
        hoods += int(in_rig.any())
        assert not np.isin(web.label_ids, rig_ids).any()
        # Every pixel outside the rig's own content has the same label (the draws after the hood are unchanged).
        np.testing.assert_array_equal(web.label_ids[~in_rig], rig.label_ids[~in_rig])
        _, anomaly, scene = _anomaly_track_frame(np.random.default_rng(seed), 96, 192)
        assert anomaly.any() and not np.isin(scene.label_ids, rig_ids).any()
    assert hoods == 4


def test_coco_format_and_excluded_classes(coco_root: Path) -> None:
    ann_file = coco_root / "annotations" / "instances_train2017.json"
    coco = COCO(str(ann_file))
    cats = coco.loadCats(coco.getCatIds())
    assert len(cats) == 80
    names = {c["id"]: c["name"] for c in cats}
    assert names[1] == "person" and names[13] == "stop sign" and names[90] == "toothbrush" and 12 not in names
    assert len(coco.getImgIds()) == 16
    for img in coco.loadImgs(coco.getImgIds()):
        assert re.fullmatch(r"\d{12}\.jpg", img["file_name"])
        with Image.open(coco_root / "train2017" / img["file_name"]) as im:
            assert im.size == (img["width"], img["height"]) and im.mode == "RGB"
    crowd = 0
    for ann in coco.loadAnns(coco.getAnnIds(iscrowd=None)):
        m = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(m)
        assert m.sum() == pytest.approx(ann["area"], abs=0.5)
        x, y, w, h = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        if ann["iscrowd"]:
            crowd += 1
            assert isinstance(ann["segmentation"], dict) and set(ann["segmentation"]) == {"counts", "size"}
        else:
            assert isinstance(ann["segmentation"], list) and len(ann["segmentation"][0]) >= 6
    assert crowd > 0
    excluded = coco.getCatIds(catNms=["person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light",
                                      "stop sign"])
    with_excluded = {a["image_id"] for a in coco.loadAnns(coco.getAnnIds(catIds=excluded))}
    assert 0 < len(with_excluded) < 16


def test_synth_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "all" runs every registered format with its defaults, each into OUT/<format>. The dispatch is what is under
    # test here (each format has its own tests), so only the two training formats run, keeping the suite fast.
    from dsa_core.commands import synth

    assert {"cityscapes", "coco"} <= set(synth.FORMATS)
    monkeypatch.setattr(synth, "FORMATS", {k: synth.FORMATS[k] for k in ("cityscapes", "coco")})
    assert dsa_main(["synth", "all", "--out", str(tmp_path), "--no-progress"]) == 0
    assert _frames(tmp_path / "cityscapes", "train") and _frames(tmp_path / "cityscapes", "val")
    assert (tmp_path / "coco" / "annotations" / "instances_train2017.json").is_file()



@pytest.mark.parametrize("families", ["pretrain", "validation"])
def test_other_object_sets_are_disjoint_from_the_pool(families: str, coco_root: Path, tmp_path: Path) -> None:
    """``dsa synth coco --families pretrain|validation`` labels only that set's objects (and AnomalyMix's dropped
    classes), never a pool category."""
    from dsa_core.data.coco_categories import COCO_EXCLUDED_NAMES
    from dsa_core.data.coco_mix import CocoOutlierPool
    from dsa_core.data.synth.synthetic import COCO_OBJECT_SETS, POOL_FAMILY_CATEGORY, write_coco

    out = tmp_path / families
    assert dsa_main(["synth", "coco", "--families", families, "--out", str(out), "--images", "12", "--height", "96",
                     "--width", "128", "--seed", "3", "--no-progress"]) == 0

    def used(root: Path) -> set[str]:
        coco = COCO(str(root / "annotations" / "instances_train2017.json"))
        return {coco.loadCats(a["category_id"])[0]["name"] for a in coco.loadAnns(coco.getAnnIds(iscrowd=None))}

    objects, pool = used(out) - set(COCO_EXCLUDED_NAMES), used(coco_root) - set(COCO_EXCLUDED_NAMES)
    assert objects and objects <= set(COCO_OBJECT_SETS[families].values())
    assert pool and pool <= set(POOL_FAMILY_CATEGORY.values()) and not objects & pool
    assert len(CocoOutlierPool(out, min_size=64)) > 0  # the training reader takes it like the pool
    with pytest.raises(ValueError, match="unknown object set"):
        write_coco(tmp_path / "x", 1, 64, 64, families="test")


def test_separation_guard_covers_every_object_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The study's guard passes on the shipped sets and refuses a validation family or category that a training
    set also uses."""
    from dsa_core.data.synth import synthetic
    from dsa_core.study.separation import check_anomaly_separation

    info = check_anomaly_separation(None)
    assert info["validation_families"] == list(VALIDATION_OBJECT_FAMILIES)
    collide = {**synthetic.VALIDATION_FAMILY_CATEGORY, "barrel": synthetic.POOL_FAMILY_CATEGORY["thin_bar"]}
    monkeypatch.setattr(synthetic, "VALIDATION_FAMILY_CATEGORY", collide)
    with pytest.raises(AssertionError, match="label both outlier-pool and validation objects"):
        check_anomaly_separation(None)
    monkeypatch.undo()
    import dsa_core.data.synth.sprites as sprites

    monkeypatch.setattr(sprites, "VALIDATION_OBJECT_FAMILIES", VALIDATION_OBJECT_FAMILIES + ("rock",))
    with pytest.raises(AssertionError, match="rock"):
        check_anomaly_separation(None)


def test_sprites_paste_exact() -> None:
    rng = np.random.default_rng(0)
    for fam in TEST_ANOMALY_FAMILIES + OUTLIER_POOL_FAMILIES + PRETRAIN_OBJECT_FAMILIES + VALIDATION_OBJECT_FAMILIES:
        sp = make_sprite(fam, 40, rng)
        assert sp.mask.any() and sp.rgb.shape == (40, 40, 3)
        base = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
        img = base.copy()
        mask = paste_sprite(img, sp, (30, -5))  # partly outside: clipped
        expected = np.zeros((50, 60), bool)
        expected[0:35, 30:60] = sp.mask[5:40, 0:30]
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(img[~mask], base[~mask])
        np.testing.assert_array_equal(img[mask], sp.rgb[5:40, 0:30][sp.mask[5:40, 0:30]])
    with pytest.raises(ValueError, match="unknown sprite family"):
        make_sprite("car", 40, 0)


def test_every_family_has_exactly_one_painter() -> None:
    families = TEST_ANOMALY_FAMILIES + OUTLIER_POOL_FAMILIES + PRETRAIN_OBJECT_FAMILIES + VALIDATION_OBJECT_FAMILIES
    assert set(PAINTERS) == set(families) and len(PAINTERS) == len(families) == len(set(families))


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_generation_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    """Same seed, same bytes (sprites, scenes, every written file); another seed, other bytes. The refactor into
    data/synth/ was checked against hashes taken from the previous code (236 files and arrays, all equal)."""
    from dsa_core.data.synth.anomaly_synth import write_benchmark
    from dsa_core.data.synth.synthetic import write_cityscapes, write_coco

    def generate(out: Path, seed: int) -> dict[str, str]:
        digests = {f"sprite/{f}": hashlib.sha256(make_sprite(f, 32, seed).rgb.tobytes()).hexdigest()
                   for f in PAINTERS}
        scene = render_scene(48, 96, seed, "fog")
        digests["scene"] = hashlib.sha256(scene.image.tobytes() + scene.label_ids.tobytes()).hexdigest()
        write_cityscapes(out / "cs", 1, 1, 48, 96, seed=seed, progress=False)
        write_coco(out / "coco", 2, 64, 80, seed=seed, progress=False)
        write_benchmark("fs_laf", out / "fs_laf", count=1, height=48, width=96, seed=seed, progress=False)
        return {**digests, **_tree_digest(out)}

    first, again, other = generate(tmp_path / "a", 5), generate(tmp_path / "b", 5), generate(tmp_path / "c", 6)
    assert first == again and len(first) > 20
    changed = {k for k in first if first[k] != other.get(k)}
    assert {f"sprite/{f}" for f in PAINTERS} <= changed and "scene" in changed
