"""The ``dsa`` command: one entry point, one module per subcommand (``dsa_core/commands/<name>.py``).

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int`` (the registration shape of
``dsa_core.commands``); modules are imported lazily so ``dsa --help`` stays fast and a subcommand's heavy imports are
paid only when it runs. A mistake in the command line prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys

from dsa_core.commands import CommandParser, Registry, UserError, run_entry

COMMANDS: Registry = {
    "info": ("dsa_core.commands.info", "print a model's parameter table"),
    "synth": ("dsa_core.commands.synth", "write synthetic datasets / bags in the real on-disk formats"),
    "train": ("dsa_core.commands.train", "train DSA (stage 1, stage 2 outlier exposure, backbone pre-training)"),
    "eval": ("dsa_core.commands.eval", "evaluate a checkpoint on Cityscapes / anomaly benchmarks"),
    "soup": ("dsa_core.commands.soup", "average the weights of runs fine-tuned from one checkpoint (model soup)"),
    "export": ("dsa_core.commands.export", "export ONNX graphs (+ TensorRT engines) and a manifest"),
    "calibrate": ("dsa_core.commands.calibrate", "pick a model dir's anomaly threshold and minimum obstacle area"),
    "bench": ("dsa_core.commands.bench", "benchmarks: metrics, model backends, node"),
    "bag-eval": ("dsa_core.commands.bag_eval", "replay a rosbag through the pipeline and score it"),
    "demo": ("dsa_core.commands.demo", "run the end-to-end demo on a synthetic drive"),
    "study": ("dsa_core.commands.study", "train + evaluate ablation variants from a plan"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="dsa", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only the global part first, then hand the rest to the subcommand's own parser.
    try:
        known, rest = parser.parse_known_args(argv)
        logging.basicConfig(level=logging.DEBUG if known.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        if known.command is None:
            parser.print_help()
            return 2
        return run_entry(COMMANDS, known.command, f"dsa {known.command}", rest)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
