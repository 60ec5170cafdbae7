"""The pieces of the CPU training recipe: padded-crop mask into L_ubhl, conv stem, outlier pool and pastes,
parallel data generation, `dsa train --set`."""
from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsa_core import build_model
from dsa_core.config import get_config
from dsa_core.data.cityscapes import CityscapesDataset
from dsa_core.data.coco_mix import AnomalyMix, CityscapesTrainSet, CocoOutlierPool, collate, paste_object
from dsa_core.data.synth.sprites import OUTLINED_POOL_FAMILIES, OUTLIER_POOL_FAMILIES, TEST_ANOMALY_FAMILIES, make_sprite
from dsa_core.data.synth.synthetic import write_cityscapes, write_coco
from dsa_core.data.transforms import TrainAugment
from dsa_core.labels import CITYSCAPES_CLASSES, VOID, VOID_GROUND
from dsa_core.losses.hyperbolic import UncertaintyHyperbolicLoss, token_label_sets
from dsa_core.model.backbone import FrozenViT, conv_stem, load_backbone_weights
from dsa_core.train.config import default_train_config
from dsa_core.train.objectives import StageObjective
from dsa_core.train.pretrain import PatchSegViT, save_backbone


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_cs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe_cs")
    write_cityscapes(root, n_train=3, n_val=1, height=64, width=128, seed=5, progress=False)
    return root


# ------------------------------------------------------------------------------------------- padded crops
def test_padded_crop_is_marked_invalid(small_cs: Path) -> None:
    """A crop larger than the resized frame is padded with void; ``valid`` is False exactly there."""
    aug = TrainAugment(crop_size=(96, 160), ratio_range=(1.0, 1.0), photometric=False, cat_max_ratio=None, flip_prob=0.0)
    ds = CityscapesTrainSet(small_cs, "train", augment=aug, seed=0)
    item = ds[0]
    valid, label = item["valid"], item["label"]
    assert valid.shape == label.shape == (96, 160)
    assert bool(valid[:64, :128].all()) and not bool(valid[64:].any()) and not bool(valid[:, 128:].any())
    assert bool((label[~valid] == 255).all())
    batch = collate([ds[0], ds[1]])
    assert batch["valid"].shape == (2, 96, 160) and batch["valid"].dtype == torch.bool


def test_stage1_objective_does_not_count_padding_as_ood(small_cs: Path) -> None:
    """The stage-1 L_ubhl with the batch's valid mask equals the loss computed without the padded pixels, and
    differs from the loss that treats padding as void (the defect this guards against)."""
    aug = TrainAugment(crop_size=(96, 160), ratio_range=(1.0, 1.0), photometric=False, cat_max_ratio=None, flip_prob=0.0)
    batch = collate([CityscapesTrainSet(small_cs, "train", augment=aug, seed=0)[i] for i in range(2)])
    model = build_model("dsa_nano")
    tcfg = default_train_config("dsa_nano", "stage1").replace(num_points=64)
    objective = StageObjective("stage1", tcfg, 19)
    torch.manual_seed(0)
    losses = objective.losses(model, batch, torch.device("cpu"))
    outputs = model(batch["image"].float())
    loss = UncertaintyHyperbolicLoss(c=tcfg.curvature, num_classes=19)
    with_mask = loss(outputs["stream_tokens"], outputs["token_shapes"], batch["label"], batch["valid"])
    without = loss(outputs["stream_tokens"], outputs["token_shapes"], batch["label"])
    assert float(losses["loss_ubhl"].detach()) == pytest.approx(float(with_mask.detach()), rel=1e-5)
    assert abs(float(with_mask.detach()) - float(without.detach())) > 1e-4
    ood_masked, _ = token_label_sets(batch["label"], outputs["token_shapes"], 19, batch["valid"])
    ood_all, _ = token_label_sets(batch["label"], outputs["token_shapes"], 19)
    assert int(ood_all.sum()) > int(ood_masked.sum())
    for name in ("stat_dist_id", "stat_dist_ood", "stat_id_at_cap"):
        assert name in losses and objective.weights[name] == 0.0


