"""The study plan: shared budget, data, seeds, variants and the tables they appear in (read from YAML).

Why a plan file: the comparison is only fair if every variant gets the same budget, data, backbone and seeds, and
the same plan must scale from ``dsa_nano`` on a CPU to ``dsa_tiny`` on a GPU by editing only the plan. Everything
the runner does is a function of the plan and the seed list.

Layout (all keys except ``variants`` optional)::

    preset: dsa_nano
    seeds: [0, 1, 2]
    threads: 1                       # torch intra-op threads (CPU)
    device: auto
    data:                            # either existing roots ...
      cityscapes: /data/cityscapes
      coco: /data/coco               # only needed by variants with stage2 (outlier exposure)
      benchmarks: {fs_laf: /data/fs_laf, road_anomaly: /data/RoadAnomaly, ...}
      synthesize:                    # ... or written into OUT/data with `dsa synth` (sizes per format)
        seed: 0
        cityscapes: {train: 48, val: 8, height: 256, width: 512}
        coco: {images: 24, height: 256, width: 320}
        benchmarks: {fs_laf: {count: 20, height: 128, width: 256}, ...}
    backbone:
      weights: null                  # an existing frozen-backbone file, or
      pretrain: {iterations: 600}    # TrainConfig overrides of ONE pretraining run shared by every variant
    stage1: {iterations: 300}        # TrainConfig overrides for every variant's stage 1
    stage2: {iterations: 60}         # ... and stage 2 (outlier exposure)
    eval: {max_images: null, eval_size: null}   # eval_size [H, W]; null = each frame at its own resolution
    variants:
      - name: dsa                    # directory name
        label: DSA (full)            # table row
        model: {}                    # DSAConfig dotted overrides, e.g. {"adapter.streams": 1}
        train: {}                    # stage-1 TrainConfig overrides, e.g. {lambda_ubhl: 0.0}
        token_loss: ubhl             # ubhl | bce | contrastive (Table 8)
      - name: dsa_oe
        label: DSA + outlier exposure
        base: dsa                    # reuse that variant's stage-1 run (same seed) ...
        stage2: {}                   # ... and run stage 2 on it with these extra overrides
    tables:
      - title: Table 5a - component ablation
        variants: [no_apm, no_dual_stream, no_ubhl, dsa]
    claims:                          # paper orderings, tested per seed (paired: same seed, data order, backbone)
      - {better: dsa, worse: no_apm, metric: smiyc_ro21.auprc, higher_is_better: true, paper: "59.6 vs 12.0 (T5a)"}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dsa_core.losses.euclidean_token import TOKEN_LOSSES

BENCHMARK_KEYS: tuple[str, ...] = ("road_anomaly", "smiyc_ra21", "smiyc_ro21", "fs_laf", "fs_static")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TOP_KEYS = {"preset", "seeds", "threads", "device", "data", "backbone", "stage1", "stage2", "eval", "variants",
             "tables", "claims"}
_VARIANT_KEYS = {"name", "label", "model", "train", "token_loss", "base", "stage2"}


class PlanError(ValueError):
    """The plan file is malformed: says which key and what was expected."""


@dataclass
class Variant:
    name: str
    label: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    token_loss: str = "ubhl"
    base: str | None = None
    stage2: dict[str, Any] | None = None

    @property
    def trains_stage1(self) -> bool:
        """A variant with ``base`` reuses the base variant's stage-1 run instead of training its own."""
        return self.base is None


@dataclass
class Table:
    title: str
    variants: list[str]


@dataclass
class Claim:
    """A paper ordering to test: ``better`` beats ``worse`` on ``metric`` (higher or lower is better)."""

    better: str
    worse: str
    metric: str
    higher_is_better: bool
    paper: str = ""


@dataclass
class DataSpec:
    cityscapes: Path | None = None
    coco: Path | None = None
    benchmarks: dict[str, Path] = field(default_factory=dict)
    synthesize: dict[str, Any] | None = None


