"""image_codec against independent conversions, on plain objects and on the real sensor_msgs classes."""
from __future__ import annotations

import io
import struct
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image as PILImage

from dsa_perception.image_codec import (
    SUPPORTED_ENCODINGS,
    DecodeReason,
    ImageDecodeError,
    compressed_msg_to_rgb,
    fill_image_msg,
    image_msg_to_rgb,
)

H, W = 6, 8  # even sizes: yuv422 packs pixel pairs, bayer tiles are 2x2


def _plain_image() -> SimpleNamespace:
    return SimpleNamespace(height=0, width=0, encoding="", is_bigendian=0, step=0, data=b"")


def _ros_image():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    return sensor_msgs.Image()


def _plain_compressed() -> SimpleNamespace:
    return SimpleNamespace(format="", data=b"")


def _ros_compressed():
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    return sensor_msgs.CompressedImage()


@pytest.fixture(params=["plain", "ros"])
def make_image(request) -> Callable[..., object]:
    factory = _plain_image if request.param == "plain" else _ros_image

    def make(encoding: str, height: int, width: int, step: int, data: bytes, is_bigendian: int = 0):
        msg = factory()
        msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, step
        msg.is_bigendian, msg.data = is_bigendian, data
        return msg

    return make


@pytest.fixture(params=["plain", "ros"])
def make_compressed(request) -> Callable[[str, bytes], object]:
    factory = _plain_compressed if request.param == "plain" else _ros_compressed

    def make(fmt: str, data: bytes):
        msg = factory()
        msg.format, msg.data = fmt, data
        return msg

    return make


def _rgb(seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _with_padding(rows: np.ndarray, pad: int, seed: int = 1) -> tuple[bytes, int]:
    """Rows (H x row_bytes uint8) followed by `pad` garbage bytes each; returns (data, step)."""
    garbage = np.random.default_rng(seed).integers(0, 256, (rows.shape[0], pad), dtype=np.uint8)
    padded = np.concatenate([rows, garbage], axis=1)
    return padded.tobytes(), padded.shape[1]


# --- 8-bit colour and mono -------------------------------------------------------------------------------------

CHANNEL_ORDERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rgb8": lambda rgb: rgb,
    "bgr8": lambda rgb: rgb[:, :, ::-1],
    "8UC3": lambda rgb: rgb[:, :, ::-1],
    "rgba8": lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=2),
    "bgra8": lambda rgb: np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2),
    "8UC4": lambda rgb: np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2),
}


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", list(CHANNEL_ORDERS))
def test_colour_encodings_round_trip(make_image, encoding: str, pad: int) -> None:
    rgb = _rgb()
    pixels = CHANNEL_ORDERS[encoding](rgb)
    data, step = _with_padding(pixels.reshape(H, -1), pad)
    out = image_msg_to_rgb(make_image(encoding, H, W, step, data))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8(make_image, encoding: str, pad: int) -> None:
    gray = np.random.default_rng(2).integers(0, 256, (H, W), dtype=np.uint8)
    data, step = _with_padding(gray, pad)
    out = image_msg_to_rgb(make_image(encoding, H, W, step, data))
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


