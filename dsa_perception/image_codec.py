"""sensor_msgs Image / CompressedImage <-> numpy without cv_bridge and without importing ROS.

Why not cv_bridge: the PyPI port breaks with OpenCV 5 / numpy 2 and the apt one with numpy 2 (DESIGN.md §7).
The functions work on duck-typed messages (any object with the sensor_msgs field names), so they are usable and
testable without rclpy, and on the real generated classes alike.

Every malformed input raises ImageDecodeError with a `reason` from DecodeReason, so the node can count rejected
messages per reason in its diagnostics.
"""
from __future__ import annotations

import enum
import struct
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Default upper bound for width * height of accepted images (8K UHD). The node makes it a parameter.
DEFAULT_MAX_PIXELS = 7680 * 4320


class DecodeReason(str, enum.Enum):
    """Why a message was rejected (stable strings, used as diagnostics counter keys)."""

    UNKNOWN_ENCODING = "unknown_encoding"
    ZERO_SIZE = "zero_size"
    TOO_LARGE = "too_large"
    BAD_STEP = "bad_step"
    TRUNCATED_DATA = "truncated_data"
    OVERSIZED_DATA = "oversized_data"
    ODD_WIDTH = "odd_width"
    BAYER_TOO_SMALL = "bayer_too_small"
    UNKNOWN_FORMAT = "unknown_compressed_format"
    UNDECODABLE = "undecodable_compressed_data"
    BAD_FIELD = "bad_field"


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an RGB image; `reason` says which check failed."""

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class _Layout:
    """Memory layout of one raw encoding and how it becomes RGB."""

    channels: int  # values per pixel in the buffer (yuv422: 2 bytes per pixel)
    itemsize: int  # bytes per value
    to_rgb: str  # conversion kind, see _convert


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, "rgb"),
    "bgr8": _Layout(3, 1, "bgr"),
    "rgba8": _Layout(4, 1, "rgba"),
    "bgra8": _Layout(4, 1, "bgra"),
    "mono8": _Layout(1, 1, "mono"),
    "8UC1": _Layout(1, 1, "mono"),
    "8UC3": _Layout(3, 1, "bgr"),  # OpenCV's channel order, as cv_bridge treats it
    "8UC4": _Layout(4, 1, "bgra"),
    "rgb16": _Layout(3, 2, "rgb"),
    "bgr16": _Layout(3, 2, "bgr"),
    "rgba16": _Layout(4, 2, "rgba"),
    "bgra16": _Layout(4, 2, "bgra"),
    "mono16": _Layout(1, 2, "mono"),
    "16UC1": _Layout(1, 2, "mono"),
    "yuv422": _Layout(2, 1, "uyvy"),  # UYVY (ROS name, same as "uyvy")
    "uyvy": _Layout(2, 1, "uyvy"),
    "yuv422_yuy2": _Layout(2, 1, "yuyv"),  # YUYV
    "yuyv": _Layout(2, 1, "yuyv"),
    "bayer_rggb8": _Layout(1, 1, "bayer_rggb"),
    "bayer_bggr8": _Layout(1, 1, "bayer_bggr"),
    "bayer_gbrg8": _Layout(1, 1, "bayer_gbrg"),
    "bayer_grbg8": _Layout(1, 1, "bayer_grbg"),
    "bayer_rggb16": _Layout(1, 2, "bayer_rggb"),
    "bayer_bggr16": _Layout(1, 2, "bayer_bggr"),
    "bayer_gbrg16": _Layout(1, 2, "bayer_gbrg"),
    "bayer_grbg16": _Layout(1, 2, "bayer_grbg"),
}

#: Raw encodings image_msg_to_rgb accepts.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)

_BAYER_CODES = {
    "bayer_rggb": cv2.COLOR_BayerRGGB2RGB,
    "bayer_bggr": cv2.COLOR_BayerBGGR2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGBRG2RGB,
    "bayer_grbg": cv2.COLOR_BayerGRBG2RGB,
}


def _int_field(msg: Any, name: str) -> int:
    value = getattr(msg, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ImageDecodeError(DecodeReason.BAD_FIELD, f"field '{name}' must be a non-negative integer, found {value!r}")
    return int(value)


def _byte_buffer(data: Any) -> np.ndarray:
    """The message's data as a flat uint8 array, without copying when it supports the buffer protocol."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageDecodeError(DecodeReason.BAD_FIELD, f"data must hold uint8 values, found dtype {data.dtype}")
        return data.reshape(-1)
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        pass
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:
        raise ImageDecodeError(DecodeReason.BAD_FIELD, f"data is not a byte sequence: {error}") from error
    if array.ndim != 1 or (array.size and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255)):
        raise ImageDecodeError(DecodeReason.BAD_FIELD, "data must be a flat sequence of byte values 0..255")
    return array.astype(np.uint8)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width == 0 or height == 0:
        raise ImageDecodeError(DecodeReason.ZERO_SIZE, f"image size must be positive, found {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            DecodeReason.TOO_LARGE, f"image {width}x{height} has {width * height} pixels, at most {max_pixels} accepted"
        )


