"""``dsa synth bag``: a synthetic drive as a rosbag2 (camera images + CameraInfo + ground-truth topics).

    dsa synth bag --out drive_bag --frames 60 --fps 10 --height 256 --width 512 --storage mcap [--compressed]

Topics (for ``--camera-topic /camera/front/image_raw``): the image, ``.../image_raw/compressed`` with
``--compressed``, ``/camera/front/camera_info``, and ground truth ``/camera/front/gt/semantic`` (mono8 train ids,
255 void), ``/camera/front/gt/anomaly`` (mono8 0 / 1 anomaly / 255 void) and ``/camera/front/gt/obstacles``
(dsa_perception/ObstacleAlert: id, box and true distance of the visible obstacle, for time to alert), all with the
image's stamp.
"""
from __future__ import annotations

import argparse
import json

from dsa_core.bags.drive import CALIBRATION_DRIVE_FRAMES, DRIVE_OBSTACLE_FAMILIES, DriveSpec, calibration_drive_spec
from dsa_core.data.synth.sprites import TEST_ANOMALY_FAMILIES
from dsa_core.bags.messages import WRITABLE_ENCODINGS
from dsa_core.commands import UserError
from dsa_core.bags.writer import DEFAULT_FRAME_ID, STORAGES, write_drive_bag

DEFAULT_FRAMES = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=None,
                        help=f"number of camera frames (default {DEFAULT_FRAMES}; {CALIBRATION_DRIVE_FRAMES} with "
                             f"--calibration-drive)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the recording")
    parser.add_argument("--height", type=int, default=256, help="image height")
    parser.add_argument("--width", type=int, default=512, help="image width")
    parser.add_argument("--storage", choices=sorted(STORAGES), default="sqlite3", help="rosbag2 storage plugin")
    parser.add_argument("--version", type=int, choices=[8, 9], default=8,
                        help="rosbag2 metadata version (8 plays on Humble, 9 needs Jazzy or newer)")
    parser.add_argument("--camera-topic", default="/camera/front/image_raw", help="raw image topic")
    parser.add_argument("--frame-id", default=DEFAULT_FRAME_ID, help="header frame id (REP-103 optical frame)")
    parser.add_argument("--encoding", choices=WRITABLE_ENCODINGS, default="rgb8", help="encoding of the raw images")
    parser.add_argument("--compressed", action="store_true", help="also write CompressedImage on <camera-topic>/compressed")
    parser.add_argument("--no-raw", action="store_true", help="omit the raw Image topic (needs --compressed)")
    parser.add_argument("--compressed-format", choices=["jpeg", "png"], default="jpeg", help="CompressedImage codec")
    parser.add_argument("--segment-frames", type=int, default=30, help="frames per street before cutting to a new one")
    parser.add_argument("--obstacle-probability", type=float, default=0.75, help="fraction of streets with an obstacle")
    parser.add_argument("--obstacle-families", metavar="FAMILY,...",
                        help=f"comma-separated sprite families of the obstacles (default "
                             f"{','.join(TEST_ANOMALY_FAMILIES)}; allowed: {','.join(DRIVE_OBSTACLE_FAMILIES)}, none "
                             f"of which any training stage sees)")
    parser.add_argument("--calibration-drive", action="store_true",
                        help="the recipes' obstacle-free val drive for dsa calibrate --val-bag (5 fps, 40-frame "
                             "streets, no obstacle, seed 7): replaces --fps, --segment-frames, --obstacle-probability "
                             "and --seed")


def drive_spec(args: argparse.Namespace) -> DriveSpec:
    """The drive the options ask for (a bad value raises ValueError)."""
    if args.calibration_drive and args.obstacle_families is not None:
        raise ValueError("--obstacle-families has no use with --calibration-drive, which has no obstacle")
    if args.calibration_drive:
        return calibration_drive_spec(args.height, args.width,
                                      CALIBRATION_DRIVE_FRAMES if args.frames is None else args.frames)
    families = {} if args.obstacle_families is None else {
        "obstacle_families": tuple(f.strip() for f in args.obstacle_families.split(",") if f.strip())}
    return DriveSpec(frames=DEFAULT_FRAMES if args.frames is None else args.frames, height=args.height,
                     width=args.width, fps=args.fps, seed=args.seed, segment_frames=args.segment_frames,
                     obstacle_probability=args.obstacle_probability, **families)


def run(args: argparse.Namespace) -> int:
    try:
        spec = drive_spec(args)
    except ValueError as exc:  # a bad option value: one line, no traceback
        raise UserError(str(exc)) from None
    try:
        summary = write_drive_bag(args.out, spec, storage=args.storage, version=args.version,
                                  camera_topic=args.camera_topic, frame_id=args.frame_id, raw=not args.no_raw,
                                  compressed=args.compressed, compressed_format=args.compressed_format,
                                  encoding=args.encoding, progress=not args.no_progress)
    except ValueError as exc:  # a bad --camera-topic: one line, no traceback (an existing --out: FileExistsError)
        raise UserError(str(exc)) from None
    print(json.dumps(summary, indent=1))
    return 0
