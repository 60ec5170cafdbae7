"""The training loop shared by all stages: one optimiser step per iteration, checkpoints, resume, logs, validation.

Design (docs/design.md §4):
* Iteration-based. ``step`` = number of optimiser steps done. The batch of (step, rank) is a pure function of the
  seed (``StepBatchSampler``) and the criterion's point sampling uses a generator seeded from (seed, step, rank), so
  a resumed run repeats the uninterrupted run exactly (on the same hardware).
* Checkpoints (``RUN_DIR/last.pt``) every ``ckpt_interval`` steps and at the end, written atomically by rank 0:
  model, optimizer, scheduler, AMP scaler, step, every rank's RNG states, model config, train config.
  ``resume=True`` restores all of it and continues at ``step``.
* DDP: only trainable sub-modules take part (frozen parameters have requires_grad False, which DDP skips); the
  criterion all-reduces num_masks itself. Only rank 0 writes checkpoints, metrics.csv and shows the progress bar.
* AMP (autocast bf16/fp16 + GradScaler for fp16) only on CUDA; the losses run in fp32 inside the criterion.
"""
from __future__ import annotations

import csv
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from dsa_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dsa_core.config import DSAConfig, get_config
from dsa_core.train.config import TrainConfig
from dsa_core.train.distributed import DistEnv, all_gather_objects, barrier, reduce_mean
from dsa_core.train.objectives import StageObjective, configure_trainable, set_train_mode
from dsa_core.train.optim import build_optimizer, build_scheduler
from dsa_core.train.sampling import EpochIndexed, StepBatchSampler

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
FINAL_CHECKPOINT = "final.pt"
BACKBONE_FILE = "backbone.safetensors"
METRICS_FILE = "metrics.csv"
VAL_FILE = "val.csv"


# ----------------------------------------------------------------------------------------------------------------
# RNG state (stored with weights_only-safe types: tensors, ints, floats, str, tuples)
# ----------------------------------------------------------------------------------------------------------------

def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """Generator for the criterion's point sampling at (step, rank): resume-exact, different per rank."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 1009 + rank) % (2**63 - 1))
    return g


# ----------------------------------------------------------------------------------------------------------------
# Metrics log
# ----------------------------------------------------------------------------------------------------------------

class CsvLog:
    """Append-only CSV with a fixed header; on resume rows after the resumed step are dropped (the killed run's
    tail that the checkpoint does not cover)."""

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                rows = [r for r in reader if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        elif path.is_file():
            path.unlink()

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._rewrite([])
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"metrics row has columns {sorted(unknown)} not in the log header {self.fields}")
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)


# ----------------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class TrainPaths:
    out: Path

    @property
    def last(self) -> Path:
        return self.out / LAST_CHECKPOINT

    @property
    def final(self) -> Path:
        return self.out / FINAL_CHECKPOINT

    @property
    def backbone(self) -> Path:
        return self.out / BACKBONE_FILE

    @property
    def metrics(self) -> Path:
        return self.out / METRICS_FILE

    @property
    def val(self) -> Path:
        return self.out / VAL_FILE


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def trainable_checksum(model: nn.Module) -> float:
    """Sum of all trainable parameters in float64: equal on every DDP rank if the replicas stayed in sync."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))


def _num_layers(model: nn.Module) -> int:
    return int(_unwrap(model).cfg.backbone.depth)


