"""``dsa demo``: the main job on the embedded default, end to end, in a few minutes on a 2-core CPU.

    dsa demo [--out demo_output] [--model models/dsa_nano] [--quick]

1. writes a synthetic drive bag (``dsa synth bag``: camera moving forward, obstacles from the held-out anomaly
   families approaching on the road from far to near, clear road once they are passed, ground truth topics);
2. live: starts ``dsa_perception_node`` with the ONNX Runtime CPU backend and the shipped model, replays the bag into
   it at the recorded rate, records its outputs (overlay, scores, semantics, obstacle alerts) and scores them;
3. offline: the same pipeline on every frame (what the node would output without dropping frames);
4. leaves ``demo_output/`` (overlay PNGs + overlay.mp4 with the node's boxes and the true obstacle box, both reports
   with PR curves, latency histograms and obstacle alerts, summary.json / summary.md) and prints a short summary:
   pixel metrics (AuPRC, FPR95), alert precision/recall per frame and each obstacle's time to alert.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = Path("models/dsa_nano")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output directory (a previous demo output there is replaced)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="exported model directory (dsa export)")
    parser.add_argument("--quick", action="store_true", help="a few small frames (smoke test, ~1 minute)")
    parser.add_argument("--frames", type=int, default=None, help="override the number of frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic drive")


def run(args: argparse.Namespace) -> int:
    from dsa_core.bags.demo import run_demo

    print(run_demo(args.out, args.model, quick=args.quick, frames=args.frames, seed=args.seed))
    return 0