@dataclass
class StudyPlan:
    preset: str
    seeds: list[int]
    data: DataSpec
    variants: list[Variant]
    tables: list[Table]
    threads: int | None = None
    device: str = "auto"
    backbone_weights: Path | None = None
    pretrain: dict[str, Any] = field(default_factory=dict)
    stage1: dict[str, Any] = field(default_factory=dict)
    stage2: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    source: Path | None = None

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r} in the plan; known: {[v.name for v in self.variants]}")

    def select(self, only: list[str] | None) -> list[Variant]:
        """The variants to run, in dependency order (a ``base`` variant before the variants reusing it)."""
        wanted = [v.name for v in self.variants] if not only else list(only)
        for name in wanted:
            self.variant(name)
        closure: list[str] = []
        for name in wanted:
            chain = []
            v = self.variant(name)
            while v is not None:
                chain.append(v.name)
                v = self.variant(v.base) if v.base else None
            for n in reversed(chain):
                if n not in closure:
                    closure.append(n)
        return [self.variant(n) for n in closure]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PlanError(f"{where}: expected a mapping, found {type(value).__name__} {value!r}")
    return dict(value)


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _parse_variant(raw: Any, index: int) -> Variant:
    where = f"variants[{index}]"
    raw = _mapping(raw, where)
    _check_keys(raw, _VARIANT_KEYS, where)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PlanError(f"{where}.name: expected a directory-safe name ([A-Za-z0-9_.-]+), found {name!r}")
    token_loss = raw.get("token_loss", "ubhl")
    if token_loss not in TOKEN_LOSSES:
        raise PlanError(f"{where} ({name}).token_loss: expected one of {TOKEN_LOSSES}, found {token_loss!r}")
    stage2 = raw.get("stage2")
    return Variant(
        name=name, label=str(raw.get("label", name)), model=_mapping(raw.get("model"), f"{where}.model"),
        train=_mapping(raw.get("train"), f"{where}.train"), token_loss=token_loss, base=raw.get("base"),
        stage2=None if stage2 is None else _mapping(stage2, f"{where}.stage2"),
    )


def _validate(plan: StudyPlan) -> None:
    from dsa_core.config import PRESETS, get_config
    from dsa_core.train.config import default_train_config

    if plan.preset not in PRESETS:
        raise PlanError(f"preset: expected one of {sorted(PRESETS)}, found {plan.preset!r}")
    if not plan.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in plan.seeds):
        raise PlanError(f"seeds: expected a non-empty list of integers, found {plan.seeds!r}")
    if len(set(plan.seeds)) != len(plan.seeds):
        raise PlanError(f"seeds: duplicates in {plan.seeds}")
    names = [v.name for v in plan.variants]
    if not names:
        raise PlanError("variants: the plan lists no variant")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PlanError(f"variants: duplicate names {dup}")
    base_cfg = get_config(plan.preset)
    for stage, overrides in (("pretrain", plan.pretrain), ("stage1", plan.stage1), ("stage2", plan.stage2)):
        try:
            default_train_config(plan.preset, stage).replace(**train_overrides(overrides))
        except (ValueError, TypeError) as exc:
            raise PlanError(f"{stage}: {exc}") from exc
    for v in plan.variants:
        try:
            base_cfg.replace(**v.model)
        except ValueError as exc:
            raise PlanError(f"variant {v.name}.model: {exc}") from exc
        try:
            tcfg = default_train_config(plan.preset, "stage1").replace(**train_overrides({**plan.stage1, **v.train}))
        except (ValueError, TypeError) as exc:
            raise PlanError(f"variant {v.name}.train: {exc}") from exc
        if v.token_loss != "ubhl" and tcfg.lambda_ubhl <= 0:
            raise PlanError(f"variant {v.name}: token_loss {v.token_loss!r} replaces L_ubhl and needs lambda_ubhl > 0, "
                            f"found {tcfg.lambda_ubhl}")
        if v.base is not None:
            if v.base not in names:
                raise PlanError(f"variant {v.name}.base: no variant named {v.base!r}")
            if v.stage2 is None:
                raise PlanError(f"variant {v.name}: 'base' reuses a stage-1 run, so the variant must add a 'stage2'")
            if v.model or v.train or v.token_loss != "ubhl":
                raise PlanError(f"variant {v.name}: a variant with 'base' takes model/train/token_loss from its base; "
                                "remove them")
            if plan.variant(v.base).base is not None:
                raise PlanError(f"variant {v.name}.base: {v.base!r} itself has a base; chains are not supported")
        if v.stage2 is not None:
            try:
                default_train_config(plan.preset, "stage2").replace(**train_overrides({**plan.stage2, **v.stage2}))
            except (ValueError, TypeError) as exc:
                raise PlanError(f"variant {v.name}.stage2: {exc}") from exc
    for t in plan.tables:
        missing = [n for n in t.variants if n not in names]
        if missing:
            raise PlanError(f"table {t.title!r}: variants {missing} are not in the plan")
    metric_names = {"miou", "average.auprc", "average.fpr95", "average.auroc"} | {
        f"{k}.{m}" for k in BENCHMARK_KEYS for m in ("auprc", "fpr95", "auroc")}
    for c in plan.claims:
        missing = [n for n in (c.better, c.worse) if n not in names]
        if missing:
            raise PlanError(f"claim {c.better} vs {c.worse}: variants {missing} are not in the plan")
        if c.metric not in metric_names:
            raise PlanError(f"claim {c.better} vs {c.worse}: metric {c.metric!r} is not one of {sorted(metric_names)}")
    d = plan.data
    if d.synthesize is None and d.cityscapes is None:
        raise PlanError("data: give either data.cityscapes (+ coco, benchmarks) or data.synthesize")
    for key in d.benchmarks:
        if key not in BENCHMARK_KEYS:
            raise PlanError(f"data.benchmarks: unknown benchmark {key!r}; expected a subset of {BENCHMARK_KEYS}")
    if any(v.stage2 is not None for v in plan.variants) and d.coco is None and d.synthesize is None:
        raise PlanError("data.coco: variants with stage2 (outlier exposure) need the COCO outlier pool")