def test_stage2_objective_weighs_void_pixels_and_leaves_out_padding(small_cs: Path) -> None:
    """The stage-2 contrastive loss gets the batch's void pixels (label 255) as the void mask for
    contrastive_void_weight, and the valid mask, so crop padding counts neither as void nor as in-distribution."""
    from dsa_core.losses.contrastive import MaskContrastiveLoss

    aug = TrainAugment(crop_size=(96, 160), ratio_range=(1.0, 1.0), photometric=False, cat_max_ratio=None, flip_prob=0.0)
    batch = collate([CityscapesTrainSet(small_cs, "train", augment=aug, seed=0)[i] for i in range(2)])
    batch["outlier"] = torch.zeros_like(batch["label"], dtype=torch.bool)
    batch["outlier"][:, 10:20, 30:50] = True
    void, valid = batch["label"] == 255, batch["valid"]
    assert bool((void & valid).any()) and bool((~valid).any()) and bool((~void & ~batch["outlier"]).any())
    model = build_model("dsa_nano")
    tcfg = default_train_config("dsa_nano", "stage2").replace(num_points=64, contrastive_void_weight=4.0)
    torch.manual_seed(0)
    got = StageObjective("stage2", tcfg, 19).losses(model, batch, torch.device("cpu"))["loss_ood"]
    outputs = model(batch["image"].float())
    loss = MaskContrastiveLoss(kind=tcfg.contrastive_loss, void_weight=4.0)
    weighted = loss(outputs, batch["outlier"], valid_mask=valid, void_mask=void)["loss_ood"]
    with_padding = loss(outputs, batch["outlier"], void_mask=void)["loss_ood"]
    plain = MaskContrastiveLoss(kind=tcfg.contrastive_loss)(outputs, batch["outlier"], valid_mask=valid)["loss_ood"]
    assert float(got.detach()) == pytest.approx(float(weighted.detach()), rel=1e-5)
    assert abs(float(weighted.detach()) - float(with_padding.detach())) > 1e-6
    assert abs(float(weighted.detach()) - float(plain.detach())) > 1e-6
    with pytest.raises(ValueError, match="contrastive_void_weight"):
        tcfg.replace(contrastive_void_weight=0.0)


# ------------------------------------------------------------------------------------------- void ground
@pytest.fixture()
def ground_cs(small_cs: Path, tmp_path: Path) -> Path:
    """small_cs with a block of Cityscapes 'parking' (id 9) and 'ground' (id 6) painted into the first frame's label
    ids, and void there in its train ids (as csCreateTrainIdLabelImgs writes them)."""
    root = tmp_path / "cs"
    shutil.copytree(small_cs, root)
    ids_path = sorted(root.glob("gtFine/train/*/*_gtFine_labelIds.png"))[0]
    ids = np.array(Image.open(ids_path))
    ids[30:50, 10:60], ids[30:50, 60:100] = 9, 6
    Image.fromarray(ids).save(ids_path)
    train_path = ids_path.with_name(ids_path.name.replace("_labelIds", "_labelTrainIds"))
    train_ids = np.array(Image.open(train_path))
    train_ids[30:50, 10:100] = VOID
    Image.fromarray(train_ids).save(train_path)
    return root


