"""Model configuration: dataclasses plus the named presets ``dsa_nano``, ``dsa_tiny`` and ``dsa_large``.

Paper facts (Appendix A.1) and the decisions where the paper is silent are in ``docs/design.md`` §10 and
``docs/model_reference.md`` §5/§7; the presets below encode them.

``dsa_nano`` is ours, sized for CPU tests and the demo: a 4-block, 96-wide ViT (stride 16 through a convolutional
stem, 3 heads; one block per interaction group), the same adapter structure with 3 deformable heads (32-d each), and a 96-d Mask2Former decoder with 2
deformable encoder layers, 3 masked-attention decoder layers and 50 queries.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dsa_core.labels import CITYSCAPES_CLASSES


class ConfigError(ValueError):
    """A config that names an unknown preset or field (a user mistake, e.g. in ``--set``): refused with the name."""


IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class BackboneConfig:
    """Frozen ViT. ``arch`` is ``vit`` (timm VisionTransformer) or ``beit`` (timm Beit, rel-pos bias).

    ``finetune`` is the "Fine-Tuned" baseline of the paper's Table 1: the ViT trains in stage 1 together with the
    adapter and decoder (ViT-Adapter layer-wise lr decay). Such a model no longer has a shared frozen backbone.
    """

    arch: str = "vit"
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    pretrain_img_size: int = 224  # grid of the stored position embedding; resized to the input grid at run time
    qkv_bias: bool = True
    # Group boundaries: the output of the last block of each group is one of the 4 features the adapter reads.
    interaction_indexes: list[list[int]] = field(default_factory=lambda: [[0, 2], [3, 5], [6, 8], [9, 11]])
    finetune: bool = False
    # "patch": timm's linear patch embedding (one stride-p conv; what real checkpoints have). "conv": a stack of
    # 3x3 stride-2 convolutions down to stride p, then 1x1 to the width (Xiao et al. 2021, "Early convolutions help
    # transformers see better"): the CPU presets train their stand-in backbone from scratch, where it learns faster.
    stem: str = "patch"
    stem_width: int = 24  # channels of the first conv of the "conv" stem, doubled per stage up to embed_dim


@dataclass
class AdapterConfig:
    """Anomaly Prior Module + dual-stream refinement + ViT-Adapter-style output path.

    Ablation switches (paper Tables 5, 6 and the adapter baselines of Table 1):
      level_encoding: ``dual`` (one level encoding per stream, Eq. 4-5) or ``shared`` (one for both: "no APM").
      streams: 2 (dual-stream refinement) or 1 (ID stream only: "no dual-stream refinement").
      injector: True turns the adapter into the plain ViT-Adapter baseline (injector + extractor per group; the
        ViT then runs inside the adapter's interaction blocks, its weights still frozen). Implies streams=1.
      side: True replaces the adapter by the side-adapter baseline (``dsa_core.model.side_adapter``, SAN-style); the
        refinement switches above then do not apply.
      num_blocks: number of refinement blocks (Table 5b); must not exceed the number of interaction groups.
      fusion: how the two streams meet the decoder: ``sum`` (default), ``concat`` (concat + 1x1), ``id_only``.
    """

    conv_inplane: int = 64
    n_points: int = 4
    deform_num_heads: int = 6
    deform_ratio: float = 1.0
    cffn_ratio: float = 0.25
    with_cffn: bool = True
    drop_path_rate: float = 0.1
    init_values: float = 0.0  # injector layer scale (baseline only)
    num_blocks: int = 4
    extra_extractors: bool = True
    level_encoding: str = "dual"
    streams: int = 2
    injector: bool = False
    side: bool = False
    fusion: str = "sum"
    add_vit_feature: bool = True


@dataclass
class DecoderConfig:
    """Mask2Former pixel decoder (MSDeformAttn encoder + FPN) and masked-attention transformer decoder."""

    conv_dim: int = 256
    mask_dim: int = 256
    enc_layers: int = 6
    enc_heads: int = 8
    enc_ffn_dim: int = 1024
    enc_n_points: int = 4
    hidden_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9  # masked-attention layers (detectron2 DEC_LAYERS - 1)
    num_queries: int = 100
    pre_norm: bool = False
    dropout: float = 0.0
    norm_groups: int = 32


@dataclass
class DSAConfig:
    """A complete model: backbone + adapter + decoder + scoring."""

    name: str = "dsa_tiny"
    num_classes: int = 19
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    score: str = "msp"  # "msp" = paper Eq. 2 (Mask2Anomaly); "rba" = -sum_k tanh(L_k)
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    size_divisor: int = 32
    class_names: tuple[str, ...] = CITYSCAPES_CLASSES
    # the image scale the model was trained at: `dsa eval` resizes each image so that its short side has this many
    # pixels (detectron2's ResizeShortestEdge at test time), as the node feeds it at its export size. None = native
    # resolution (the paper presets: trained on Cityscapes at its own 1024 px, evaluated as the benchmarks are)
    test_short_side: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DSAConfig":
        """A config from ``to_dict()``'s output. A top-level field the dict lacks (a checkpoint written before the
        field existed) takes its preset's value when ``name`` is a preset, else the dataclass default."""
        data = dict(data)
        preset = PRESETS.get(data.get("name", ""))
        if preset is not None:
            known = {f.name for f in dataclasses.fields(cls)}
            data = {k: v for k, v in preset().to_dict().items() if k in known - set(data)} | data
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown DSAConfig keys: {sorted(unknown)}")
        sub = {"backbone": BackboneConfig, "adapter": AdapterConfig, "decoder": DecoderConfig}
        for key, typ in sub.items():
            if key in data and isinstance(data[key], dict):
                extra = set(data[key]) - {f.name for f in dataclasses.fields(typ)}
                if extra:
                    raise ConfigError(f"unknown {key} config keys: {sorted(extra)}")
                data[key] = typ(**data[key])
        for key in ("pixel_mean", "pixel_std", "class_names"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def replace(self, **overrides: Any) -> "DSAConfig":
        """Copy with dotted overrides, e.g. ``cfg.replace(**{"adapter.streams": 1})``."""
        new = copy.deepcopy(self)
        for key, value in overrides.items():
            target = new
            *path, leaf = key.split(".")
            for part in path:
                target = getattr(target, part)
            if not hasattr(target, leaf):
                raise ConfigError(f"unknown config field {key!r}")
            setattr(target, leaf, value)
        return new


def _dsa_tiny() -> DSAConfig:
    # ViT-Tiny/16 (DeiT-T shapes), ViT-Adapter-T extractor settings, 256-d Mask2Former with 9 decoder layers.
    return DSAConfig(name="dsa_tiny")


def _dsa_large() -> DSAConfig:
    # ViT-L/16 (paper: BEiT-L; frozen count 303.3M = plain ViT-L/16 @224 without head, docs/model_reference.md §5),
    # ViT-Adapter-L extractors (16 heads, ratio 0.5), 1024-d Mask2Former head with one decoder layer.
    return DSAConfig(
        name="dsa_large",
        backbone=BackboneConfig(
            arch="vit", embed_dim=1024, depth=24, num_heads=16,
            interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]],
        ),
        adapter=AdapterConfig(deform_num_heads=16, deform_ratio=0.5, drop_path_rate=0.3, init_values=1e-6),
        decoder=DecoderConfig(
            conv_dim=1024, mask_dim=1024, enc_heads=32, enc_ffn_dim=4096, hidden_dim=1024, nheads=32,
            dim_feedforward=4096, dec_layers=1,
        ),
    )