def train_overrides(raw: dict[str, Any]) -> dict[str, Any]:
    """YAML lists -> tuples for the tuple-typed TrainConfig fields (crop, base_size)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}


def parse_plan(data: dict[str, Any], source: Path | None = None) -> StudyPlan:
    """Build and validate a plan from its YAML mapping."""
    data = _mapping(data, "plan")
    _check_keys(data, _TOP_KEYS, "plan")
    raw_data = _mapping(data.get("data"), "data")
    _check_keys(raw_data, {"cityscapes", "coco", "benchmarks", "synthesize"}, "data")
    base = source.parent if source is not None else Path.cwd()

    def path(value: Any) -> Path | None:
        if value is None:
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else base / p

    data_spec = DataSpec(
        cityscapes=path(raw_data.get("cityscapes")), coco=path(raw_data.get("coco")),
        benchmarks={k: path(v) for k, v in _mapping(raw_data.get("benchmarks"), "data.benchmarks").items()},
        synthesize=None if raw_data.get("synthesize") is None else _mapping(raw_data["synthesize"], "data.synthesize"),
    )
    backbone = _mapping(data.get("backbone"), "backbone")
    _check_keys(backbone, {"weights", "pretrain"}, "backbone")
    raw_variants = data.get("variants")
    if not isinstance(raw_variants, list):
        raise PlanError(f"variants: expected a list, found {type(raw_variants).__name__}")
    variants = [_parse_variant(v, i) for i, v in enumerate(raw_variants)]
    tables = []
    for i, t in enumerate(data.get("tables") or []):
        t = _mapping(t, f"tables[{i}]")
        _check_keys(t, {"title", "variants"}, f"tables[{i}]")
        if not isinstance(t.get("variants"), list):
            raise PlanError(f"tables[{i}].variants: expected a list of variant names")
        tables.append(Table(title=str(t.get("title", f"Table {i + 1}")), variants=[str(n) for n in t["variants"]]))
    if not tables:
        tables = [Table(title="All variants", variants=[v.name for v in variants])]
    claims = []
    for i, c in enumerate(data.get("claims") or []):
        c = _mapping(c, f"claims[{i}]")
        _check_keys(c, {"better", "worse", "metric", "higher_is_better", "paper"}, f"claims[{i}]")
        try:
            claims.append(Claim(better=str(c["better"]), worse=str(c["worse"]), metric=str(c["metric"]),
                                higher_is_better=bool(c.get("higher_is_better", True)), paper=str(c.get("paper", ""))))
        except KeyError as exc:
            raise PlanError(f"claims[{i}]: missing key {exc}") from exc
    threads = data.get("threads")
    plan = StudyPlan(
        preset=str(data.get("preset", "dsa_nano")), seeds=list(data.get("seeds", [0, 1, 2])), data=data_spec,
        variants=variants, tables=tables, threads=None if threads is None else int(threads),
        device=str(data.get("device", "auto")), backbone_weights=path(backbone.get("weights")),
        pretrain=_mapping(backbone.get("pretrain"), "backbone.pretrain"),
        stage1=_mapping(data.get("stage1"), "stage1"), stage2=_mapping(data.get("stage2"), "stage2"),
        eval=_mapping(data.get("eval"), "eval"), claims=claims, source=source,
    )
    _check_keys(plan.eval, {"max_images", "eval_size"}, "eval")
    _validate(plan)
    return plan


def load_plan(path: Path | str) -> StudyPlan:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study plan {path} does not exist")
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise PlanError(f"{path} is not valid YAML: {exc}") from exc
    return parse_plan(data, source=path.resolve())