def test_void_ground_is_marked_or_flat_only_when_asked_and_keeps_the_crops_paired(ground_cs: Path) -> None:
    """The reader marks parking and ground as VOID_GROUND ("marked") or labels them sidewalk and terrain ("flat"),
    from the label ids, and changes nothing else; the training augmentation draws the same crops every way (the arms
    of a study stay paired)."""
    sidewalk, terrain = CITYSCAPES_CLASSES.index("sidewalk"), CITYSCAPES_CLASSES.index("terrain")
    plain, marked, flat = (CityscapesDataset(ground_cs, "train", void_ground=m) for m in ("void", "marked", "flat"))
    first = marked.load(0)[1]
    assert (first[30:50, 10:100] == VOID_GROUND).all() and (first == VOID).any()  # the ego vehicle stays void
    first_flat = flat.load(0)[1]
    assert (first_flat[30:50, 10:60] == sidewalk).all() and (first_flat[30:50, 60:100] == terrain).all()
    for i in range(len(plain)):
        a, b, f = plain.load(i)[1], marked.load(i)[1], flat.load(i)[1]
        assert np.array_equal(a, np.where(b == VOID_GROUND, VOID, b))
        assert np.array_equal(f[b != VOID_GROUND], a[b != VOID_GROUND])
    aug = TrainAugment(crop_size=(48, 96), base_size=(64, 128))  # random scale, class-balance retries, flip, colour
    for seed in range(3):
        for i in range(len(plain)):
            x = CityscapesTrainSet(ground_cs, "train", augment=aug, seed=seed)[i]
            y = CityscapesTrainSet(ground_cs, "train", augment=aug, seed=seed, void_ground="marked")[i]
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["valid"], y["valid"])
            assert torch.equal(x["label"], y["label"].masked_fill(y["label"] == VOID_GROUND, VOID))
    from dsa_core.train.loop import RunSpec, build_train_dataset  # the options reach the set `dsa train` builds

    spec = RunSpec(preset="dsa_nano", data=ground_cs, out=ground_cs / "run")
    for stage, options, expected in (("stage1", {"ubhl_void_ground": "id", "void_ground_labels": "void"}, VOID_GROUND),
                                     ("stage1", {"void_ground_labels": "void"}, VOID),
                                     ("stage1", {}, terrain),  # dsa_nano's default: flat
                                     ("stage2", {"void_ground_labels": "flat"}, terrain),
                                     ("pretrain", {"void_ground_labels": "flat"}, terrain),
                                     ("stage2", {"void_ground_labels": "void"}, VOID)):
        tcfg = default_train_config("dsa_nano", stage).replace(**options)
        if stage == "stage2":
            tcfg = tcfg.replace(outlier_prob=0.0)  # no pool in this fixture
        if stage == "pretrain":
            tcfg = tcfg.replace(pretrain_outlier_prob=0.0)
        built = build_train_dataset(spec, tcfg, 16)
        assert (built.reader.load(0)[1][30:50, 60:100] == expected).all(), (stage, options)
    # the paper presets keep Cityscapes void; the CPU recipe learns void ground as flat classes in every stage
    assert {default_train_config(p, s).void_ground_labels for p in ("dsa_tiny", "dsa_large")
            for s in ("stage1", "stage2")} == {"void"}
    assert {default_train_config("dsa_nano", s).void_ground_labels for s in ("pretrain", "stage1", "stage2")} == {"flat"}
    with pytest.raises(ValueError, match="already makes void ground in-distribution"):
        default_train_config("dsa_nano", "stage1").replace(void_ground_labels="flat", ubhl_void_ground="id")
    with pytest.raises(ValueError, match="must be one of"):
        default_train_config("dsa_nano", "stage1").replace(void_ground_labels="road")
    with pytest.raises(ValueError, match="must be one of"):
        CityscapesDataset(ground_cs, "train", void_ground=True)
    for path in ground_cs.glob("gtFine/train/*/*_gtFine_labelIds.png"):
        path.unlink()
    CityscapesDataset(ground_cs, "train")  # train ids alone are enough without void ground
    for mode in ("marked", "flat"):
        with pytest.raises(FileNotFoundError, match="needs"):
            CityscapesDataset(ground_cs, "train", void_ground=mode)


def test_class_balance_retries_count_void_ground_as_void() -> None:
    """Crops retry while one class covers >= cat_max_ratio of the non-void pixels; void ground is not a class there,
    so a frame of road and void ground gets the crop it gets with plain void."""
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    label = np.zeros((64, 128), np.int64)
    label[:, :48] = VOID_GROUND
    aug = TrainAugment(crop_size=(32, 64), ratio_range=(1.0, 1.0), photometric=False, flip_prob=0.0)
    for seed in range(5):
        marked = aug(image, label, None, np.random.default_rng(seed))
        plain = aug(image, np.where(label == VOID_GROUND, VOID, label), None, np.random.default_rng(seed))
        assert np.array_equal(marked[0], plain[0])