class Trainer:
    """Owns model (+ DDP wrapper), optimizer, scheduler, scaler and objective; ``train_step`` does one iteration."""

    def __init__(self, model: nn.Module, tcfg: TrainConfig, env: DistEnv | None = None) -> None:
        self.env = env or DistEnv()
        self.tcfg = tcfg
        self.stage = tcfg.stage
        model = model.to(self.env.device)
        configure_trainable(model, self.stage)
        if self.env.distributed and self.env.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.objective = StageObjective(self.stage, tcfg, model.cfg.num_classes)
        self.optimizer = build_optimizer(model, tcfg.lr, tcfg.weight_decay, tcfg.layer_decay, _num_layers(model))
        self.scheduler = build_scheduler(self.optimizer, tcfg.iterations, tcfg.warmup_iters, tcfg.warmup_ratio,
                                         tcfg.poly_power)
        cuda = self.env.device.type == "cuda"
        self.amp_dtype = None
        if cuda and tcfg.amp:
            self.amp_dtype = torch.bfloat16 if tcfg.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.env.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.env.local_rank] if cuda else None,
                find_unused_parameters=tcfg.find_unused_parameters,
            )
        else:
            self.ddp = model
        self.step = 0

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss values (this rank), total and lr."""
        set_train_mode(self.model, self.stage)
        gen = step_generator(self.tcfg.seed, self.step, self.env.rank, self.env.device)
        with torch.autocast(device_type=self.env.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.objective.losses(self.ddp, batch, self.env.device, generator=gen)
        total = self.objective.total(losses)
        finite = torch.isfinite(total.detach()).to(torch.float32)
        if self.env.distributed:  # every rank must stop together, or the others hang in the gradient all-reduce
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            raise FloatingPointError(f"non-finite loss at step {self.step} (on this or another rank); this rank: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.tcfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.tcfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = max(g["lr"] for g in self.optimizer.param_groups)
        self.scheduler.step()
        self.step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["total"] = float(total.detach())
        values["lr"] = lr
        return values

    # -- checkpoint state ----------------------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything a resume needs. Collective: every rank must call it (RNG states are gathered)."""
        rng = all_gather_objects(capture_rng_state(), self.env)
        model = _unwrap(self.model)
        return {
            "config": model.cfg.to_dict(),
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rng,
            "world_size": self.env.world_size,
            "train_config": self.tcfg.to_dict(),
            "stage": self.stage,
        }

    def load_payload(self, data: dict[str, Any]) -> None:
        model = _unwrap(self.model)
        model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        if data.get("scaler"):
            self.scaler.load_state_dict(data["scaler"])
        self.step = int(data["step"])
        rng = data.get("rng") or []
        if len(rng) == self.env.world_size:
            restore_rng_state(rng[self.env.rank])
        else:
            log.warning("checkpoint has RNG states of %d rank(s), this job has %d: global RNG not restored",
                        len(rng), self.env.world_size)


# ----------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class RunSpec:
    """What ``dsa train`` asks for (paths and switches; hyper-parameters are in TrainConfig)."""

    preset: str
    data: Path
    out: Path
    coco: Path | None = None
    init: Path | None = None
    backbone_weights: Path | None = None
    resume: bool = False
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps, as if killed there
    deadline: float | None = None  # time.monotonic() after which to stop the same way (wall-time budgets)
    val_every: int = 0
    val_max_images: int | None = None
    anomaly_samples: Iterable[tuple[Any, Any]] | None = None
    anomaly_from_coco: bool = False
    progress: bool = True
    model_overrides: dict[str, Any] = field(default_factory=dict)