def image_msg_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image-like message into an HxWx3 uint8 RGB array.

    16-bit encodings are reduced to their 8 most significant bits (value >> 8). The result may share memory with
    `msg.data` (unpadded rgb8 is a zero-copy view); treat it as read-only.
    """
    encoding = getattr(msg, "encoding", None)
    if not isinstance(encoding, str) or encoding not in _LAYOUTS:
        raise ImageDecodeError(
            DecodeReason.UNKNOWN_ENCODING, f"encoding {encoding!r} is not one of {', '.join(SUPPORTED_ENCODINGS)}"
        )
    layout = _LAYOUTS[encoding]
    width, height, step = _int_field(msg, "width"), _int_field(msg, "height"), _int_field(msg, "step")
    _check_size(width, height, max_pixels)
    if layout.to_rgb in ("uyvy", "yuyv") and width % 2:
        raise ImageDecodeError(DecodeReason.ODD_WIDTH, f"{encoding} packs pixel pairs; width must be even, found {width}")
    if layout.to_rgb.startswith("bayer") and (width < 2 or height < 2):
        raise ImageDecodeError(DecodeReason.BAYER_TOO_SMALL, f"{encoding} needs at least 2x2 pixels, found {width}x{height}")
    row_bytes = width * layout.channels * layout.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            DecodeReason.BAD_STEP, f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} for {encoding}"
        )
    buffer = _byte_buffer(getattr(msg, "data", None))
    expected = step * height
    if buffer.size < expected:
        raise ImageDecodeError(DecodeReason.TRUNCATED_DATA, f"data has {buffer.size} bytes, step*height = {expected}")
    if buffer.size > expected:
        raise ImageDecodeError(DecodeReason.OVERSIZED_DATA, f"data has {buffer.size} bytes, step*height = {expected}")

    rows = buffer.reshape(height, step)[:, :row_bytes]
    if layout.itemsize == 2:
        big_endian = bool(getattr(msg, "is_bigendian", False))
        values = np.ascontiguousarray(rows).view(">u2" if big_endian else "<u2")
        rows = (values >> 8).astype(np.uint8)
    return _convert(rows.reshape(height, width, layout.channels), layout.to_rgb)


def _convert(pixels: np.ndarray, kind: str) -> np.ndarray:
    """HxWxC uint8 in the encoding's channel order -> HxWx3 uint8 RGB."""
    if kind == "rgb":
        return pixels
    if kind == "bgr":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB)
    if kind == "rgba":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2RGB)
    if kind == "bgra":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2RGB)
    if kind == "mono":
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if kind == "uyvy":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_UYVY)
    if kind == "yuyv":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_YUV2RGB_YUY2)
    return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), _BAYER_CODES[kind])


# --- CompressedImage -------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _compressed_codec(format_string: str, data: bytes) -> str:
    """'jpeg' or 'png' from the CompressedImage format ("jpeg", "png", "rgb8; jpeg compressed bgr8")."""
    text = format_string.lower()
    if "compresseddepth" in text:
        raise ImageDecodeError(DecodeReason.UNKNOWN_FORMAT, f"compressedDepth images are not camera images: {format_string!r}")
    has_jpeg, has_png = "jpeg" in text or "jpg" in text, "png" in text
    if has_jpeg != has_png:
        return "jpeg" if has_jpeg else "png"
    if not text.strip():  # some drivers leave format empty: trust the magic bytes
        if data.startswith(_PNG_SIGNATURE):
            return "png"
        if data.startswith(b"\xff\xd8"):
            return "jpeg"
    raise ImageDecodeError(DecodeReason.UNKNOWN_FORMAT, f"format {format_string!r} is neither jpeg nor png")


