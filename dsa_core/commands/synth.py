"""``dsa synth <format>``: write small seeded datasets in the real on-disk formats.

Formats are registered in ``FORMATS`` (name -> module + help). A format module defines
``add_arguments(parser)`` (everything but ``--out`` and ``--seed``, which every format gets, all options with
defaults) and ``generate(args) -> None``. ``dsa synth all --out DIR`` runs every registered format whose module is
importable, each into ``DIR/<format>`` with its defaults. To add a format (e.g. fs_laf, fs_static, road_anomaly,
smiyc_ra21, smiyc_ro21, bag), add one line to ``FORMATS``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

FORMATS: dict[str, tuple[str, str]] = {
    "cityscapes": ("dsa_core.commands.synth_formats.cityscapes", "Cityscapes gtFine layout (train/val)"),
    "coco": ("dsa_core.commands.synth_formats.coco", "COCO instances_train2017.json + train2017 images"),
    "fs_laf": ("dsa_core.commands.synth_formats.fs_laf", "Fishyscapes Lost & Found val (labels + LAF images)"),
    "fs_static": ("dsa_core.commands.synth_formats.fs_static", "Fishyscapes Static val (overlays + Cityscapes val)"),
    "road_anomaly": ("dsa_core.commands.synth_formats.road_anomaly", "Road Anomaly (frame_list.json + frames/)"),
    "smiyc_ra21": ("dsa_core.commands.synth_formats.smiyc_ra21", "SMIYC RoadAnomaly21 (dataset_AnomalyTrack)"),
    "smiyc_ro21": ("dsa_core.commands.synth_formats.smiyc_ro21", "SMIYC RoadObstacle21 (dataset_ObstacleTrack)"),
    "bag": ("dsa_core.commands.synth_formats.bag", "rosbag2 synthetic drive (images, CameraInfo, GT topics)"),
}


def _load(name: str) -> ModuleType | None:
    module_name = FORMATS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def _format_parser(name: str, module: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"dsa synth {name}", description=FORMATS[name][1])
    parser.add_argument("--out", type=Path, required=True, help="output root directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (each file depends only on it)")
    parser.add_argument("--no-progress", action="store_true", help="disable progress bars")
    module.add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=sorted(FORMATS) + ["all"], help="dataset format to write")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="format options (see dsa synth FORMAT --help)")


def run(args: argparse.Namespace) -> int:
    if args.format != "all":
        module = _load(args.format)
        if module is None:
            raise SystemExit(f"dsa synth {args.format}: not available in this build ({FORMATS[args.format][0]} missing)")
        module.generate(_format_parser(args.format, module).parse_args(args.rest))
        return 0
    top = argparse.ArgumentParser(prog="dsa synth all", description="every available format, each into OUT/<format>")
    top.add_argument("--out", type=Path, required=True)
    top.add_argument("--seed", type=int, default=0)
    top.add_argument("--no-progress", action="store_true")
    common = top.parse_args(args.rest)
    for name in FORMATS:
        module = _load(name)
        if module is None:
            log.warning("dsa synth all: skipping %s (module %s not present)", name, FORMATS[name][0])
            continue
        argv = ["--out", str(common.out / name), "--seed", str(common.seed)]
        if common.no_progress:
            argv.append("--no-progress")
        log.info("dsa synth %s -> %s", name, common.out / name)
        module.generate(_format_parser(name, module).parse_args(argv))
    return 0
