#!/usr/bin/env python3
"""What a model's confirmed tracks lie on, from a drive cached by dsa_core.eval.alert_curve.cache_drive.

    python results/train_nano_logs/false_alerts/false_alert_tracks.py CACHE_DIR THRESHOLD MIN_AREA_PX \
        [--ego-mask-bottom 0.15] [--sheet OUT.jpg]

Replays the cached maps through the node's obstacle search and tracker at (THRESHOLD, MIN_AREA_PX), reads the bag's
ground truth, and prints one JSON line per confirmed track: frames, first frame, first box, the ground-truth class of
most of its flagged pixels (void = content none of the 19 classes covers), the class the model's semantic head gives
them, and the share of them on a true obstacle (gt/anomaly). A track with share < 0.1 is a false alert. With
--sheet, draws the third confirmed frame of every false track with its box.
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

from dsa_core.bags.alerts import class_name  # noqa: E402
from dsa_core.bags.reader import bag_topics, iter_frames, select_streams  # noqa: E402
from dsa_core.bags.source import open_bag  # noqa: E402
from dsa_core.eval.alert_curve import CachedDrive, hysteresis_mask  # noqa: E402
from dsa_core.perception.obstacles import (ObstacleSettings, ObstacleTracker, find_obstacles,  # noqa: E402
                                           ground_camera_for_image)

FALSE_SHARE = 0.1  # a track whose flagged pixels lie on a true obstacle less than this is a false alert


def majority(values: np.ndarray) -> str | None:
    return class_name(int(np.bincount(values.ravel(), minlength=256).argmax())) if values.size else None


def tracks(drive: CachedDrive, threshold: float, min_area: int, ego: float) -> list[dict]:
    source = open_bag(drive.bag)
    settings = ObstacleSettings(min_area=min_area, ego_mask_bottom_fraction=ego)
    tracker = ObstacleTracker(settings)
    rows = {f["index"]: f for f in drive.frames}
    h_img, w_img = drive.image_size
    seen: dict[int, list[dict]] = collections.defaultdict(list)
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
            x, y, w, h = o.detection.bbox
            on = mask[y:y + h, x:x + w] > 0
            gt = frame.gt_semantic[y:y + h, x:x + w][on] if frame.gt_semantic is not None else np.array([], int)
            obstacle = (float((frame.gt_anomaly[y:y + h, x:x + w][on] == 1).mean())
                        if frame.gt_anomaly is not None and on.any() else 0.0)
            seen[o.track_id].append({"frame": frame.index, "box": [int(v) for v in o.detection.bbox],
                                     "gt": majority(gt), "pred": majority(ids[y:y + h, x:x + w][on]),
                                     "on_obstacle": obstacle, "severity": int(o.severity)})
    out = []
    for tid, boxes in seen.items():
        out.append({"track": tid, "frames": len(boxes), "first_frame": boxes[0]["frame"], "box": boxes[0]["box"],
                    "lies_on": collections.Counter(b["gt"] for b in boxes).most_common(1)[0][0],
                    "model_says": collections.Counter(b["pred"] for b in boxes).most_common(1)[0][0],
                    "on_obstacle": float(np.mean([b["on_obstacle"] for b in boxes])),
                    "max_severity": max(b["severity"] for b in boxes),
                    "sheet_frame": boxes[min(2, len(boxes) - 1)]["frame"]})
    return out


def sheet(bag: str, rows: list[dict], path: Path, columns: int = 3) -> None:
    from PIL import Image, ImageDraw

    want = {r["sheet_frame"]: r for r in rows}
    source = open_bag(bag)
    tiles = []
    for frame in iter_frames(source, select_streams(bag_topics(source))):
        if frame.index in want:
            r = want[frame.index]
            x, y, w, h = r["box"]
            image = Image.fromarray(frame.rgb)
            draw = ImageDraw.Draw(image)
            draw.rectangle([x - 2, y - 2, x + w + 2, y + h + 2], outline=(255, 0, 0), width=2)
            draw.text((4, 4), f"frame {frame.index}: {r['lies_on']}, model: {r['model_says']}, {r['frames']} frames",
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
    rows = tracks(drive, args.threshold, args.min_area_px, args.ego_mask_bottom)
    for r in rows:
        print(json.dumps(r))
    false = [r for r in rows if r["on_obstacle"] < FALSE_SHARE]
    print(json.dumps({"tracks": len(rows), "false_alerts": len(false),
                      "false_alerts_lie_on": dict(collections.Counter(r["lies_on"] for r in false).most_common())}))
    if args.sheet:
        sheet(drive.bag, false, args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
