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


def run(args: argparse.Namespace) -> int:
    from dsa_core.config import load_config, parse_overrides
    from dsa_core.model.dsa import build_model
    from dsa_core.model.params import format_parameter_table, parameter_table

    cfg = load_config(args.model).replace(**parse_overrides(args.set))
    with torch.device("meta"):
        model = build_model(cfg)
    counts = parameter_table(model)
    if args.json:
        print(json.dumps({"name": cfg.name, **counts}, indent=2))
    else:
        print(f"{cfg.name}: parameter counts")
        print(format_parameter_table(cfg.name, counts))
    return 0