def _declared_size(codec: str, data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG IHDR / JPEG SOF header, read before decoding to refuse decompression bombs."""
    if codec == "png":
        if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
            raise ImageDecodeError(DecodeReason.UNDECODABLE, "data is not a PNG stream (no signature / IHDR)")
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if not data.startswith(b"\xff\xd8"):
        raise ImageDecodeError(DecodeReason.UNDECODABLE, "data is not a JPEG stream (no SOI marker)")
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ImageDecodeError(DecodeReason.UNDECODABLE, f"corrupt JPEG marker at byte {offset}")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _JPEG_SOF_MARKERS:
            if offset + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        if length < 2:
            raise ImageDecodeError(DecodeReason.UNDECODABLE, f"corrupt JPEG segment length at byte {offset}")
        offset += 2 + length
    raise ImageDecodeError(DecodeReason.UNDECODABLE, "JPEG stream has no frame header (SOF)")


def compressed_msg_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage-like message (jpeg or png) into an HxWx3 uint8 RGB array."""
    format_string = getattr(msg, "format", None)
    if not isinstance(format_string, str):
        raise ImageDecodeError(DecodeReason.BAD_FIELD, f"field 'format' must be a string, found {format_string!r}")
    buffer = _byte_buffer(getattr(msg, "data", None))
    if buffer.size == 0:
        raise ImageDecodeError(DecodeReason.UNDECODABLE, "compressed data is empty")
    head = buffer[:65536].tobytes()
    codec = _compressed_codec(format_string, head)
    width, height = _declared_size(codec, head)
    _check_size(width, height, max_pixels)
    if codec == "jpeg" and not buffer[-64:].tobytes().rstrip(b"\x00").endswith(b"\xff\xd9"):
        # libjpeg "decodes" a cut-off stream into a partly grey picture; a stream without its EOI marker
        # (trailing zero padding allowed) is a truncated message, not an image.
        raise ImageDecodeError(DecodeReason.TRUNCATED_DATA, "JPEG stream does not end with the EOI marker (truncated)")
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
    if image is None:
        raise ImageDecodeError(DecodeReason.UNDECODABLE, f"OpenCV could not decode the {codec} data ({buffer.size} bytes)")
    if image.shape[:2] != (height, width):
        raise ImageDecodeError(
            DecodeReason.UNDECODABLE, f"{codec} header says {width}x{height}, decoded {image.shape[1]}x{image.shape[0]}"
        )
    return image


# --- numpy -> Image --------------------------------------------------------------------------------------------

_ENCODE_SPECS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "32FC1": (np.dtype(np.float32), 1),
}


def fill_image_msg(msg: Any, array: np.ndarray, encoding: str) -> Any:
    """Fill height/width/encoding/is_bigendian/step/data of an Image-like message from `array`; returns `msg`.

    `data` is assigned as `bytes`: assigning a numpy array to a generated message field is ~100x slower. The
    header is left alone (the caller copies the input header).
    """
    if encoding not in _ENCODE_SPECS:
        raise ValueError(f"cannot encode {encoding!r}; supported: {', '.join(_ENCODE_SPECS)}")
    dtype, channels = _ENCODE_SPECS[encoding]
    expected_ndim = 2 if channels == 1 else 3
    if not isinstance(array, np.ndarray) or array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        found = array.shape if isinstance(array, np.ndarray) else type(array).__name__
        shape = "HxW" if channels == 1 else f"HxWx{channels}"
        raise ValueError(f"{encoding} needs a {shape} array, found {found}")
    if array.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, found {array.dtype}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty image ({width}x{height})")
    contiguous = np.ascontiguousarray(array)
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big" and dtype.itemsize > 1)
    msg.step = int(width * channels * dtype.itemsize)
    msg.data = contiguous.tobytes()
    return msg