def build_stage_model(spec: RunSpec, tcfg: TrainConfig) -> nn.Module:
    """pretrain: PatchSegViT of the preset; stage1: DSAModel with the frozen backbone file (or --init); stage2:
    the stage-1 checkpoint given by --init."""
    from dsa_core.model.dsa import build_model

    if tcfg.stage == "pretrain":
        from dsa_core.train.pretrain import PatchSegViT

        if spec.init or spec.backbone_weights:
            raise ValueError("pretrain starts from scratch: --init / --backbone-weights are not used")
        return PatchSegViT(get_config(spec.preset).replace(**spec.model_overrides) if spec.model_overrides
                           else get_config(spec.preset), outlier_class=tcfg.pretrain_outlier_prob > 0.0)
    if spec.init is not None:
        from dsa_core.checkpoint import model_from_checkpoint

        if spec.backbone_weights is not None:
            raise ValueError("--init already contains the backbone; do not pass --backbone-weights with it")
        model, data = model_from_checkpoint(spec.init)
        if data.get("stage") == "pretrain":
            raise ValueError(f"{spec.init} is a pretrain checkpoint; pass its backbone.safetensors as --backbone-weights")
        if model.cfg.name != spec.preset:
            log.warning("--init checkpoint is preset %r, --preset says %r: using the checkpoint's config",
                        model.cfg.name, spec.preset)
        return model
    if tcfg.stage == "stage2":
        raise ValueError("stage2 (outlier exposure) fine-tunes a stage-1 model: pass --init RUN_DIR/last.pt")
    if spec.backbone_weights is None:
        raise ValueError("stage1 needs the frozen backbone: pass --backbone-weights FILE "
                         "(e.g. RUN_DIR/backbone.safetensors of a `dsa train --stage pretrain` run)")
    cfg = get_config(spec.preset)
    if spec.model_overrides:
        cfg = cfg.replace(**spec.model_overrides)
    return build_model(cfg, backbone_weights=str(spec.backbone_weights))


def build_train_dataset(spec: RunSpec, tcfg: TrainConfig, size_divisor: int):
    from dsa_core.data.coco_mix import AnomalyMix, CityscapesTrainSet, CocoOutlierPool
    from dsa_core.data.transforms import TrainAugment

    if tcfg.crop[0] % size_divisor or tcfg.crop[1] % size_divisor:
        raise ValueError(f"crop {tcfg.crop} must be a multiple of the model's size divisor {size_divisor}")
    mix = None
    mix_prob = {"stage2": tcfg.outlier_prob, "pretrain": tcfg.pretrain_outlier_prob}.get(tcfg.stage, 0.0)
    if mix_prob > 0.0:
        if spec.coco is None:
            raise ValueError(f"{tcfg.stage} pastes outliers: pass the COCO outlier pool as --coco DIR "
                             "(instances_train2017.json + train2017/)")
        mix = AnomalyMix(CocoOutlierPool(spec.coco, min_size=tcfg.coco_min_size, seed=tcfg.seed), p=mix_prob,
                         scale_range=tcfg.outlier_scale, road_prob=tcfg.outlier_road_prob,
                         low_contrast_prob=tcfg.outlier_low_contrast_prob,
                         road_height_ratio=tcfg.outlier_road_height, stretch_prob=tcfg.outlier_stretch_prob,
                         max_objects=tcfg.outlier_max_objects)
    augment = TrainAugment(crop_size=tuple(tcfg.crop), base_size=tuple(tcfg.base_size), seed=tcfg.seed)
    return CityscapesTrainSet(spec.data, "train", augment=augment, mix=mix, seed=tcfg.seed,
                              void_ground=tcfg.void_ground_reading)


def _make_loader(dataset, tcfg: TrainConfig, env: DistEnv, start_step: int) -> torch.utils.data.DataLoader:
    from dsa_core.data.coco_mix import collate

    if tcfg.batch_size % env.world_size:
        raise ValueError(f"batch size {tcfg.batch_size} (global) is not divisible by the world size {env.world_size}")
    sampler = StepBatchSampler(len(dataset), tcfg.batch_size // env.world_size, tcfg.seed, env.rank,
                               env.world_size, start_step, tcfg.iterations)
    return torch.utils.data.DataLoader(
        EpochIndexed(dataset), batch_sampler=sampler, collate_fn=collate, num_workers=tcfg.num_workers,
        pin_memory=env.device.type == "cuda", persistent_workers=False,
    )


def _validate(trainer: Trainer, spec: RunSpec, val_samples, anomaly_samples) -> dict[str, float]:
    from dsa_core.train.validation import evaluate_anomaly, evaluate_semantic

    model = _unwrap(trainer.model)
    res = evaluate_semantic(model, val_samples, model.cfg.num_classes, trainer.env.device)
    row: dict[str, float] = {"step": trainer.step, "miou": res["miou"], "pixel_accuracy": res["pixel_accuracy"]}
    if anomaly_samples is not None and trainer.stage != "pretrain":
        am = evaluate_anomaly(model, anomaly_samples, trainer.env.device)
        row.update({"auprc": am["auprc"], "fpr95": am["fpr95"], "auroc": am["auroc"]})
    return row