# --- 16-bit, both byte orders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pad", [0, 3])  # odd padding: 16-bit rows start at odd offsets
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_mono16_scaled_to_8_bit(make_image, encoding: str, big_endian: bool, pad: int) -> None:
    values = np.random.default_rng(3).integers(0, 65536, (H, W), dtype=np.uint16)
    raw = np.frombuffer(values.astype(">u2" if big_endian else "<u2").tobytes(), np.uint8).reshape(H, 2 * W)
    data, step = _with_padding(raw, pad)
    out = image_msg_to_rgb(make_image(encoding, H, W, step, data, is_bigendian=int(big_endian)))
    expected = (values // 256).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], expected)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding", ["rgb16", "bgr16"])
def test_colour16(make_image, encoding: str, big_endian: bool) -> None:
    rgb16 = np.random.default_rng(4).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    pixels = rgb16 if encoding == "rgb16" else rgb16[:, :, ::-1]
    data = np.ascontiguousarray(pixels).astype(">u2" if big_endian else "<u2").tobytes()
    out = image_msg_to_rgb(make_image(encoding, H, W, 6 * W, data, is_bigendian=int(big_endian)))
    np.testing.assert_array_equal(out, (rgb16 // 256).astype(np.uint8))


# --- YUV 4:2:2 -------------------------------------------------------------------------------------------------


def _bt601_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 video range YCbCr -> RGB in float64 (the formula, not OpenCV)."""
    y, u, v = (np.asarray(a, np.float64) for a in (y, u, v))
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = 1.164 * (y - 16) + 2.018 * (u - 128)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422(make_image, encoding: str, pad: int) -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(16, 236, (H, W), dtype=np.uint8)
    u = rng.integers(16, 241, (H, W // 2), dtype=np.uint8)  # one chroma pair per two pixels
    v = rng.integers(16, 241, (H, W // 2), dtype=np.uint8)
    packed = np.empty((H, W // 2, 4), np.uint8)
    if encoding == "yuv422":  # UYVY: U Y0 V Y1
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # YUYV: Y0 U Y1 V
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    data, step = _with_padding(packed.reshape(H, 2 * W), pad)
    out = image_msg_to_rgb(make_image(encoding, H, W, step, data))
    expected = _bt601_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


# --- Bayer -----------------------------------------------------------------------------------------------------

BAYER_TILES = {  # which RGB channel each position of the 2x2 tile samples
    "rggb": [[0, 1], [1, 2]],
    "bggr": [[2, 1], [1, 0]],
    "gbrg": [[1, 2], [0, 1]],
    "grbg": [[1, 0], [2, 1]],
}


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    tile = BAYER_TILES[pattern]
    rows, cols = np.indices(rgb.shape[:2])
    channel = np.choose((rows % 2) * 2 + (cols % 2), [tile[0][0], tile[0][1], tile[1][0], tile[1][1]])
    return np.take_along_axis(rgb, channel[..., None], axis=2)[..., 0]


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("pattern", list(BAYER_TILES))
def test_bayer_uniform_colour_is_recovered(make_image, pattern: str, bits: int) -> None:
    colour = np.array([200, 90, 30], np.uint8)  # distinct channels: any pattern mix-up changes the result
    height, width = 8, 10
    rgb = np.broadcast_to(colour, (height, width, 3))
    raw = _mosaic(rgb, pattern)
    if bits == 16:
        raw = raw.astype(np.uint16) * 256 + 17  # low byte is dropped by the 8-bit reduction
    data = raw.astype("<u2" if bits == 16 else np.uint8).tobytes()
    out = image_msg_to_rgb(make_image(f"bayer_{pattern}{bits}", height, width, width * bits // 8, data))
    interior = out[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(interior - colour.astype(int)).max() <= 1


def test_every_supported_encoding_is_tested() -> None:
    tested = set(CHANNEL_ORDERS) | {"mono8", "8UC1", "mono16", "16UC1", "rgb16", "bgr16", "yuv422", "yuv422_yuy2"}
    tested |= {f"bayer_{p}{b}" for p in BAYER_TILES for b in (8, 16)}
    untested = set(SUPPORTED_ENCODINGS) - tested
    # the remaining ones are aliases (uyvy/yuyv) or alpha variants of tested 16-bit layouts
    assert untested == {"uyvy", "yuyv", "rgba16", "bgra16"}


def test_aliases_and_alpha16_match_their_twins(make_image) -> None:
    rng = np.random.default_rng(6)
    packed = rng.integers(16, 236, (H, 2 * W), dtype=np.uint8).tobytes()
    for alias, twin in (("uyvy", "yuv422"), ("yuyv", "yuv422_yuy2")):
        np.testing.assert_array_equal(
            image_msg_to_rgb(make_image(alias, H, W, 2 * W, packed)),
            image_msg_to_rgb(make_image(twin, H, W, 2 * W, packed)),
        )
    rgba16 = rng.integers(0, 65536, (H, W, 4), dtype=np.uint16)
    out = image_msg_to_rgb(make_image("rgba16", H, W, 8 * W, rgba16.astype("<u2").tobytes()))
    np.testing.assert_array_equal(out, (rgba16[:, :, :3] // 256).astype(np.uint8))
    bgra16 = rgba16[:, :, [2, 1, 0, 3]]
    out = image_msg_to_rgb(make_image("bgra16", H, W, 8 * W, np.ascontiguousarray(bgra16).astype("<u2").tobytes()))
    np.testing.assert_array_equal(out, (rgba16[:, :, :3] // 256).astype(np.uint8))


# --- malformed raw images --------------------------------------------------------------------------------------


def _reason(call: Callable[[], object]) -> DecodeReason:
    with pytest.raises(ImageDecodeError) as info:
        call()
    assert info.value.reason.value in str(info.value)
    return info.value.reason


def test_malformed_raw_images_are_rejected_with_distinct_reasons(make_image) -> None:
    good = _rgb().tobytes()
    cases = {
        DecodeReason.UNKNOWN_ENCODING: make_image("rgb9", H, W, 3 * W, good),
        DecodeReason.ZERO_SIZE: make_image("rgb8", 0, W, 3 * W, b""),
        DecodeReason.TOO_LARGE: make_image("rgb8", 100_000, 100_000, 300_000, b""),
        DecodeReason.BAD_STEP: make_image("rgb8", H, W, 3 * W - 1, good[: H * (3 * W - 1)]),
        DecodeReason.TRUNCATED_DATA: make_image("rgb8", H, W, 3 * W, good[:-1]),
        DecodeReason.OVERSIZED_DATA: make_image("rgb8", H, W, 3 * W, good + b"\x00"),
        DecodeReason.ODD_WIDTH: make_image("yuv422", H, 7, 14, bytes(H * 14)),
        DecodeReason.BAYER_TOO_SMALL: make_image("bayer_rggb8", 1, W, W, bytes(W)),
    }
    for expected, msg in cases.items():
        assert _reason(lambda: image_msg_to_rgb(msg)) == expected, expected
    assert len({reason.value for reason in cases}) == len(cases)
    zero_width = make_image("mono8", H, 0, 0, b"")
    assert _reason(lambda: image_msg_to_rgb(zero_width)) == DecodeReason.ZERO_SIZE


def test_max_pixels_is_configurable(make_image) -> None:
    msg = make_image("mono8", 4, 4, 4, bytes(16))
    assert image_msg_to_rgb(msg, max_pixels=16).shape == (4, 4, 3)
    assert _reason(lambda: image_msg_to_rgb(msg, max_pixels=15)) == DecodeReason.TOO_LARGE


def test_fields_a_ros_message_cannot_hold_are_rejected() -> None:
    msg = SimpleNamespace(height=-2, width=W, encoding="rgb8", is_bigendian=0, step=3 * W, data=b"")
    assert _reason(lambda: image_msg_to_rgb(msg)) == DecodeReason.BAD_FIELD
    msg = SimpleNamespace(height=H, width=W, encoding=None, is_bigendian=0, step=3 * W, data=b"")
    assert _reason(lambda: image_msg_to_rgb(msg)) == DecodeReason.UNKNOWN_ENCODING
    msg = SimpleNamespace(height=1, width=2, encoding="mono8", is_bigendian=0, step=2, data=[1, 300])
    assert _reason(lambda: image_msg_to_rgb(msg)) == DecodeReason.BAD_FIELD


def test_plain_list_data_is_accepted() -> None:
    msg = SimpleNamespace(height=1, width=2, encoding="mono8", is_bigendian=0, step=2, data=[7, 250])
    np.testing.assert_array_equal(image_msg_to_rgb(msg)[0, :, 0], [7, 250])


# --- CompressedImage -------------------------------------------------------------------------------------------


def _pil_encode(rgb: np.ndarray, fmt: str) -> bytes:
    stream = io.BytesIO()
    PILImage.fromarray(rgb).save(stream, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return stream.getvalue()


def _smooth_rgb(height: int = 32, width: int = 48) -> np.ndarray:
    rows, cols = np.indices((height, width))
    return np.stack([rows * 255 // height, cols * 255 // width, (rows + cols) * 2], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed rgb8", ""])
def test_png_is_lossless(make_compressed, fmt: str) -> None:
    rgb = _smooth_rgb()
    out = compressed_msg_to_rgb(make_compressed(fmt, _pil_encode(rgb, "PNG")))
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8", ""])
def test_jpeg_matches_an_independent_decoder(make_compressed, fmt: str) -> None:
    rgb = _smooth_rgb()
    data = _pil_encode(rgb, "JPEG")
    reference = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))
    out = compressed_msg_to_rgb(make_compressed(fmt, data))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 3
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 3  # and it is the picture we encoded


def _png_with_declared_size(width: int, height: int) -> bytes:
    data = bytearray(_pil_encode(_smooth_rgb(4, 4), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


def test_malformed_compressed_images_are_rejected(make_compressed) -> None:
    jpeg = _pil_encode(_smooth_rgb(), "JPEG")
    png = _pil_encode(_smooth_rgb(), "PNG")
    cases = [
        (DecodeReason.UNDECODABLE, make_compressed("jpeg", b"")),
        (DecodeReason.UNDECODABLE, make_compressed("jpeg", b"\x00garbage" * 20)),
        (DecodeReason.UNDECODABLE, make_compressed("png", jpeg)),  # declared png, is jpeg
        (DecodeReason.UNDECODABLE, make_compressed("png", png[: len(png) // 2])),
        (DecodeReason.UNDECODABLE, make_compressed("jpeg", jpeg[:2] + bytes(200))),
        (DecodeReason.TRUNCATED_DATA, make_compressed("jpeg", jpeg[: len(jpeg) * 2 // 3])),
        (DecodeReason.UNKNOWN_FORMAT, make_compressed("tiff", png)),
        (DecodeReason.UNKNOWN_FORMAT, make_compressed("16UC1; compressedDepth png", png)),
        (DecodeReason.UNKNOWN_FORMAT, make_compressed("", b"GIF89a" + bytes(30))),
        (DecodeReason.TOO_LARGE, make_compressed("png", _png_with_declared_size(200_000, 200_000))),
        (DecodeReason.ZERO_SIZE, make_compressed("png", _png_with_declared_size(0, 4))),
        (DecodeReason.UNDECODABLE, make_compressed("png", _png_with_declared_size(5, 4))),  # bad CRC / size
    ]
    for expected, msg in cases:
        assert _reason(lambda: compressed_msg_to_rgb(msg)) == expected, (expected, msg.format)
    small = make_compressed("png", png)
    assert _reason(lambda: compressed_msg_to_rgb(small, max_pixels=100)) == DecodeReason.TOO_LARGE


# --- numpy -> Image --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [_plain_image, _ros_image])
def test_fill_image_msg_round_trips(factory) -> None:
    rgb = _rgb(7)
    msg = fill_image_msg(factory(), rgb, "rgb8")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (H, W, 3 * W, "rgb8")
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)

    bgr_view = rgb[:, :, ::-1]  # non-contiguous input
    msg = fill_image_msg(factory(), bgr_view, "bgr8")
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)

    labels = np.random.default_rng(8).integers(0, 19, (H, W), dtype=np.uint8)
    msg = fill_image_msg(factory(), labels, "mono8")
    assert msg.step == W
    np.testing.assert_array_equal(image_msg_to_rgb(msg)[:, :, 1], labels)

    scores = np.random.default_rng(9).random((H, W), dtype=np.float32)
    msg = fill_image_msg(factory(), scores, "32FC1")
    assert (msg.step, msg.is_bigendian) == (4 * W, 0)
    decoded = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(H, W)
    np.testing.assert_array_equal(decoded, scores)


def test_fill_image_msg_assigns_bytes_not_arrays() -> None:
    msg = fill_image_msg(_plain_image(), _rgb(), "rgb8")
    assert type(msg.data) is bytes


def test_filled_ros_image_survives_serialization() -> None:
    serialization = pytest.importorskip("rclpy.serialization")
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    scores = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    msg = fill_image_msg(sensor_msgs.Image(), scores, "32FC1")
    back = serialization.deserialize_message(serialization.serialize_message(msg), sensor_msgs.Image)
    assert (back.height, back.width, back.encoding, back.step) == (H, W, "32FC1", 4 * W)
    np.testing.assert_array_equal(np.frombuffer(bytes(back.data), "<f4").reshape(H, W), scores)


@pytest.mark.parametrize(
    "array, encoding",
    [
        (np.zeros((H, W), np.uint8), "rgb8"),  # missing channel axis
        (np.zeros((H, W, 3), np.float32), "rgb8"),  # wrong dtype
        (np.zeros((H, W), np.float64), "32FC1"),
        (np.zeros((H, W, 1), np.uint8), "mono8"),
        (np.zeros((0, W), np.uint8), "mono8"),
        (np.zeros((H, W), np.uint8), "mono12"),
    ],
)
def test_fill_image_msg_rejects_mismatched_arrays(array: np.ndarray, encoding: str) -> None:
    with pytest.raises(ValueError):
        fill_image_msg(_plain_image(), array, encoding)