def test_stage1_objective_counts_void_ground_in_distribution_for_l_ubhl_only(ground_cs: Path) -> None:
    """ubhl_void_ground='id': L_ubhl puts void-ground tokens in its ID set (not the OOD set), and every other loss
    sees plain void, exactly as on the unmarked batch."""
    aug = TrainAugment(crop_size=(64, 128), ratio_range=(1.0, 1.0), photometric=False, cat_max_ratio=None, flip_prob=0.0)
    batch = collate([CityscapesTrainSet(ground_cs, "train", augment=aug, void_ground="marked")[i] for i in range(3)])
    labels, valid = batch["label"], batch["valid"]
    assert bool((labels == VOID_GROUND).any()) and bool((labels == VOID).any())
    as_void = labels.masked_fill(labels == VOID_GROUND, VOID)
    model = build_model("dsa_nano")
    tcfg = default_train_config("dsa_nano", "stage1").replace(num_points=64, ubhl_void_ground="id",
                                                               void_ground_labels="void")
    objective = StageObjective("stage1", tcfg, 19)
    torch.manual_seed(0)
    got = objective.losses(model, batch, torch.device("cpu"))
    torch.manual_seed(0)
    unmarked = objective.losses(model, dict(batch, label=as_void), torch.device("cpu"))
    for name in ("loss_ce", "loss_mask", "loss_dice"):
        assert float(got[name].detach()) == float(unmarked[name].detach()), name
    outputs = model(batch["image"].float())
    ubhl = UncertaintyHyperbolicLoss(c=tcfg.curvature, mode=tcfg.ubhl_mode, num_classes=19, scale=tcfg.ubhl_scale)
    as_road = ubhl(outputs["stream_tokens"], outputs["token_shapes"], labels.masked_fill(labels == VOID_GROUND, 0),
                   valid_mask=valid)
    assert float(got["loss_ubhl"].detach()) == pytest.approx(float(as_road.detach()), rel=1e-6)
    assert abs(float(got["loss_ubhl"].detach()) - float(unmarked["loss_ubhl"].detach())) > 1e-6
    ood, ind = token_label_sets(labels, outputs["token_shapes"], 19, valid)
    ood_void, ind_void = token_label_sets(as_void, outputs["token_shapes"], 19, valid)
    moved = ind & ~ind_void
    assert bool(moved.any()) and torch.equal(moved, ood_void & ~ood)
    for stage, value, match in (("stage2", "id", "stage 1 only"), ("stage1", "road", "must be one of")):
        with pytest.raises(ValueError, match=match):
            default_train_config("dsa_nano", stage).replace(ubhl_void_ground=value)


# ------------------------------------------------------------------------------------------- conv stem
def test_conv_stem_strides_and_weights_round_trip(tmp_path: Path) -> None:
    cfg = get_config("dsa_nano")
    assert cfg.backbone.stem == "conv"
    torch.manual_seed(0)
    vit = FrozenViT(cfg)
    feats = vit(torch.randn(2, 3, 64, 128))
    assert [tuple(f.shape) for f in feats] == [(2, 96, 4, 8)] * 4
    path = save_backbone(PatchSegViT(cfg), tmp_path / "b.safetensors")
    other = FrozenViT(cfg)
    load_backbone_weights(other, path)
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert any(k.startswith("patch_embed.proj.0.") for k in saved)
    for key, value in other.vit.state_dict().items():
        assert torch.equal(value, saved[key]), key
    patch_cfg = cfg.replace(**{"backbone.stem": "patch"})
    with pytest.raises(ValueError, match="missing keys"):
        load_backbone_weights(FrozenViT(patch_cfg), path)
    with pytest.raises(ValueError, match="power-of-two"):
        conv_stem(12, 96, 24)
    with pytest.raises(ValueError, match="stem"):
        FrozenViT(cfg.replace(**{"backbone.stem": "resnet"}))