def _dsa_nano() -> DSAConfig:
    return DSAConfig(
        name="dsa_nano",
        backbone=BackboneConfig(
            arch="vit", embed_dim=96, depth=4, num_heads=3, interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
            # +8.7 mIoU points after 600 pretrain steps vs the linear patch embedding (results/train_nano.md)
            stem="conv",
        ),
        adapter=AdapterConfig(conv_inplane=32, deform_num_heads=3, drop_path_rate=0.0),
        decoder=DecoderConfig(
            conv_dim=96, mask_dim=96, enc_layers=2, enc_heads=3, enc_ffn_dim=384, hidden_dim=96, nheads=4,
            dim_feedforward=384, dec_layers=3, num_queries=50, norm_groups=16,
        ),
        # trained on 256x512 frames (random resize 0.5-2.0, train/config.py): native 1024x2048 frames score FS L&F
        # AuPRC 47.5 / FPR95 96.8 against 63.5 / 3.5 at this scale (results/train_nano.md, "Evaluation scale")
        test_short_side=256,
    )


PRESETS = {"dsa_nano": _dsa_nano, "dsa_tiny": _dsa_tiny, "dsa_large": _dsa_large}


def get_config(name_or_config: "str | DSAConfig | dict[str, Any]") -> DSAConfig:
    """Resolve a preset name, a config dict or a DSAConfig (copied) into a DSAConfig."""
    if isinstance(name_or_config, DSAConfig):
        return copy.deepcopy(name_or_config)
    if isinstance(name_or_config, dict):
        return DSAConfig.from_dict(name_or_config)
    if isinstance(name_or_config, str):
        if name_or_config not in PRESETS:
            raise ConfigError(f"unknown preset {name_or_config!r}; known: {sorted(PRESETS)}")
        return PRESETS[name_or_config]()
    raise TypeError(f"expected a preset name, dict or DSAConfig, got {type(name_or_config).__name__}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["adapter.streams=1", ...]`` (the CLI's ``--set``) -> ``{"adapter.streams": 1}``; values parsed as JSON when
    they are JSON, else kept as strings."""
    import json

    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def load_config(source: str) -> DSAConfig:
    """A preset name, a config .json/.yaml file, or a checkpoint (its stored config)."""
    if source in PRESETS:
        return get_config(source)
    if source.endswith((".json", ".yaml", ".yml")):
        import yaml

        with open(source, encoding="utf-8") as f:
            return get_config(yaml.safe_load(f))
    from dsa_core.checkpoint import load_checkpoint

    return get_config(load_checkpoint(source)["config"])
