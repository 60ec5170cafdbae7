"""``dsa bench <benchmark>``: benchmarks whose results are written to files (docs/design.md §9), not timed asserts.

Each benchmark is a module of ``dsa_core.bench`` registered in ``BENCHMARKS`` (the registration shape of
``dsa_core.commands``: ``add_arguments(parser)`` and ``run(args)``).
"""
from __future__ import annotations

import argparse

from dsa_core.commands import Registry, add_choice, run_entry

BENCHMARKS: Registry = {
    "metrics": ("dsa_core.bench.metrics_bench", "exact anomaly metrics (ours) vs sklearn: pixels, seconds, memory"),
    "model": ("dsa_core.bench.model_bench",
              "every available inference backend on one exported model: latency, throughput, FLOPs, % of matmul peak"),
    "node": ("dsa_core.bench.node_bench",
             "the running ROS node, 2 cameras at 30 Hz: end-to-end latency, drops, overhead vs model, RSS"),
    "pipeline": ("dsa_core.bench.pipeline_bench",
                 "the node's own per-frame work at 1280x720 (resizes, mask, obstacles, colours, overlay) without "
                 "the model: wall and process CPU time, and the camera->model resize's speed/quality choice"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_choice(parser, BENCHMARKS, "benchmark")


def run(args: argparse.Namespace) -> int:
    return run_entry(BENCHMARKS, args.benchmark, f"dsa bench {args.benchmark}", args.options)
