"""Writing rosbag2 bags with rosbags: a small topic-keyed writer and the synthetic-drive bag.

Metadata version 8 is the default because ROS 2 Humble's player cannot parse version 9's YAML list of QoS profiles
(ros_reference §4); sqlite3 and mcap storages are both supported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore
from tqdm import tqdm

from dsa_core.bags.drive import DriveSpec, generate_drive
from dsa_core.bags.messages import camera_info_message, compressed_message, image_message, make_typestore

log = logging.getLogger(__name__)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


class BagWriter:
    """``write(topic, msgtype, msg, t_ns)`` / ``write_raw``; connections are created on first use per topic."""

    def __init__(self, path: str | Path, storage: str = "sqlite3", version: int = 8, typestore: Typestore | None = None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if version not in (8, 9):
            raise ValueError(f"rosbag2 metadata version must be 8 or 9, got {version}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists; rosbags never overwrites (remove it first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ts = typestore or make_typestore()
        self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def _connection(self, topic: str, msgtype: str) -> Any:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.ts)
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} was opened with {conn.msgtype}, now written with {msgtype}")
        return conn

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, self.ts.serialize_cdr(msg, msgtype), t_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, t_ns: int) -> None:
        self._writer.write(self._connection(topic, msgtype), int(t_ns), data)
        self.counts[topic] = self.counts.get(topic, 0) + 1


@dataclass(frozen=True)
class DriveTopics:
    """Topic names of a synthetic drive bag, derived from the camera topic like a camera driver would name them."""

    image: str
    compressed: str
    camera_info: str
    gt_semantic: str
    gt_anomaly: str

    @classmethod
    def for_camera(cls, camera_topic: str) -> "DriveTopics":
        if not camera_topic.startswith("/") or camera_topic.endswith("/"):
            raise ValueError(f"camera topic must be an absolute topic name like /camera/front/image_raw, got {camera_topic!r}")
        base = camera_topic.rsplit("/", 1)[0] or ""
        return cls(image=camera_topic, compressed=f"{camera_topic}/compressed", camera_info=f"{base}/camera_info",
                   gt_semantic=f"{base}/gt/semantic", gt_anomaly=f"{base}/gt/anomaly")


def write_drive_bag(path: str | Path, spec: DriveSpec, storage: str = "sqlite3", version: int = 8,
                    camera_topic: str = "/camera/front/image_raw", frame_id: str = "camera_front_optical",
                    raw: bool = True, compressed: bool = False, compressed_format: str = "jpeg",
                    encoding: str = "rgb8", start_ns: int = 1_700_000_000_000_000_000,
                    progress: bool = True) -> dict[str, Any]:
    """Write a synthetic drive (see drive.py) as a bag; returns a summary (topics, counts, obstacle frames).

    Every message of a frame carries the same header stamp (= the bag timestamp), so ground truth pairs with the
    image by stamp, whatever topics a consumer subscribes to.
    """
    if not raw and not compressed:
        raise ValueError("a drive bag needs raw and/or compressed images")
    topics = DriveTopics.for_camera(camera_topic)
    obstacle_frames = 0
    with BagWriter(path, storage, version) as bag:
        ts = bag.ts
        frames = generate_drive(spec)
        for frame in tqdm(frames, total=spec.frames, desc=f"drive bag {Path(path).name}", disable=not progress, unit="frame"):
            t = start_ns + frame.stamp_ns
            h, w = frame.semantic.shape
            bag.write(topics.camera_info, camera_info_message(ts, h, w, frame.intrinsics.k_matrix(), t, frame_id), t)
            if raw:
                bag.write(topics.image, image_message(ts, frame.rgb, encoding, t, frame_id), t)
            if compressed:
                bag.write(topics.compressed, compressed_message(ts, frame.rgb, compressed_format, t, frame_id), t)
            bag.write(topics.gt_semantic, image_message(ts, frame.semantic, "mono8", t, frame_id), t)
            bag.write(topics.gt_anomaly, image_message(ts, frame.anomaly, "mono8", t, frame_id), t)
            obstacle_frames += int((frame.anomaly == 1).any())
        counts = dict(bag.counts)
    log.info("wrote %s (%s, metadata v%d): %d frames, %d with an obstacle", path, storage, version, spec.frames, obstacle_frames)
    return {"path": str(path), "storage": storage, "version": version, "topics": topics.__dict__, "counts": counts,
            "frames": spec.frames, "obstacle_frames": obstacle_frames, "fps": spec.fps}
