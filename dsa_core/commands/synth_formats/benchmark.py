"""The five anomaly-benchmark formats of ``dsa synth`` share one argument set (dsa_core.data.synth.anomaly_synth.SPECS)."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def benchmark_format(key: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """``(add_arguments, run)`` of the ``dsa synth <key>`` format module."""
    from dsa_core.data.synth.anomaly_synth import FS_LAF_KINDS, RA21_TEST_FIDS, SPECS, write_benchmark

    spec = SPECS[key]

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=spec.count, help="evaluation frames (the official count)")
        parser.add_argument("--height", type=int, default=spec.height, help="image height")
        parser.add_argument("--width", type=int, default=spec.width, help="image width")
        if key == "smiyc_ra21":
            parser.add_argument("--test-images", type=int, default=len(RA21_TEST_FIDS),
                                help="unlabelled test-fid images (100: AnomalyTrack-all then has 110)")
        if key == "fs_laf":
            parser.add_argument("--kind", choices=FS_LAF_KINDS,
                                help="every obstacle of one held-out kind (a per-kind evaluation set)")

    def run(args: argparse.Namespace) -> int:
        extra = {"test_images": args.test_images} if key == "smiyc_ra21" else {}
        if key == "fs_laf" and args.kind:
            extra["kind"] = args.kind
        write_benchmark(key, args.out, args.count, args.height, args.width, seed=args.seed,
                        progress=not args.no_progress, **extra)
        return 0

    return add_arguments, run
