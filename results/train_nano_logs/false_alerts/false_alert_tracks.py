#!/usr/bin/env python3
"""What a model's confirmed tracks lie on, from a drive cached by dsa_core.eval.alert_curve.cache_drive.

    python results/train_nano_logs/false_alerts/false_alert_tracks.py CACHE_DIR THRESHOLD MIN_AREA_PX \
        [--ego-mask-bottom 0.15] [--sheet OUT.jpg]

Replays the cached maps through the node's obstacle search and tracker at (THRESHOLD, MIN_AREA_PX), reads the bag's
ground truth, and prints one JSON line per confirmed track: frames, first frame, first box, the ground-truth class of
most of its flagged pixels (void = content none of the 19 classes covers), the class the model's semantic head gives
them, and the share of them on a true obstacle (gt/anomaly). A track with share < 0.1 is a false alert. With
--sheet, draws the third confirmed frame of every false track with its box in that frame.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from dsa_core.bags.alerts import class_name, flagged_class  # noqa: E402
from dsa_core.bags.reader import bag_topics, iter_frames, select_streams  # noqa: E402
from dsa_core.bags.source import open_bag  # noqa: E402
from dsa_core.eval.alert_curve import CachedDrive, hysteresis_mask  # noqa: E402
from dsa_core.perception.obstacles import (ObstacleSettings, ObstacleTracker, find_obstacles,  # noqa: E402
                                           ground_camera_for_image)

FALSE_SHARE = 0.1  # a track whose flagged pixels lie on a true obstacle less than this is a false alert


def lies_on(box, mask: np.ndarray, labels: np.ndarray | None) -> str | None:
    """The class name of most of the flagged pixels in ``box`` by ``labels`` (ground truth or the model's)."""
    train_id = flagged_class(box, mask, labels)
    return None if train_id is None else class_name(train_id)


def tracks(drive: CachedDrive, threshold: float, min_area: int, ego: float,
           keep_images: bool = False) -> tuple[list[dict], dict[int, np.ndarray]]:
    """The confirmed tracks (one dict each) and, with ``keep_images``, each track's third confirmed frame (or its
    last, when shorter): the image its row's ``sheet_box`` is drawn on."""
    source = open_bag(drive.bag)
    settings = ObstacleSettings(min_area=min_area, ego_mask_bottom_fraction=ego)
    tracker = ObstacleTracker(settings)
    rows = {f["index"]: f for f in drive.frames}
    h_img, w_img = drive.image_size
    seen: dict[int, list[dict]] = collections.defaultdict(list)
    images: dict[int, np.ndarray] = {}
    for frame in iter_frames(source, select_streams(bag_topics(source))):
        f = rows[frame.index]
        if f["row"] is None:
            continue
        scores = np.ascontiguousarray(drive.anomaly[f["row"]])
        ids = np.ascontiguousarray(drive.class_ids[f["row"]])
        mask = hysteresis_mask(scores, threshold, None)
        info = f["camera_info"]
        camera = ground_camera_for_image(tuple(info) if info else None, w_img, h_img, 0.0, 0.0)[0]
        out = tracker.update(find_obstacles(mask, ids, scores, settings), (h_img, w_img), f["stamp_ns"], camera)
        for o in out.obstacles:
            if not o.confirmed:
                continue
            box = o.detection.bbox
            x, y, w, h = box
            on = mask[y:y + h, x:x + w] > 0
            obstacle = (float((frame.gt_anomaly[y:y + h, x:x + w][on] == 1).mean())
                        if frame.gt_anomaly is not None and on.any() else 0.0)
            seen[o.track_id].append({"frame": frame.index, "box": [int(v) for v in box],
                                     "gt": lies_on(box, mask, frame.gt_semantic), "pred": lies_on(box, mask, ids),
                                     "on_obstacle": obstacle, "severity": int(o.severity)})
            if keep_images and len(seen[o.track_id]) <= 3:
                images[o.track_id] = frame.rgb
    out = []
    for tid, boxes in seen.items():
        out.append({"track": tid, "frames": len(boxes), "first_frame": boxes[0]["frame"], "box": boxes[0]["box"],
                    "lies_on": collections.Counter(b["gt"] for b in boxes).most_common(1)[0][0],
                    "model_says": collections.Counter(b["pred"] for b in boxes).most_common(1)[0][0],
                    "on_obstacle": float(np.mean([b["on_obstacle"] for b in boxes])),
                    "max_severity": max(b["severity"] for b in boxes),
                    "sheet_frame": boxes[min(2, len(boxes) - 1)]["frame"],
                    "sheet_box": boxes[min(2, len(boxes) - 1)]["box"]})
    return out, images


def sheet(rows: list[dict], images: dict[int, np.ndarray], path: Path, columns: int = 3) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for r in rows:
        x, y, w, h = r["sheet_box"]
        image = Image.fromarray(images[r["track"]])
        draw = ImageDraw.Draw(image)
        draw.rectangle([x - 2, y - 2, x + w + 2, y + h + 2], outline=(255, 0, 0), width=2)
        draw.text((4, 4), f"frame {r['sheet_frame']}: {r['lies_on']}, model: {r['model_says']}, {r['frames']} frames",
                  fill=(255, 255, 0))
        tiles.append(image)
    if not tiles:
        return
    tw, th = tiles[0].size
    out = Image.new("RGB", (tw * columns, th * math.ceil(len(tiles) / columns)))
    for i, t in enumerate(tiles):
        out.paste(t, ((i % columns) * tw, (i // columns) * th))
    out.save(path, quality=85)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path)
    ap.add_argument("threshold", type=float)
    ap.add_argument("min_area_px", type=int)
    ap.add_argument("--ego-mask-bottom", type=float, default=0.15)
    ap.add_argument("--sheet", type=Path)
    args = ap.parse_args()
    drive = CachedDrive.load(args.cache)
    rows, images = tracks(drive, args.threshold, args.min_area_px, args.ego_mask_bottom, keep_images=bool(args.sheet))
    for r in rows:
        print(json.dumps(r))
    false = [r for r in rows if r["on_obstacle"] < FALSE_SHARE]
    print(json.dumps({"tracks": len(rows), "false_alerts": len(false),
                      "false_alerts_lie_on": dict(collections.Counter(r["lies_on"] for r in false).most_common())}))
    if args.sheet:
        sheet(false, images, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