# ------------------------------------------------------------------------------------------- outlier pool
def test_pool_families_render_and_stay_disjoint_from_the_evaluation_families() -> None:
    assert not set(OUTLIER_POOL_FAMILIES) & set(TEST_ANOMALY_FAMILIES)
    for family in OUTLIER_POOL_FAMILIES:
        for seed in range(3):
            sprite = make_sprite(family, 48, seed)
            assert sprite.mask.sum() > 48  # a real object, not a speck
            inside = sprite.rgb[sprite.mask]
            dark_outline = (inside.max(axis=1) <= 20).mean()
            if family in OUTLINED_POOL_FAMILIES:
                assert dark_outline > 0.01, family
            else:
                assert dark_outline < 0.01, family  # no outline shortcut


def test_pool_colours_are_not_all_saturated() -> None:
    """The newer families draw greys and browns as well: mean saturation spans a wide range over seeds."""
    import cv2

    sats = []
    for seed in range(40):
        sprite = make_sprite("shaded_polygon", 32, seed)
        hsv = cv2.cvtColor(np.ascontiguousarray(sprite.rgb), cv2.COLOR_RGB2HSV)
        sats.append(float(hsv[..., 1][sprite.mask].mean()))
    assert min(sats) < 60 and max(sats) > 180


def test_paste_object_scale_and_on_road() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((100, 200, 3), np.uint8)
    label = np.full((100, 200), 2, np.int64)
    label[70:, 50:150] = 0  # the road
    obj = np.full((20, 20, 3), 200, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 4:16] = True  # a 10 x 12 object
    for _ in range(20):
        _, lab, out = paste_object(image, label, obj, mask, rng, scale=2.0, on_road_label=0)
        ys, xs = np.nonzero(out)
        assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 == 24
        bottom, centre = ys.max(), (xs.min() + xs.max()) // 2
        assert label[bottom, centre] == 0  # stands on the road
        assert (lab[out] == 254).all()
    _, _, tiny = paste_object(image, label, obj, mask, rng, scale=0.05)
    assert tiny.sum() >= 1


def test_road_height_ratio_sizes_objects_by_their_distance_below_the_horizon() -> None:
    """Perspective sizing: an object standing k rows below the top road row is ratio * (k + 1) pixels tall, so the
    same pool object is small far away and large near the camera, and it stands on the road."""
    from dsa_core.data.coco_mix import MIN_ROAD_OBJECT_PX, road_foot_and_scale

    image = np.zeros((120, 200, 3), np.uint8)
    label = np.full((120, 200), 10, np.int64)  # sky
    horizon = 40
    for y in range(horizon, 120):  # a road widening towards the camera, vanishing at row 40
        half = 2 + (y - horizon)
        label[y, max(0, 100 - half):100 + half] = 0
    obj = np.full((30, 30, 3), 200, np.uint8)
    mask = np.zeros((30, 30), bool)
    mask[5:25, 10:20] = True  # 20 rows tall
    rng = np.random.default_rng(0)
    heights, feet = [], []
    for _ in range(60):
        foot, scale = road_foot_and_scale(label, mask, (0.5, 0.5), rng)
        _, lab, out = paste_object(image, label, obj, mask, rng, scale=scale, foot=foot)
        ys, xs = np.nonzero(out)
        expected = max(MIN_ROAD_OBJECT_PX, 0.5 * (foot[0] - horizon + 1))
        assert abs((ys.max() - ys.min() + 1) - expected) <= 1.0
        assert label[foot] == 0 and ys.max() == foot[0] and abs((xs.min() + xs.max()) / 2 - foot[1]) <= 1
        assert (lab[out] == 254).all()
        heights.append(ys.max() - ys.min() + 1)
        feet.append(foot[0])
    assert np.corrcoef(feet, heights)[0, 1] > 0.95  # far = small, near = large
    assert road_foot_and_scale(np.full((50, 50), 10), mask, (0.5, 1.0), rng) is None  # no road: no foot


