"""Training stages on `dsa synth` output: fixed-batch overfitting, frozen parts bit-identical, exact resume."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from dsa_core import build_model
from dsa_core.checkpoint import load_checkpoint
from dsa_core.data.coco_mix import AnomalyMix, CityscapesTrainSet, CocoOutlierPool, collate
from dsa_core.data.synth.synthetic import write_cityscapes, write_coco
from dsa_core.data.transforms import TrainAugment
from dsa_core.train.config import default_train_config
from dsa_core.train.loop import RunSpec, Trainer, run_training
from dsa_core.train.pretrain import PatchSegViT, save_backbone

CROP = (64, 128)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_world")
    write_cityscapes(root / "cs", n_train=4, n_val=2, height=128, width=256, seed=3, progress=False)
    write_coco(root / "coco", 4, height=96, width=128, seed=3, excluded_fraction=0.25, progress=False)
    torch.manual_seed(0)
    backbone = save_backbone(PatchSegViT(build_model("dsa_nano").cfg), root / "backbone.safetensors")
    return {"cs": root / "cs", "coco": root / "coco", "backbone": backbone}


def _tcfg(stage: str, **kw):
    base = dict(iterations=200, batch_size=2, crop=CROP, base_size=(128, 256), warmup_iters=0, num_points=256,
                num_workers=0, coco_min_size=64, log_interval=1, ckpt_interval=0)
    base.update(kw)
    return default_train_config("dsa_nano", stage).replace(**base)


def _fixed_batch(world, mix: bool = False) -> dict:
    pool_mix = AnomalyMix(CocoOutlierPool(world["coco"], min_size=64), p=1.0) if mix else None
    ds = CityscapesTrainSet(world["cs"], "train", augment=TrainAugment(CROP, base_size=(128, 256)), mix=pool_mix, seed=1)
    return collate([ds[0], ds[1]])


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_identical(before: dict[str, torch.Tensor], module: torch.nn.Module, what: str) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"{what} changed: {changed[:5]}"


def _overfit(trainer: Trainer, batch: dict, steps: int) -> list[float]:
    return [trainer.train_step(batch)["total"] for _ in range(steps)]


def _decreasing(totals: list[float]) -> None:
    assert all(torch.isfinite(torch.tensor(totals)))
    first, last = sum(totals[:2]) / 2, sum(totals[-3:]) / 3
    assert last < first, f"loss did not decrease on a fixed batch: {totals}"


def test_pretrain_overfits_and_exports_timm_backbone(world, tmp_path):
    torch.manual_seed(0)
    model = PatchSegViT(build_model("dsa_nano").cfg)
    trainer = Trainer(model, _tcfg("pretrain", lr=2e-3))
    batch = _fixed_batch(world)
    _decreasing(_overfit(trainer, batch, 12))
    # Only the ViT leaves the stage, in timm key layout, and loads into the DSA model's frozen backbone.
    path = save_backbone(model, tmp_path / "bb.safetensors")
    dsa = build_model("dsa_nano", backbone_weights=str(path))
    ref = model.backbone.vit.state_dict()
    for k, v in dsa.backbone.vit.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert not any(p.requires_grad for p in dsa.backbone.parameters())


def test_stage1_overfits_fixed_batch_with_frozen_backbone(world):
    torch.manual_seed(0)
    model = build_model("dsa_nano", backbone_weights=str(world["backbone"]))
    backbone_before = _state(model.backbone)
    adapter_before = _state(model.adapter)
    trainer = Trainer(model, _tcfg("stage1", lr=1e-3))
    assert trainer.objective.weights == {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0, "loss_ubhl": 0.1,
                                         "stat_dist_id": 0.0, "stat_dist_ood": 0.0, "stat_id_at_cap": 0.0}
    batch = _fixed_batch(world)
    values = [trainer.train_step(batch) for _ in range(12)]
    _decreasing([v["total"] for v in values])
    # the Mask2Former part alone also decreases (L_ubhl is unbounded below and could hide a stuck decoder)
    m2f = [sum(v for k, v in row.items() if k.startswith(("loss_ce", "loss_mask", "loss_dice"))) for row in values]
    _decreasing(m2f)
    _assert_identical(backbone_before, model.backbone, "backbone")
    assert any(not torch.equal(adapter_before[k], v) for k, v in model.adapter.state_dict().items())


def test_stage2_trains_only_the_decoder(world):
    torch.manual_seed(0)
    model = build_model("dsa_nano", backbone_weights=str(world["backbone"]))
    frozen = {"backbone": _state(model.backbone), "adapter": _state(model.adapter)}
    decoder_before = _state(model.decoder)
    trainer = Trainer(model, _tcfg("stage2", lr=1e-3))
    assert set(trainer.objective.weights) == {"loss_ce", "loss_mask", "loss_dice", "loss_ood"}
    trainable = {n for g in trainer.optimizer.param_groups for n in g["names"]}
    assert trainable and all(n.startswith("decoder.") for n in trainable)
    batch = _fixed_batch(world, mix=True)
    assert batch["outlier"].any() and (batch["label"] == 254).any()
    values = [trainer.train_step(batch) for _ in range(10)]
    _decreasing([v["total"] for v in values])
    assert "loss_ubhl" not in values[0] and "loss_ood_0" in values[0]
    _assert_identical(frozen["backbone"], model.backbone, "backbone")
    _assert_identical(frozen["adapter"], model.adapter, "adapter (incl. BatchNorm statistics)")
    assert all(not torch.equal(decoder_before[n], p) for n, p in model.decoder.named_parameters()
               if n.endswith("class_embed.weight"))


def test_finetuned_baseline_trains_the_backbone_in_stage1_only(world):
    """The Table 1 "Fine-Tuned" baseline: the ViT trains in stage 1 (layer-wise lr decay), stage 2 freezes it again."""
    from dsa_core.config import get_config

    torch.manual_seed(0)
    cfg = get_config("dsa_nano").replace(**{"backbone.finetune": True})
    model = build_model(cfg, backbone_weights=str(world["backbone"]))
    backbone_before = _state(model.backbone)
    trainer = Trainer(model, _tcfg("stage1", lr=1e-3))
    scales = {n: g["lr_scale"] for g in trainer.optimizer.param_groups for n in g["names"]}
    assert scales["backbone.vit.blocks.0.attn.qkv.weight"] < scales["backbone.vit.blocks.3.attn.qkv.weight"] < 1.0
    batch = _fixed_batch(world)
    _decreasing([trainer.train_step(batch)["total"] for _ in range(8)])
    assert not model.backbone.training
    changed = [k for k, v in model.backbone.state_dict().items() if not torch.equal(v, backbone_before[k])]
    assert "vit.blocks.0.attn.qkv.weight" in changed and any(k.startswith("vit.patch_embed.proj.") for k in changed)
    stage2 = Trainer(model, _tcfg("stage2", lr=1e-3))
    assert all(n.startswith("decoder.") for g in stage2.optimizer.param_groups for n in g["names"])


def _run(world, out: Path, stage: str, **kw) -> dict:
    spec_kw = {k: kw.pop(k) for k in ("max_steps", "resume", "init", "backbone_weights", "coco", "anomaly_from_coco")
               if k in kw}
    spec = RunSpec(preset="dsa_nano", data=world["cs"], out=out, progress=False, val_max_images=1, **spec_kw)
    return run_training(spec, _tcfg(stage, **kw))


def test_resume_continues_exactly(world, tmp_path):
    kw = dict(iterations=4, ckpt_interval=2, lr=5e-4, warmup_iters=2, backbone_weights=world["backbone"])
    full = _run(world, tmp_path / "full", "stage1", **dict(kw))
    assert full["step"] == 4 and full["finished"]
    assert [int(load_checkpoint(tmp_path / "full" / "last.pt")["step"])] == [4]
    part = _run(world, tmp_path / "part", "stage1", max_steps=2, **dict(kw))
    assert part["step"] == 2 and not part["finished"]
    mid = load_checkpoint(tmp_path / "part" / "last.pt")
    assert mid["step"] == 2 and mid["scheduler"]["last_epoch"] == 2 and not (tmp_path / "part" / "final.pt").exists()
    resumed = _run(world, tmp_path / "part", "stage1", resume=True, **dict(kw))
    assert resumed["step"] == 4 and resumed["finished"]

    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), f"parameter {k} differs between uninterrupted and resumed runs"
    for pid, st in a["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(t, b["optimizer"]["state"][pid][name]), (pid, name)
    assert a["scheduler"] == b["scheduler"]
    # frozen backbone still equals the weights file
    from safetensors.torch import load_file

    ref = load_file(str(world["backbone"]))
    for k, v in ref.items():
        assert torch.equal(b["model"][f"backbone.vit.{k}"], v), k
    with (tmp_path / "part" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]
    # a different config cannot silently resume
    with pytest.raises(ValueError, match="different training config"):
        _run(world, tmp_path / "part", "stage1", resume=True, **{**kw, "lr": 1e-3})


def test_stage2_run_from_stage1_checkpoint_with_anomaly_validation(world, tmp_path):
    s1 = _run(world, tmp_path / "s1", "stage1", iterations=1, backbone_weights=world["backbone"])
    assert s1["finished"] and (tmp_path / "s1" / "final.pt").is_file()
    s2 = _run(world, tmp_path / "s2", "stage2", iterations=2, outlier_prob=1.0, init=tmp_path / "s1" / "last.pt",
              coco=world["coco"], anomaly_from_coco=True)
    assert s2["finished"]
    val = s2["val"]
    assert 0.0 <= val["miou"] <= 1.0 and 0.0 < val["auprc"] <= 1.0 and 0.0 <= val["fpr95"] <= 1.0
    a = load_checkpoint(tmp_path / "s1" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "s2" / "last.pt")["model"]
    for k in a:
        if k.startswith(("backbone.", "adapter.")):
            assert torch.equal(a[k], b[k]), f"{k} changed in stage 2"
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    with pytest.raises(ValueError, match="--init"):
        _run(world, tmp_path / "bad", "stage2", iterations=1, coco=world["coco"])


def test_anomaly_validation_set_does_not_depend_on_the_training_seed(world, tmp_path):
    """Runs with different seeds are compared on the same pasted-outlier frames: with lr 0 the model stays the
    stage-1 checkpoint, so equal metrics mean equal validation sets."""
    _run(world, tmp_path / "s1", "stage1", iterations=1, backbone_weights=world["backbone"])
    vals = [_run(world, tmp_path / f"s2_{seed}", "stage2", iterations=1, lr=0.0, seed=seed, outlier_prob=1.0,
                 init=tmp_path / "s1" / "last.pt", coco=world["coco"], anomaly_from_coco=True)["val"]
            for seed in (0, 1)]
    assert vals[0]["auprc"] > 0.0 and vals[0] == vals[1]


def test_pretrain_run_writes_loadable_backbone(world, tmp_path):
    res = _run(world, tmp_path / "pre", "pretrain", iterations=2)
    assert res["finished"] and 0.0 <= res["val"]["miou"] <= 1.0
    path = tmp_path / "pre" / "backbone.safetensors"
    model = build_model("dsa_nano", backbone_weights=str(path))
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert set(saved) == set(model.backbone.vit.state_dict())
    ckpt = load_checkpoint(tmp_path / "pre" / "last.pt")
    for k, v in saved.items():  # the file holds the trained ViT of the run's final state
        assert torch.equal(ckpt["model"][f"backbone.vit.{k}"], v), k
    with pytest.raises(ValueError, match="pretrain starts from scratch"):
        _run(world, tmp_path / "pre2", "pretrain", iterations=1, backbone_weights=path)


def test_anomaly_set_validation_hook(world, tmp_path):
    from dsa_core.cli import main
    from dsa_core.data.anomaly_sets import benchmark_samples

    assert main(["synth", "road_anomaly", "--out", str(tmp_path / "ra"), "--count", "2", "--height", "128",
                 "--width", "256", "--no-progress"]) == 0
    samples = benchmark_samples("road_anomaly", tmp_path / "ra")
    assert len(benchmark_samples("road_anomaly", tmp_path / "ra", max_images=1)) == 1
    assert len(samples) == 2 and all(set(map(int, label.ravel())) <= {0, 1, 255} for _, label in samples)
    spec = RunSpec(preset="dsa_nano", data=world["cs"], out=tmp_path / "s1", progress=False, val_max_images=1,
                   backbone_weights=world["backbone"], anomaly_samples=iter(samples), val_every=1)
    res = run_training(spec, _tcfg("stage1", iterations=2))
    with (tmp_path / "s1" / "val.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]  # an iterator of samples is reusable across validations
    assert all(0.0 < float(r["auprc"]) <= 1.0 and 0.0 <= float(r["fpr95"]) <= 1.0 for r in rows)
    assert res["val"]["auprc"] == pytest.approx(float(rows[-1]["auprc"]), rel=1e-5)
    # KEY:DIR is parsed by the command line: refused there, one line, exit status 2
    assert main(["train", "--stage", "stage1", "--data", str(world["cs"]), "--out", str(tmp_path / "x"),
                 "--anomaly-set", str(tmp_path / "ra")]) == 2


def test_non_finite_loss_stops_before_the_update(world):
    # pretrain stage: a NaN pixel gives a NaN cross-entropy (the DSA stages already fail earlier, in the matcher)
    model = PatchSegViT(build_model("dsa_nano").cfg)
    trainer = Trainer(model, _tcfg("pretrain"))
    batch = _fixed_batch(world)
    batch["image"] = batch["image"].float()
    batch["image"][0, :, :8, :8] = float("nan")
    before = _state(model)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        trainer.train_step(batch)
    _assert_identical(before, model, "model after a rejected step")
    assert trainer.step == 0


def test_train_flags_override_the_preset_defaults_field_by_field() -> None:
    import dataclasses

    from dsa_core.train.config import FLAG_FIELDS, TrainConfig, train_config_from_flags

    base = default_train_config("dsa_nano", "stage1")
    cfg = train_config_from_flags("dsa_nano", "stage1", {"lr": 0.5, "batch_size": None, "crop": [64, 128],
                                                          "base_size": None, "no_amp": True, "preset": "ignored"})
    assert cfg.lr == 0.5 and cfg.batch_size == base.batch_size and cfg.crop == (64, 128) and cfg.amp is False
    assert cfg.replace(lr=base.lr, crop=base.crop, amp=base.amp) == base  # nothing else changed
    assert set(FLAG_FIELDS) <= {f.name for f in dataclasses.fields(TrainConfig)}
    s2 = train_config_from_flags("dsa_nano", "stage2", {"outlier_scale": [0.5, 2.0]})
    assert s2.outlier_scale == (0.5, 2.0)
    assert s2.replace(outlier_scale=default_train_config("dsa_nano", "stage2").outlier_scale) == \
        default_train_config("dsa_nano", "stage2")
    with pytest.raises(ValueError, match="outlier_scale"):
        train_config_from_flags("dsa_nano", "stage2", {"outlier_scale": [3.0, 0.35]})
    assert default_train_config("dsa_nano", "stage2").outlier_road_height is None  # off unless asked for
    assert train_config_from_flags("dsa_nano", "stage2", {"outlier_road_height": [0.1, 1.0]}).outlier_road_height == \
        (0.1, 1.0)
    with pytest.raises(ValueError, match="outlier_road_height"):
        train_config_from_flags("dsa_nano", "stage2", {"outlier_road_height": [1.0, 0.1]})


def test_pretrain_learns_pasted_pool_objects_as_an_extra_class(world, tmp_path):
    from dsa_core.labels import OUTLIER
    from dsa_core.train.pretrain import pretrain_loss

    # the loss: outlier pixels are the extra class when the head has it, ignored otherwise
    labels = torch.tensor([[[0, 1], [OUTLIER, 255]]])
    logits = torch.randn(1, 20, 2, 2, dtype=torch.float64)
    extra = pretrain_loss(logits, labels, num_classes=19)["loss_ce"]
    ref = torch.nn.functional.cross_entropy(logits[0].permute(1, 2, 0).reshape(4, 20)[:3], torch.tensor([0, 1, 19]))
    assert float(extra) == pytest.approx(float(ref), rel=1e-6)
    scene_only = pretrain_loss(logits[:, :19], labels, num_classes=19)["loss_ce"]
    ref = torch.nn.functional.cross_entropy(logits[0, :19].permute(1, 2, 0).reshape(4, 19)[:2], torch.tensor([0, 1]))
    assert float(scene_only) == pytest.approx(float(ref), rel=1e-6)
    with pytest.raises(ValueError, match="21 classes"):
        pretrain_loss(torch.randn(1, 21, 2, 2), labels, num_classes=19)
    # the data: with the option, pre-training frames carry pasted pool objects (label 254); without it, none do
    from dsa_core.train.loop import build_train_dataset

    for prob, expect in ((1.0, True), (0.0, False)):
        spec = RunSpec(preset="dsa_nano", data=world["cs"], out=tmp_path / "x", coco=world["coco"], progress=False)
        ds = build_train_dataset(spec, _tcfg("pretrain", pretrain_outlier_prob=prob), 16)
        assert any(bool((ds[i]["label"] == OUTLIER).any()) for i in range(len(ds))) == expect
    # a run: the head has one more class, validation still scores the scene classes, the backbone file is the same
    res = _run(world, tmp_path / "pre", "pretrain", iterations=2, pretrain_outlier_prob=1.0, coco=world["coco"])
    assert res["finished"] and 0.0 <= res["val"]["miou"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "pre" / "last.pt")
    assert ckpt["model"]["head.1.weight"].shape[0] == 20
    model = build_model("dsa_nano", backbone_weights=str(tmp_path / "pre" / "backbone.safetensors"))
    assert model.cfg.num_classes == 19
    with pytest.raises(ValueError, match="pass the COCO outlier pool"):
        _run(world, tmp_path / "nopool", "pretrain", iterations=1, pretrain_outlier_prob=0.5)
    with pytest.raises(ValueError, match="pretrain stage only"):
        default_train_config("dsa_nano", "stage1").replace(pretrain_outlier_prob=0.5)


def test_progress_line_rate_and_time_left():
    from dsa_core.train.loop import progress_line

    line = progress_line("stage1", 400, 6500, 200, 180.0, 2.3456)  # 0.9 s/step, 6100 steps left = 5490 s
    assert line == "stage1 step 400/6500 (6 %), 0.90 s/step, about 1 h 31 min left; loss 2.346"
    assert "about 2 min left" in progress_line("stage2", 2900, 3000, 100, 120.0, 1.0)  # 1.2 s/step x 100
    assert "< 1 min" in progress_line("stage2", 2999, 3000, 10, 10.0, 1.0)
    assert "unknown" in progress_line("pretrain", 0, 10, 0, 0.0, 1.0)


def test_background_run_logs_progress_at_each_checkpoint(world, tmp_path, caplog):
    """--no-progress (a run in the background) still tells the log how far it is and how long is left."""
    import logging

    with caplog.at_level(logging.INFO, logger="dsa_core.train.loop"):
        _run(world, tmp_path / "bg", "pretrain", iterations=4, ckpt_interval=2)
    lines = [r.getMessage() for r in caplog.records if "s/step" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("pretrain step 2/4 (50 %)"), lines  # step 4 is final, not a checkpoint line
    assert "left; loss" in lines[0]
    messages = [r.getMessage() for r in caplog.records]
    assert f"pretrain: steps 0 to 4 on cpu with {torch.get_num_threads()} torch thread(s)" in messages
