"""`dsa soup --checkpoint A B ... --out OUT.pt`: average the trained weights of runs from one initialisation."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", nargs="+", required=True, type=Path, metavar="PT",
                        help="final.pt of two or more runs of one stage from the same --init (e.g. stage-2 seeds)")
    parser.add_argument("--out", required=True, type=Path, help="the averaged checkpoint to write (e.g. DIR/final.pt)")


def run(args: argparse.Namespace) -> int:
    from dsa_core.checkpoint import save_checkpoint
    from dsa_core.train.soup import average_checkpoints

    if args.out.exists():
        raise FileExistsError(f"--out {args.out} exists; choose a new path")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(average_checkpoints(args.checkpoint), args.out)
    print(f"wrote {args.out}: the mean of {len(args.checkpoint)} checkpoints")
    return 0