def test_anomaly_mix_scale_range_validated(tmp_path: Path) -> None:
    write_coco(tmp_path, 3, height=64, width=96, seed=1, excluded_fraction=0.0, progress=False)
    pool = CocoOutlierPool(tmp_path, min_size=32)
    with pytest.raises(ValueError, match="scale_range"):
        AnomalyMix(pool, scale_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="road_prob"):
        AnomalyMix(pool, road_prob=1.5)
    with pytest.raises(ValueError, match="road_height_ratio"):
        AnomalyMix(pool, road_height_ratio=(0.5, 0.1))
    road_frame = np.full((64, 128), 10, np.int64)
    road_frame[30:, :] = 0
    on_road = AnomalyMix(pool, p=1.0, road_prob=1.0, road_height_ratio=(0.2, 0.2))
    for k in range(5):
        _, lab, out = on_road(np.zeros((64, 128, 3), np.uint8), road_frame, np.random.default_rng(k))
        ys = np.nonzero(out)[0]
        assert ys.max() >= 30 and ys.max() - ys.min() + 1 <= max(6, 0.2 * (ys.max() - 30 + 1)) + 1
    mix = AnomalyMix(pool, p=1.0, scale_range=(0.5, 0.5))
    image, label = np.zeros((64, 128, 3), np.uint8), np.zeros((64, 128), np.int64)
    _, lab, out = mix(image, label, np.random.default_rng(0))
    assert out.any() and (lab[out] == 254).all()


# ------------------------------------------------------------------------------------------- data at scale
def test_parallel_synthesis_writes_identical_files(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}

    write_cityscapes(tmp_path / "a", 20, 2, 48, 96, seed=2, progress=False)
    write_cityscapes(tmp_path / "b", 20, 2, 48, 96, seed=2, progress=False, workers=2)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert len(a) == 22 * 6 and a == b


def test_train_cli_set_reaches_the_model_and_unknown_preset_is_refused(small_cs: Path, tmp_path: Path) -> None:
    from dsa_core.cli import main
    from dsa_core.checkpoint import load_checkpoint

    out = tmp_path / "pt"
    rc = main(["train", "--stage", "pretrain", "--data", str(small_cs), "--out", str(out), "--iterations", "1",
               "--batch-size", "1", "--crop", "64", "128", "--base-size", "64", "128", "--num-workers", "0",
               "--no-progress", "--set", "backbone.stem=patch", "--set", "backbone.depth=4"])
    assert rc == 0
    assert load_checkpoint(out / "last.pt")["config"]["backbone"]["stem"] == "patch"
    assert main(["train", "--preset", "dsa_foo", "--stage", "pretrain", "--data", str(small_cs), "--out", str(out)]) == 2


def test_pretrained_conv_backbone_feeds_stage1(tmp_path: Path) -> None:
    """The stage-1 model built on a conv-stem backbone file holds exactly the file's weights."""
    cfg = get_config("dsa_nano")
    torch.manual_seed(1)
    path = save_backbone(PatchSegViT(cfg), tmp_path / "b.safetensors")
    model = build_model(cfg, backbone_weights=str(path))
    from safetensors.torch import load_file

    saved = load_file(str(path))
    for key, value in model.backbone.vit.state_dict().items():
        assert torch.equal(value, saved[key])
    assert not any(p.requires_grad for p in model.backbone.parameters())
    with torch.no_grad():
        assert math.isfinite(float(model(torch.zeros(1, 3, 64, 128))["pred_logits"].sum()))


# ------------------------------------------------------------------------------------------- curves
def test_learning_curves_from_run_csvs(tmp_path: Path) -> None:
    from dsa_core.train.curves import plot_runs, read_csv, smooth

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,total,stat_dist_id,stat_dist_ood\n10,3.0,2.0,1.0\n20,2.0,2.5,0.5\n30,1.0,3.0,0.4\n")
    (run / "val.csv").write_text("step,miou,pixel_accuracy,auprc\n20,0.1,0.5,0.2\n30,0.2,0.6,0.3\n")
    cols = read_csv(run / "metrics.csv")
    assert cols["step"].tolist() == [10, 20, 30]
    assert smooth(np.array([1.0, 3.0, np.nan, 5.0]), 2).tolist() == [1.0, 2.0, 3.0, 5.0]
    out = plot_runs({"a": run, "missing": tmp_path / "nothing"}, tmp_path / "c.png", title="t")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 4 * im.size[1]  # four panels side by side


