"""Writing rosbag2 bags with rosbags: a small topic-keyed writer and the synthetic-drive bag.

Metadata version 8 is the default because ROS 2 Humble's player cannot parse version 9's YAML list of QoS profiles
(docs/ros_reference.md §4); sqlite3 and mcap storages are both supported.

Every connection records ``offered_qos_profiles`` (``RECORDED_QOS``: reliable, volatile, keep-last 10), as
`ros2 bag record` does: `ros2 bag play` offers what the bag says, and a reliable publisher matches both reliable and
best-effort subscribers (the node, RViz). Frame ids follow REP-103 optical-frame naming, ``camera_<name>_optical_frame``
(``optical_frame_id``), the fixed frame of config/dsa.rviz for camera ``front``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore
from tqdm import tqdm

from dsa_core.bags.drive import DriveFrame, DriveSpec, generate_drive
from dsa_core.bags.messages import (MSG_DIR, camera_info_message, compressed_message, header, image_message,
                                    make_typestore)

log = logging.getLogger(__name__)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
_INFINITE = QosTime(sec=2147483647, nsec=4294967295)  # how rosbag2 writes a default (infinite) duration
RECORDED_QOS = Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
                   durability=QosDurability.VOLATILE, deadline=_INFINITE, lifespan=_INFINITE,
                   liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
                   avoid_ros_namespace_conventions=False)


def optical_frame_id(camera: str) -> str:
    """REP-103 optical frame of a camera (x right, y down, z forward): the bag, the bench driver and RViz agree."""
    return f"camera_{camera}_optical_frame"


DEFAULT_FRAME_ID = optical_frame_id("front")


class BagWriter:
    """``write(topic, msgtype, msg, t_ns)`` / ``write_raw``; connections are created on first use per topic."""

    def __init__(self, path: str | Path, storage: str = "sqlite3", version: int = 8, typestore: Typestore | None = None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if version not in (8, 9):
            raise ValueError(f"rosbag2 metadata version must be 8 or 9, got {version}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} already exists (rosbags never overwrites): remove it or choose "
                                  f"another output path")
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
            conn = self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.ts, offered_qos_profiles=[RECORDED_QOS])
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
    gt_obstacles: str

    @classmethod
    def for_camera(cls, camera_topic: str) -> "DriveTopics":
        if not camera_topic.startswith("/") or camera_topic.endswith("/"):
            raise ValueError(f"camera topic must be an absolute topic name like /camera/front/image_raw, got {camera_topic!r}")
        base = camera_topic.rsplit("/", 1)[0] or ""
        return cls(image=camera_topic, compressed=f"{camera_topic}/compressed", camera_info=f"{base}/camera_info",
                   gt_semantic=f"{base}/gt/semantic", gt_anomaly=f"{base}/gt/anomaly", gt_obstacles=f"{base}/gt/obstacles")


def gt_obstacles_message(ts: Typestore, frame: DriveFrame, stamp_ns: int, frame_id: str, first_seen_ns: int,
                         age_frames: int):
    """The frame's true obstacle as a dsa_perception/ObstacleAlert (empty list when none is visible).

    Why the node's own message: it already holds what time-to-alert needs (track id, box, ground distance, ground
    point) and every ROS tool can show it. Fields that describe a detection are set to what the truth is: score 1,
    confirmed, distance from the flat-ground contact point; severity stays SEVERITY_NONE (the truth has no opinion).
    """
    h, w = frame.semantic.shape
    Alert, Obstacle = ts.types["dsa_perception/msg/ObstacleAlert"], ts.types["dsa_perception/msg/Obstacle"]
    Point, Time = ts.types["geometry_msgs/msg/Point"], ts.types["builtin_interfaces/msg/Time"]
    obstacles = []
    if frame.obstacle_box is not None:
        x, y, bw, bh = frame.obstacle_box
        area = int(np.count_nonzero(frame.anomaly == 1))
        ground = frame.obstacle_ground_point  # optical frame: x right, y down (camera height), z forward
        sec, nsec = divmod(int(first_seen_ns), 1_000_000_000)
        obstacles.append(Obstacle(
            track_id=frame.obstacle_id, age_frames=age_frames, first_seen=Time(sec=sec, nanosec=nsec),
            bbox_x=x, bbox_y=y, bbox_width=bw, bbox_height=bh, pixel_area=area, area_fraction=area / float(h * w),
            score_max=1.0, score_mean=1.0, drivable_fraction=0.0, distance_m=frame.obstacle_distance_m,
            distance_source=Obstacle.DISTANCE_SOURCE_FLAT_GROUND,
            ground_point=Point(x=ground[0], y=ground[1], z=ground[2]), severity=0, confirmed=True))
    return Alert(header=header(ts, stamp_ns, frame_id), camera_name="", severity=0,
                 most_severe_track_id=0, nearest_distance_m=frame.obstacle_distance_m, image_width=w, image_height=h,
                 anomaly_threshold=0.0, min_area_pixels=0, frame_index=frame.index, obstacles=obstacles)


def write_drive_bag(path: str | Path, spec: DriveSpec, storage: str = "sqlite3", version: int = 8,
                    camera_topic: str = "/camera/front/image_raw", frame_id: str = DEFAULT_FRAME_ID,
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
    obstacles: dict[int, dict[str, Any]] = {}  # id -> family, first/last frame, distances when first/last seen
    with BagWriter(path, storage, version) as bag:
        ts = bag.ts
        if "dsa_perception/msg/ObstacleAlert" not in ts.types:
            raise RuntimeError(f"the typestore lacks dsa_perception/msg/ObstacleAlert (msg/ not found at {MSG_DIR}); "
                               f"it is needed for the ground-truth obstacle topic")
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
            first = None
            if frame.obstacle_id:
                ob = obstacles.setdefault(frame.obstacle_id, {
                    "id": frame.obstacle_id, "family": frame.obstacle_family, "first_frame": frame.index,
                    "first_stamp_ns": t, "first_distance_m": frame.obstacle_distance_m})
                ob.update(last_frame=frame.index, last_distance_m=frame.obstacle_distance_m)
                first = ob
            bag.write(topics.gt_obstacles, gt_obstacles_message(
                ts, frame, t, frame_id, first["first_stamp_ns"] if first else 0,
                frame.index - first["first_frame"] + 1 if first else 0), t)
            obstacle_frames += int((frame.anomaly == 1).any())
        counts = dict(bag.counts)
    log.info("wrote %s (%s, metadata v%d): %d frames, %d with an obstacle", path, storage, version, spec.frames, obstacle_frames)
    return {"path": str(path), "storage": storage, "version": version, "topics": topics.__dict__, "counts": counts,
            "frames": spec.frames, "obstacle_frames": obstacle_frames, "fps": spec.fps,
            "obstacles": [{k: v for k, v in ob.items() if k != "first_stamp_ns"} for ob in obstacles.values()]}
