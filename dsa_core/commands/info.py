"""`dsa info MODEL`: the parameter table (total, frozen backbone, adapter, decoder, trainable) vs the paper."""
from __future__ import annotations

import argparse
import json

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="preset name (dsa_nano, dsa_tiny, dsa_large), config .json/.yaml, or checkpoint .pt")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set adapter.streams=1 (value parsed as JSON when possible)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def parse_overrides(items: list[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def resolve_config(model: str):
    from dsa_core.config import PRESETS, get_config

    if model in PRESETS:
        return get_config(model)
    if model.endswith((".json", ".yaml", ".yml")):
        import yaml

        with open(model, encoding="utf-8") as f:
            return get_config(yaml.safe_load(f))
    from dsa_core.checkpoint import load_checkpoint

    return get_config(load_checkpoint(model)["config"])


def run(args: argparse.Namespace) -> int:
    from dsa_core.model.dsa import build_model
    from dsa_core.model.params import format_parameter_table, parameter_table

    cfg = resolve_config(args.model).replace(**parse_overrides(args.set))
    with torch.device("meta"):
        model = build_model(cfg)
    counts = parameter_table(model)
    if args.json:
        print(json.dumps({"name": cfg.name, **counts}, indent=2))
    else:
        print(f"{cfg.name}: parameter counts")
        print(format_parameter_table(cfg.name, counts))
    return 0