def _check_resume_config(saved: dict[str, Any], tcfg: TrainConfig) -> TrainConfig:
    saved_cfg = TrainConfig(**saved)
    diff = {k: (v, getattr(tcfg, k)) for k, v in saved_cfg.to_dict().items() if v != getattr(tcfg, k)}
    if diff:
        raise ValueError(f"--resume with a different training config than the checkpoint: "
                         f"{ {k: f'checkpoint {a!r} vs now {b!r}' for k, (a, b) in diff.items()} }")
    return saved_cfg


def run_training(spec: RunSpec, tcfg: TrainConfig, env: DistEnv | None = None,
                 on_step: Callable[[Trainer, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train one stage as ``spec`` and ``tcfg`` say; returns a summary (final step, last losses, last val row)."""
    env = env or DistEnv()
    paths = TrainPaths(Path(spec.out))
    resume_data = None
    if spec.resume:
        if not paths.last.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {paths.last}")
        resume_data = load_checkpoint(paths.last)
        if resume_data.get("stage") != tcfg.stage:
            raise ValueError(f"--resume: {paths.last} is stage {resume_data.get('stage')!r}, asked for {tcfg.stage!r}")
        tcfg = _check_resume_config(resume_data["train_config"], tcfg)
    seed_everything(tcfg.seed + env.rank)
    model = build_stage_model(spec, tcfg)
    if resume_data is not None and model.cfg.to_dict() != DSAConfig.from_dict(resume_data["config"]).to_dict():
        raise ValueError("--resume: the model config built now differs from the checkpoint's")
    trainer = Trainer(model, tcfg, env)
    if resume_data is not None:
        trainer.load_payload(resume_data)
        log.info("resumed %s at step %d from %s", tcfg.stage, trainer.step, paths.last)
    if env.is_main:
        paths.out.mkdir(parents=True, exist_ok=True)
        for name in (LAST_CHECKPOINT, FINAL_CHECKPOINT):  # torn temp files of a run killed while saving
            for stale in paths.out.glob(f".{name}.*.tmp"):
                log.warning("removing %s left by an interrupted checkpoint write", stale)
                stale.unlink()
    barrier(env)

    dataset = build_train_dataset(spec, tcfg, model.cfg.size_divisor)
    val_samples = anomaly_samples = None
    if env.is_main and (Path(spec.data) / "leftImg8bit" / "val").is_dir():
        from dsa_core.train.validation import cityscapes_val_samples, mixed_anomaly_samples

        val_samples = cityscapes_val_samples(str(spec.data), "val", spec.val_max_images)
        anomaly_samples = list(spec.anomaly_samples) if spec.anomaly_samples is not None else None  # reused
        if anomaly_samples is None and spec.anomaly_from_coco and spec.coco is not None:
            anomaly_samples = mixed_anomaly_samples(val_samples, str(spec.coco), min_size=tcfg.coco_min_size)
    metrics = CsvLog(paths.metrics, resume_step=trainer.step if resume_data is not None else None) if env.is_main else None
    val_log = CsvLog(paths.val, resume_step=trainer.step if resume_data is not None else None) if env.is_main else None

    stop_at = tcfg.iterations if spec.max_steps is None else min(tcfg.iterations, spec.max_steps)
    loader = _make_loader(dataset, tcfg, env, trainer.step)
    bar = None
    if env.is_main and spec.progress:
        from tqdm import tqdm

        bar = tqdm(total=stop_at, initial=trainer.step, desc=f"dsa train {tcfg.stage}", dynamic_ncols=True)
    last_values: dict[str, float] = {}
    last_val: dict[str, float] | None = None
    t0 = time.perf_counter()
    first_step = trainer.step
    if env.is_main:  # the step rate of the progress lines depends on both
        log.info("%s: steps %d to %d on %s with %d torch thread(s)", tcfg.stage, first_step, stop_at, env.device,
                 torch.get_num_threads())

    def save(final: bool) -> None:
        payload = trainer.checkpoint_payload()  # collective
        if env.is_main:
            save_checkpoint(payload, paths.last)
            if final and tcfg.stage == "pretrain":
                from dsa_core.train.pretrain import save_backbone

                save_backbone(_unwrap(trainer.model), paths.backbone)
                log.info("wrote pre-trained backbone to %s", paths.backbone)
            elif final:
                save_checkpoint({k: payload[k] for k in ("config", "model", "train_config", "stage", "step")}, paths.final)
        barrier(env)

    if trainer.step < stop_at:
        for batch in loader:
            values = trainer.train_step(batch)
            logged = reduce_mean(values, env)
            last_values = logged
            if on_step is not None:
                on_step(trainer, values)
            if env.is_main and (trainer.step % tcfg.log_interval == 0 or trainer.step == stop_at):
                metrics.write({"step": trainer.step, **{k: f"{v:.6g}" for k, v in logged.items()},
                               "time_s": f"{time.perf_counter() - t0:.2f}"})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{logged['total']:.3f}", lr=f"{logged['lr']:.2e}")
            done = trainer.step >= stop_at or (spec.deadline is not None and time.monotonic() >= spec.deadline)
            if spec.val_every and trainer.step % spec.val_every == 0 and not done:
                last_val = _run_validation(trainer, spec, val_samples, anomaly_samples, val_log, env)
            if done:
                break
            if tcfg.ckpt_interval and trainer.step % tcfg.ckpt_interval == 0:
                save(final=False)
                if bar is None and env.is_main:
                    log.info("%s", progress_line(tcfg.stage, trainer.step, stop_at, trainer.step - first_step,
                                                 time.perf_counter() - t0, logged["total"]))
    finished = trainer.step >= tcfg.iterations
    log.info("rank %d/%d stopped at step %d; trainable-parameter checksum %.12e", env.rank, env.world_size,
             trainer.step, trainable_checksum(trainer.model))
    save(final=finished)
    if finished or spec.val_every:
        last_val = _run_validation(trainer, spec, val_samples, anomaly_samples, val_log, env)
    if bar is not None:
        bar.close()
    return {"step": trainer.step, "finished": finished, "losses": last_values, "val": last_val,
            "seconds": time.perf_counter() - t0}


def progress_line(stage: str, step: int, stop_at: int, steps_run: int, seconds: float, loss: float) -> str:
    """One plain log line per checkpoint: what a run in the background (``--no-progress``, output to a file) shows
    instead of a progress bar. The rate counts validation time too, so the time left is what the wall clock will
    show."""
    if steps_run <= 0:
        return f"{stage} step {step}/{stop_at} ({100.0 * step / stop_at:.0f} %), time left unknown; loss {loss:.4g}"
    rate = seconds / steps_run
    left = max(0, stop_at - step) * rate
    if left >= 3600:
        left_text = f"{int(left // 3600)} h {int(left % 3600 // 60)} min"
    else:
        left_text = f"{max(1, round(left / 60))} min" if left >= 30 else "< 1 min"
    return (f"{stage} step {step}/{stop_at} ({100.0 * step / stop_at:.0f} %), {rate:.2f} s/step, "
            f"about {left_text} left; loss {loss:.4g}")


def _run_validation(trainer: Trainer, spec: RunSpec, val_samples, anomaly_samples, val_log: CsvLog | None,
                    env: DistEnv) -> dict[str, float] | None:
    """Rank 0 validates on the unwrapped model; the other ranks wait at the barrier."""
    row = None
    if env.is_main and val_samples:
        row = _validate(trainer, spec, val_samples, anomaly_samples)
        val_log.write({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        log.info("validation at step %d: %s", trainer.step,
                 ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "step"))
    barrier(env)
    return row