@pytest.mark.parametrize("kind", ["road_coloured", "tiny", "thin_pole", "photo_like", "large_near",
                                  "flat", "cluster", "dark", "weather"])
def test_held_out_kind_sets_are_readable_fs_laf_with_anomalies_of_that_kind(tmp_path: Path, kind: str) -> None:
    from dsa_core.data.anomaly_sets import open_benchmark
    from dsa_core.data.synth.anomaly_synth import write_fs_laf

    write_fs_laf(tmp_path, 3, 128, 256, seed=4, progress=False, kind=kind)
    ds = open_benchmark("fs_laf", tmp_path)
    sizes = []
    for i in range(len(ds)):
        from scipy import ndimage

        label = ds[i].label
        parts, n = ndimage.label(label == 1)
        for sl in ndimage.find_objects(parts):
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            sizes.append((h, w, float((parts[sl] > 0).sum()) / label.size))
    assert sizes, "no anomaly pixels in the set"
    if kind == "tiny":
        assert all(max(h, w) <= 20 for h, w, _ in sizes)
    if kind == "thin_pole":  # (two poles can touch; most stay apart)
        assert sum(h >= 3 * w for h, w, _ in sizes) >= len(sizes) / 2
    if kind == "large_near":
        assert max(a for _, _, a in sizes) > 0.03
    with pytest.raises(ValueError, match="held-out kind"):
        write_fs_laf(tmp_path / "x", 1, 64, 128, kind="giraffe")


def _kind_set(root: Path, kind: str | None, count: int = 4) -> list:
    from dsa_core.data.anomaly_sets import open_benchmark
    from dsa_core.data.synth.anomaly_synth import write_fs_laf

    write_fs_laf(root, count, 128, 256, seed=4, progress=False, kind=kind)
    ds = open_benchmark("fs_laf", root)
    return [ds[i] for i in range(len(ds))]


def _contrast(frames: list) -> float:
    return float(np.mean([s.image.astype(np.float32).std() for s in frames]))


def test_fresh_kinds_are_what_they_say(tmp_path: Path) -> None:
    """The fresh held-out kinds: flat objects are wider than high, dark ones darker than the road, weather frames
    are rendered at dusk or in fog (lower contrast than day frames of the same generator)."""
    from scipy import ndimage

    from dsa_core.data.synth.anomaly_synth import FRESH_KINDS, FS_LAF_KINDS, HARD_KINDS

    assert FS_LAF_KINDS[:len(HARD_KINDS)] == HARD_KINDS  # the hard kinds keep their random streams
    assert set(FRESH_KINDS).isdisjoint(HARD_KINDS)
    flat = _kind_set(tmp_path / "flat", "flat")
    ratios = [(sl[1].stop - sl[1].start) / (sl[0].stop - sl[0].start)
              for s in flat for sl in ndimage.find_objects(ndimage.label(s.label == 1)[0])]
    assert ratios and float(np.median(ratios)) >= 2.0
    dark = _kind_set(tmp_path / "dark", "dark")
    for s in dark:
        if (s.label == 1).any():
            lum = s.image.astype(np.float32).mean(-1)
            assert lum[s.label == 1].mean() < 0.5 * lum[s.label == 0].mean()
    day = _kind_set(tmp_path / "day", None)
    weather = _kind_set(tmp_path / "weather", "weather")
    assert any((s.label == 1).any() for s in weather)
    assert _contrast(weather) < 0.85 * _contrast(day)


def test_a_cluster_obstacle_is_several_objects() -> None:
    from scipy import ndimage

    from dsa_core.data.synth.anomaly_synth import _held_out_obstacle
    from dsa_core.data.synth.scene import render_scene

    counts = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        scene = render_scene(256, 512, rng)
        image = scene.image.copy()
        mask = _held_out_obstacle("cluster", image, scene, rng)
        assert (image[mask] != scene.image[mask]).any()  # drawn into the frame where the mask says
        counts.append(ndimage.label(mask)[1])
    assert float(np.mean(counts)) >= 2.0 and max(counts) >= 3
