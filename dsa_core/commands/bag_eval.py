"""``dsa bag-eval``: replay a rosbag2 through the node's pipeline and score it against ground-truth topics.

    dsa bag-eval --bag BAG --model MODEL_DIR --out DIR [--camera-topic T ...]
                 [--gt-semantic-topic T --gt-anomaly-topic T] [--backend onnxruntime,torch]
    dsa bag-eval ... --live [--rate FACTOR]      # the real node in the loop (needs the ROS 2 environment)

Offline mode reads the bag with rosbags and calls the same PerceptionPipeline the node runs. Live mode starts
``dsa_perception_node``, replays the bag into it through rclpy, records its outputs to a bag and scores those,
with the latency from publishing a frame to its outputs arriving and the frames the node dropped.

Messages that cannot be read are skipped and listed in the report with their reason; a damaged bag is read up to
the damage and the report says what was lost. Mistakes in the command (a path that is not a bag, a topic that is not
in it, a model dir that is refused) end with one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import math

from dsa_core.commands import UserError, mount_pitch_deg
from dsa_core.perception.obstacles import MAX_DEBOUNCE_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="rosbag2 directory (sqlite3 or mcap)")
    parser.add_argument("--model", required=True, help="model directory written by `dsa export`")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--camera-topic", action="append", default=None,
                        help="camera topic (Image or CompressedImage); repeat for several; default: every image topic "
                             "that is not ground truth")
    parser.add_argument("--gt-semantic-topic", help="mono8 train-id ground truth (default <camera base>/gt/semantic)")
    parser.add_argument("--gt-anomaly-topic", help="mono8 0/1/255 anomaly ground truth (default <camera base>/gt/anomaly)")
    parser.add_argument("--backend", default="onnxruntime,torch", help="backend preference list, comma separated")
    parser.add_argument("--threshold", type=float, default=None,
                        help="anomaly threshold (default: the model's calibrated value in manifest.json, else the "
                             "per-score fallback)")
    parser.add_argument("--min-obstacle-area", type=int, default=None,
                        help="minimum obstacle area in pixels (default: the model's calibrated share of the image)")
    parser.add_argument("--ego-mask-bottom", type=float, default=0.0, metavar="FRACTION",
                        help="share of the bottom rows showing the ego vehicle (the node's ego_mask_bottom_fraction); "
                             "no obstacle is searched there")
    parser.add_argument("--debounce-seconds", type=float, default=0.0, metavar="S",
                        help="the node's debounce_seconds: matches in consecutive processed frames spanning S seconds "
                             "of stamps confirm an obstacle (0 = off; offline every frame is processed)")
    parser.add_argument("--mount-pitch-deg", type=mount_pitch_deg, default=0.0, metavar="DEG",
                        help="the cameras' pitch below the horizon (the node's camera.<name>.mount_pitch_deg): where "
                             "the horizon gate puts the horizon, from each camera's CameraInfo")
    parser.add_argument("--components", choices=["obstacle", "anomaly"], default="obstacle",
                        help="SMIYC component size filter: obstacle track (50/10 px) or anomaly track (500/100 px)")
    parser.add_argument("--live", action="store_true", help="run the real node and replay the bag into it")
    parser.add_argument("--rate", type=float, default=1.0, help="live: replay speed factor (1 = recorded rate)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="live: seconds to wait for the node")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dsa_core.eval.components import ANOMALY_TRACK, OBSTACLE_TRACK

    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    sizes = OBSTACLE_TRACK if args.components == "obstacle" else ANOMALY_TRACK
    if args.rate <= 0:
        raise UserError(f"--rate must be > 0, got {args.rate}")
    if args.min_obstacle_area is not None and args.min_obstacle_area < 1:
        raise UserError(f"--min-obstacle-area must be >= 1 pixel, got {args.min_obstacle_area}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise UserError(f"--threshold must be finite, got {args.threshold}")
    if not 0.0 <= args.ego_mask_bottom <= 0.5:
        raise UserError(f"--ego-mask-bottom must be in [0, 0.5], got {args.ego_mask_bottom}")
    if not 0.0 <= args.debounce_seconds <= MAX_DEBOUNCE_S:
        raise UserError(f"--debounce-seconds must be in [0, {MAX_DEBOUNCE_S:g}], got {args.debounce_seconds}")
    if args.live:
        from dsa_core.bags.live import evaluate_live

        report = evaluate_live(args.bag, args.model, args.out, camera_topics=args.camera_topic,
                               gt_semantic_topic=args.gt_semantic_topic, gt_anomaly_topic=args.gt_anomaly_topic,
                               backends=backends, threshold=args.threshold, rate=args.rate, sizes=sizes,
                               startup_timeout_s=args.startup_timeout, min_area_px=args.min_obstacle_area,
                               mount_pitch_deg=args.mount_pitch_deg,
                               node_params={"ego_mask_bottom_fraction": float(args.ego_mask_bottom),
                                            "debounce_seconds": float(args.debounce_seconds)})
    else:
        from dsa_core.bags.offline import evaluate_offline

        report = evaluate_offline(args.bag, args.model, args.out, camera_topics=args.camera_topic,
                                  gt_semantic_topic=args.gt_semantic_topic, gt_anomaly_topic=args.gt_anomaly_topic,
                                  backends=tuple(backends), threshold=args.threshold, sizes=sizes,
                                  progress=not args.no_progress, min_area_px=args.min_obstacle_area,
                                  ego_mask_bottom=args.ego_mask_bottom, debounce_seconds=args.debounce_seconds,
                                  mount_pitch_deg=args.mount_pitch_deg)
    from dsa_core.bags.report import summary_text

    print(summary_text(report))
    return 0
