"""Reading camera frames (and their ground truth, paired by header stamp) from any rosbag2 with rosbags.

Why a pairing buffer: ground truth and images share a header stamp but not necessarily the bag order, and a bag
written by another tool may log them at different receive times. An image waits until every expected ground-truth
map with its stamp has arrived, or until the bag has moved ``pair_window_s`` past it (then it is reported without).

Works on bags we did not write: camera topics are chosen by name (or every Image / CompressedImage topic that is not
ground truth), every other topic is ignored, and images are decoded by the node's own ``image_codec``.

Loses nothing it can read: a camera or ground-truth message that cannot be deserialized or decoded is skipped and
listed (``problems``) with its reason, and a damaged bag is read up to the damage (dsa_core/bags/source.py).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from dsa_core.bags.messages import stamp_to_ns
from dsa_core.bags.source import BagSource, open_bag

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED)
GT_ENCODINGS = ("mono8", "8UC1")  # ground-truth label maps


class BagTopicError(ValueError):
    """A requested topic is absent from the bag or has the wrong type."""


def bag_topics(path: str | Path | BagSource) -> dict[str, tuple[str, int]]:
    """topic -> (msgtype, message count)."""
    return (path if isinstance(path, BagSource) else open_bag(path)).topics


def default_gt_topics(camera_topic: str) -> tuple[str, str]:
    """Where ``dsa synth bag`` puts the ground truth of ``camera_topic`` (<camera base>/gt/semantic|anomaly)."""
    topic = camera_topic[: -len("/compressed")] if camera_topic.endswith("/compressed") else camera_topic
    base = topic.rsplit("/", 1)[0]
    return f"{base}/gt/semantic", f"{base}/gt/anomaly"


def default_camera_info_topic(camera_topic: str) -> str:
    """The CameraInfo topic that goes with ``camera_topic`` by the image_transport convention (<camera base>/camera_info)."""
    topic = camera_topic[: -len("/compressed")] if camera_topic.endswith("/compressed") else camera_topic
    return topic.rsplit("/", 1)[0] + "/camera_info"


@dataclass(frozen=True)
class CameraStream:
    """One camera topic to evaluate and the ground-truth topics paired with it (None = absent)."""

    topic: str
    msgtype: str
    gt_semantic: str | None
    gt_anomaly: str | None
    camera_info: str | None = None  # its CameraInfo topic when the bag has one: the node's horizon (and distances)

    @property
    def name(self) -> str:
        """A node camera name from the topic: /camera/front/image_raw -> front (the segment before the image name)."""
        parts = [p for p in self.topic.split("/") if p and p not in ("compressed", "image_raw", "image", "image_rect",
                                                                    "image_rect_color", "image_color")]
        return (parts[-1] if parts else "camera").replace("-", "_")


def select_streams(topics: dict[str, tuple[str, int]], camera_topics: list[str] | None = None,
                   gt_semantic_topic: str | None = None, gt_anomaly_topic: str | None = None) -> list[CameraStream]:
    """Resolve which camera topics to read and their ground truth; raises BagTopicError on bad requests."""
    explicit_gt = [t for t in (gt_semantic_topic, gt_anomaly_topic) if t]
    for t in explicit_gt:
        if t not in topics:
            raise BagTopicError(f"ground-truth topic {t} not in the bag; topics: {sorted(topics)}")
        if topics[t][0] != IMAGE:
            raise BagTopicError(f"ground-truth topic {t} must be {IMAGE} (mono8), found {topics[t][0]}")
    if camera_topics:
        for t in camera_topics:
            if t not in topics:
                raise BagTopicError(f"camera topic {t} not in the bag; image topics: "
                                    f"{sorted(k for k, v in topics.items() if v[0] in CAMERA_TYPES)}")
            if topics[t][0] not in CAMERA_TYPES:
                raise BagTopicError(f"camera topic {t} has type {topics[t][0]}; expected one of {CAMERA_TYPES}")
        chosen = list(camera_topics)
    else:
        candidates = [t for t, (mt, _) in sorted(topics.items())
                      if mt in CAMERA_TYPES and "/gt/" not in t and t not in explicit_gt]
        # A camera recorded raw and compressed is one camera: keep the raw stream.
        chosen = [t for t in candidates if not (t.endswith("/compressed") and t[: -len("/compressed")] in candidates)]
        if not chosen:
            raise BagTopicError(f"no camera (Image / CompressedImage) topic in the bag; topics: {sorted(topics)}")
    if explicit_gt and len(chosen) > 1:
        raise BagTopicError(f"--gt-*-topic pairs ground truth with ONE camera; {len(chosen)} selected: {chosen}")
    streams = []
    for t in chosen:
        sem, ano = default_gt_topics(t)
        sem = gt_semantic_topic or (sem if topics.get(sem, ("",))[0] == IMAGE else None)
        ano = gt_anomaly_topic or (ano if topics.get(ano, ("",))[0] == IMAGE else None)
        info = default_camera_info_topic(t)
        streams.append(CameraStream(topic=t, msgtype=topics[t][0], gt_semantic=sem, gt_anomaly=ano,
                                    camera_info=info if topics.get(info, ("",))[0] == CAMERA_INFO else None))
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise BagTopicError(f"camera topics {chosen} map to duplicate camera names {names}")
    return streams


@dataclass
class BagFrame:
    """One camera message: decoded RGB or the reason it could not be decoded, plus ground truth by stamp."""

    stream: CameraStream
    index: int  # per camera, in bag order
    stamp_ns: int
    log_time_ns: int
    rgb: np.ndarray | None
    error: str | None = None
    gt_semantic: np.ndarray | None = None
    gt_anomaly: np.ndarray | None = None
    missing_gt: list[str] = field(default_factory=list)
    camera_info: tuple[list[float], int, int] | None = None  # the last valid CameraInfo before it (K, width, height)

    def ground_camera(self, pitch_rad: float = 0.0):
        """The camera the node would use for this frame (its CameraInfo, no mount height: a horizon, no distances;
        ``pitch_rad``: its mount pitch, the node's camera.<name>.mount_pitch_deg); None without CameraInfo, image,
        or when K does not fit the image."""
        from dsa_core.perception.obstacles import ground_camera_for_image

        if self.rgb is None:
            return None
        return ground_camera_for_image(self.camera_info, self.rgb.shape[1], self.rgb.shape[0], 0.0, pitch_rad)[0]


def iter_frames(path: str | Path | BagSource, streams: list[CameraStream], pair_window_s: float = 2.0,
                problems: list[dict] | None = None) -> Iterator[BagFrame]:
    """Yield camera frames in bag order with ground truth attached (see module docstring). Camera messages that
    cannot be deserialized come out as frames without image (``error`` says why); unreadable ground-truth messages
    are appended to ``problems`` ({topic, log_time_ns, stamp_ns, reason}) and the frames they belong to report the
    reason as missing ground truth. A frame carries the last valid CameraInfo of its camera in bag order, as the node
    keeps it; an implausible one is listed in ``problems`` and the one before it stays in force."""
    from dsa_core.perception.image_codec import ImageDecodeError, compressed_msg_to_rgb, image_msg_to_array, image_msg_to_rgb
    from dsa_core.perception.obstacles import camera_info_values

    by_topic = {s.topic: s for s in streams}
    gt_topics: dict[str, tuple[CameraStream, str]] = {}
    for s in streams:
        if s.gt_semantic:
            gt_topics[s.gt_semantic] = (s, "semantic")
        if s.gt_anomaly:
            gt_topics[s.gt_anomaly] = (s, "anomaly")
    info_topics = {s.camera_info: s for s in streams if s.camera_info}
    last_info: dict[str, tuple[list[float], int, int] | None] = {}  # camera topic -> CameraInfo in force
    source = path if isinstance(path, BagSource) else open_bag(path)
    problems = problems if problems is not None else []
    gt_errors: dict[tuple[str, int], str] = {}  # (camera topic, stamp) -> why its ground truth could not be read
    gt_unreadable: dict[str, list[tuple[int, str]]] = {}  # GT topic -> (log time, reason) of unreadable messages
    pending: OrderedDict[tuple[str, int], BagFrame] = OrderedDict()
    early_gt: dict[tuple[str, int], dict[str, np.ndarray]] = {}  # GT seen before its image
    counters = {s.topic: 0 for s in streams}
    window = int(pair_window_s * 1e9)

    def complete(frame: BagFrame) -> bool:
        s = frame.stream
        return (s.gt_semantic is None or frame.gt_semantic is not None) and (s.gt_anomaly is None or frame.gt_anomaly is not None)

    def finish(frame: BagFrame) -> BagFrame:
        s = frame.stream
        frame.missing_gt = [t for t, v in ((s.gt_semantic, frame.gt_semantic), (s.gt_anomaly, frame.gt_anomaly))
                            if t is not None and v is None]
        def why(topic: str) -> str | None:  # an unreadable message on that topic, near this frame in the bag
            near = [r for t, r in gt_unreadable.get(topic, []) if abs(t - frame.log_time_ns) <= window]
            return near[0] if near else None

        frame.missing_gt = [f"{t} (unreadable: {why(t)})" if why(t) else t for t in frame.missing_gt]
        return frame

    for topic, msgtype, log_time, raw in source.messages(set(by_topic) | set(gt_topics) | set(info_topics)):
        while pending:  # release images whose ground truth did not come within the window
            key, frame = next(iter(pending.items()))
            if log_time - frame.log_time_ns <= window:
                break
            del pending[key]
            yield finish(frame)
        try:
            msg = source.deserialize(raw, msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
        except Exception as exc:  # noqa: BLE001 - a message that does not deserialize is listed, not fatal
            reason = f"cannot deserialize {msgtype} ({len(raw)} bytes): {type(exc).__name__}: {exc}"
            problems.append({"topic": topic, "log_time_ns": int(log_time), "stamp_ns": None, "reason": reason})
            gt_unreadable.setdefault(topic, []).append((int(log_time), reason))
            if topic in by_topic:  # a camera frame without image: counted and skipped with the reason
                stream = by_topic[topic]
                index = counters[stream.topic]
                counters[stream.topic] += 1
                yield BagFrame(stream=stream, index=index, stamp_ns=int(log_time), log_time_ns=log_time, rgb=None,
                               error=reason, missing_gt=[])
            continue
        if topic in info_topics:
            try:
                info, problem = camera_info_values(msg.k, msg.width, msg.height)
            except Exception as exc:  # noqa: BLE001 - fields of the wrong kind in a foreign bag: listed, not fatal
                info, problem = None, f"{type(exc).__name__}: {exc}"
            if problem:
                problems.append({"topic": topic, "log_time_ns": int(log_time), "stamp_ns": stamp,
                                 "reason": f"implausible CameraInfo: {problem}"})
            else:
                last_info[info_topics[topic].topic] = info  # all-zero K = uncalibrated: no horizon from here on
            continue
        if topic in gt_topics:
            stream, kind = gt_topics[topic]
            key = (stream.topic, stamp)
            try:
                arr = np.array(image_msg_to_array(msg, encodings=GT_ENCODINGS))  # own copy: the bag buffer is reused
            except Exception as exc:  # noqa: BLE001 - listed; the frame reports missing ground truth
                reason = f"undecodable ground truth: {type(exc).__name__}: {exc}"
                problems.append({"topic": topic, "log_time_ns": int(log_time), "stamp_ns": stamp, "reason": reason})
                gt_unreadable.setdefault(topic, []).append((int(log_time), reason))
                gt_errors[key] = reason
                target = pending.pop(key, None)
                if target is not None:
                    yield finish(target)
                continue
            target = pending.get(key)
            if target is None:
                early_gt.setdefault(key, {})[kind] = arr
                continue
            setattr(target, f"gt_{kind}", arr)
            if complete(target):
                del pending[key]
                yield finish(target)
            continue
        stream = by_topic[topic]
        index = counters[stream.topic]
        counters[stream.topic] += 1
        try:
            rgb = compressed_msg_to_rgb(msg) if stream.msgtype == COMPRESSED else image_msg_to_rgb(msg)
            error = None
        except ImageDecodeError as exc:
            rgb, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - fields of the wrong kind in a foreign bag
            rgb, error = None, f"{type(exc).__name__}: {exc}"
        frame = BagFrame(stream=stream, index=index, stamp_ns=stamp, log_time_ns=log_time, rgb=rgb, error=error,
                         camera_info=last_info.get(stream.topic))
        key = (stream.topic, stamp)
        for kind, arr in early_gt.pop(key, {}).items():
            setattr(frame, f"gt_{kind}", arr)
        if complete(frame) or key in gt_errors:
            yield finish(frame)
        else:
            if key in pending:  # two images with one stamp: the first one goes out without waiting
                yield finish(pending.pop(key))
            pending[key] = frame
    for frame in pending.values():
        yield finish(frame)
    if early_gt:
        log.warning("%d ground-truth maps had no image with the same stamp", len(early_gt))
