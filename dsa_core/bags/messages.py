"""rosbags message objects for camera data, and the typestore that also knows our own msg/ types.

Why here and not in dsa_perception: dsa_core never imports rclpy or generated ROS classes (docs/design.md §2), yet it
must write and read bags. rosbags' typestore builds pure-Python message dataclasses and serializes them to the same
CDR bytes rclpy produces, so bags written here play in ROS 2 and bags recorded from the node are read here.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "dsa_perception"


def _msg_dir() -> Path:
    """Our interface definitions: msg/ of the source checkout, else share/dsa_perception/msg of the install this
    module sits in (<prefix>/lib/pythonX.Y/site-packages/dsa_core/bags), else of an AMENT_PREFIX_PATH entry. Path
    logic only: dsa_core imports no ROS package."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg"]
    if len(here.parents) > 5:
        candidates.append(here.parents[5] / "share" / PACKAGE / "msg")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [Path(p) / "share" / PACKAGE / "msg" for p in prefixes]
    return next((c for c in candidates if (c / "ObstacleAlert.msg").is_file()), candidates[0])


#: Our interface definitions; registered so ObstacleAlert topics can be read and written.
MSG_DIR = _msg_dir()

#: Raw encodings ``image_message`` can write (the node accepts these and more, see image_codec).
WRITABLE_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8", "yuv422", "yuv422_yuy2", "rgba8", "bgra8")


def make_typestore(store: Stores = Stores.ROS2_HUMBLE) -> Typestore:
    """Humble's types (what metadata-version-8 bags target) plus dsa_perception/msg/* when msg/ is present."""
    ts = get_typestore(store)
    if MSG_DIR.is_dir():
        types = {}
        for path in sorted(MSG_DIR.glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
        ts.register(types)
    return ts


def header(ts: Typestore, stamp_ns: int, frame_id: str):
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _rgb_to_packed_yuv(rgb: np.ndarray, order: str) -> np.ndarray:
    """RGB -> 4:2:2 packed YUV, chroma averaged over pixel pairs.

    Video-range BT.601 (Y 16..235), the inverse of what OpenCV's YUV2RGB_UYVY / _YUY2 (and so the node) decode.
    """
    h, w = rgb.shape[:2]
    if w % 2:
        raise ValueError(f"4:2:2 packing needs an even width, got {w}")
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b).reshape(h, w // 2, 2).mean(-1)
    v = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b).reshape(h, w // 2, 2).mean(-1)
    out = np.empty((h, w // 2, 4), np.float32)
    if order == "uyvy":
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # yuyv
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(h, w * 2)


def _pixels(array: np.ndarray, encoding: str) -> np.ndarray:
    """uint8 HxWx3 RGB (or HxW for mono8) -> the bytes layout of ``encoding`` as an HxB array."""
    if encoding == "mono8":
        if array.ndim != 2:
            raise ValueError(f"mono8 needs an HxW array, got {array.shape}")
        return array
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{encoding} is written from an HxWx3 RGB array, got {array.shape}")
    h, w = array.shape[:2]
    if encoding == "rgb8":
        return array.reshape(h, w * 3)
    if encoding == "bgr8":
        return array[..., ::-1].reshape(h, w * 3)
    if encoding == "rgba8":
        return np.dstack([array, np.full((h, w), 255, np.uint8)]).reshape(h, w * 4)
    if encoding == "bgra8":
        return np.dstack([array[..., ::-1], np.full((h, w), 255, np.uint8)]).reshape(h, w * 4)
    if encoding == "yuv422":
        return _rgb_to_packed_yuv(array, "uyvy")
    if encoding == "yuv422_yuy2":
        return _rgb_to_packed_yuv(array, "yuyv")
    raise ValueError(f"cannot write encoding {encoding!r}; supported: {', '.join(WRITABLE_ENCODINGS)}")


def image_message(ts: Typestore, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str, row_padding: int = 0):
    """sensor_msgs/Image from an RGB (or mono8) uint8 array; ``row_padding`` bytes appended per row (step > width)."""
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {array.dtype}")
    rows = _pixels(np.ascontiguousarray(array), encoding)
    if row_padding:
        rows = np.hstack([rows, np.zeros((rows.shape[0], row_padding), np.uint8)])
    h, w = array.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts, stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=rows.shape[1], data=np.ascontiguousarray(rows).reshape(-1))


def compressed_message(ts: Typestore, rgb: np.ndarray, fmt: str, stamp_ns: int, frame_id: str, quality: int = 90):
    """sensor_msgs/CompressedImage (jpeg or png) from an RGB array; ``format`` as image_transport writes it."""
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header(ts, stamp_ns, frame_id), format=f"rgb8; {fmt} compressed bgr8", data=buf.reshape(-1))


def camera_info_message(ts: Typestore, height: int, width: int, k: list[float], stamp_ns: int, frame_id: str):
    """sensor_msgs/CameraInfo of an undistorted pinhole camera (plumb_bob with zero distortion)."""
    fx, _, cx, _, fy, cy = k[:6]
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header(ts, stamp_ns, frame_id), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.asarray(k, np.float64), r=np.eye(3).reshape(-1),
        p=np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]), binning_x=0, binning_y=0, roi=roi)
