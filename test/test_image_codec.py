"""image_codec against independent conversions, on plain objects and on the real sensor_msgs classes."""
from __future__ import annotations

import array

import io
import struct
import zlib
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image as PILImage

from dsa_core.perception.image_codec import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    SUPPORTED_ENCODINGS,
    DecodeReason,
    ImageDecodeError,
    compressed_msg_to_rgb,
    fill_image_msg,
    image_msg_to_array,
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


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
def test_png_without_imread_color_rgb(monkeypatch, mode: str) -> None:
    """OpenCV 4.5 / 4.6 (Humble, Jazzy) have no IMREAD_COLOR_RGB: the BGR decode + swap gives the same pixels."""
    import cv2

    rgb = _smooth_rgb()
    image = PILImage.fromarray(rgb).convert(mode) if mode != "I;16" else PILImage.fromarray(
        rgb[:, :, 0].astype(np.uint16) * 257)
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    msg = SimpleNamespace(format="png", data=stream.getvalue())
    reference = compressed_msg_to_rgb(msg) if hasattr(cv2, "IMREAD_COLOR_RGB") else None
    monkeypatch.delattr(cv2, "IMREAD_COLOR_RGB", raising=False)
    out = compressed_msg_to_rgb(msg)
    expected = np.asarray(image.convert("RGB")) if mode != "I;16" else np.repeat(rgb[:, :, :1], 3, axis=2)
    np.testing.assert_array_equal(out, expected)
    if reference is not None:
        np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8", ""])
def test_jpeg_matches_an_independent_decoder(make_compressed, fmt: str) -> None:
    rgb = _smooth_rgb()
    data = _pil_encode(rgb, "JPEG")
    reference = np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB"))
    out = compressed_msg_to_rgb(make_compressed(fmt, data))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - reference.astype(int)).max() <= 3
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 3  # and it is the picture we encoded


def _png_with_declared_size(width: int, height: int, good_crc: bool = True) -> bytes:
    """A 4x4 PNG whose IHDR claims ``width`` x ``height``, with a valid IHDR checksum unless ``good_crc`` is False."""
    data = bytearray(_pil_encode(_smooth_rgb(4, 4), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) ^ (0 if good_crc else 0xFFFFFFFF))
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
        # the PNG spec forbids a zero side; Pillow refuses such a header (raw images say zero_size)
        (DecodeReason.UNDECODABLE, make_compressed("png", _png_with_declared_size(0, 4))),
        (DecodeReason.UNDECODABLE, make_compressed("png", _png_with_declared_size(5, 4))),  # pixels do not fit
        (DecodeReason.UNDECODABLE, make_compressed("png", _png_with_declared_size(4, 4, good_crc=False))),
    ]
    for expected, msg in cases:
        assert _reason(lambda: compressed_msg_to_rgb(msg)) == expected, (expected, msg.format)
    small = make_compressed("png", png)
    assert _reason(lambda: compressed_msg_to_rgb(small, max_pixels=100)) == DecodeReason.TOO_LARGE


# --- bounded cost per message (the red-team cases of issue 13) ----------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[bytes, bytes]:
    """(SOI, everything after SOI) of a JPEG stream."""
    assert data[:2] == b"\xff\xd8"
    return data[:2], data[2:]


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _sof0(width: int, height: int) -> bytes:
    return b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])


@pytest.mark.parametrize("first", [b"\xff\xd0", b"\xff\x01"], ids=["RST0", "TEM"])
def test_a_fake_small_header_behind_markers_without_length_does_not_hide_the_real_size(make_compressed, first) -> None:
    """A length-less marker (RST/TEM) right after SOI made a hand-written marker walk read its "length" from the
    next marker and land on a fake 16x16 SOF inside an APP1 payload, so a much larger image was decoded in full.
    The size now comes from the real header (or the stream is refused unread)."""
    real = _pil_encode(_smooth_rgb(600, 600), "JPEG")  # 360 000 pixels; the cap below is 100 000
    soi, rest = _jpeg_segments(real)
    payload = bytearray(65533)
    jump = 2 + 2 + 0xFFE1  # where the old walk went: 2 + 2 + the APP1 marker bytes read as a length
    payload[jump - 8: jump - 8 + 19] = _sof0(16, 16)
    crafted = soi + first + _app1(bytes(payload)) + rest
    with pytest.raises(ImageDecodeError) as info:
        compressed_msg_to_rgb(make_compressed("jpeg", crafted), max_pixels=100_000)
    if first == b"\xff\xd0":
        assert info.value.reason == DecodeReason.TOO_LARGE and "600x600" in str(info.value)
    else:  # Pillow does not accept TEM where a segment is expected: refused at the header, nothing decoded
        assert info.value.reason == DecodeReason.UNDECODABLE and "header" in str(info.value)


def test_jpeg_with_more_than_64_kb_of_metadata_decodes(make_compressed) -> None:
    rgb = _smooth_rgb()
    plain = _pil_encode(rgb, "JPEG")
    soi, rest = _jpeg_segments(plain)
    exif_like = b"".join(_app1(b"Exif\x00\x00" + bytes([i]) * 60_000) for i in range(3))  # 180 kB before the SOF
    out = compressed_msg_to_rgb(make_compressed("jpeg", soi + exif_like + rest))
    np.testing.assert_array_equal(out, compressed_msg_to_rgb(make_compressed("jpeg", plain)))


def test_jpeg_with_trailing_zero_padding_decodes(make_compressed) -> None:
    plain = _pil_encode(_smooth_rgb(), "JPEG")
    out = compressed_msg_to_rgb(make_compressed("jpeg", plain + bytes(100_000)))  # some drivers pad to a block size
    np.testing.assert_array_equal(out, compressed_msg_to_rgb(make_compressed("jpeg", plain)))


def test_corrupt_jpeg_with_an_intact_end_marker_is_refused(make_compressed) -> None:
    data = _pil_encode(_rgb(3, 64, 96), "JPEG")
    sos = data.index(b"\xff\xda")
    middle = (sos + len(data)) // 2
    cut = data[:middle] + b"\xff\xd9"  # the scan ends early, the EOI marker is there
    zeroed = data[:sos + 40] + bytes(200) + data[sos + 240:]  # entropy-coded data overwritten
    for corrupt in (cut, zeroed):
        assert corrupt.endswith(b"\xff\xd9")
        assert _reason(lambda: compressed_msg_to_rgb(make_compressed("jpeg", corrupt))) == DecodeReason.UNDECODABLE


def test_jpeg_whose_header_lies_about_a_larger_size_is_refused(make_compressed) -> None:
    data = bytearray(_pil_encode(_smooth_rgb(32, 48), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 320, 480)  # claims 480x320, holds the scan of 48x32
    assert _reason(lambda: compressed_msg_to_rgb(make_compressed("jpeg", bytes(data)))) in (
        DecodeReason.UNDECODABLE, DecodeReason.TRUNCATED_DATA)


def test_sides_are_capped_as_well_as_the_area(make_image, make_compressed) -> None:
    # 8,000,000 x 1 mono8 is 8 MB and under the old 33 MP area cap; per-row costs made it cost gigabytes
    for width, height in ((8_000_000, 1), (1, 8_000_000)):
        msg = make_image("mono8", height, width, width, bytes(width * height))
        with pytest.raises(ImageDecodeError) as info:
            image_msg_to_rgb(msg)
        assert info.value.reason == DecodeReason.TOO_LARGE and "side" in str(info.value)
    msg = make_image("mono8", 2, 20_000, 20_000, bytes(40_000))
    assert _reason(lambda: image_msg_to_rgb(msg, max_pixels=10**9)) == DecodeReason.TOO_LARGE  # 40 kP, too wide
    assert image_msg_to_rgb(msg, max_pixels=10**9, max_side=20_000).shape == (2, 20_000, 3)
    png = _pil_encode(np.zeros((1, DEFAULT_MAX_SIDE + 1, 3), np.uint8), "PNG")
    assert _reason(lambda: compressed_msg_to_rgb(make_compressed("png", png))) == DecodeReason.TOO_LARGE


def test_default_area_cap_is_4k() -> None:
    assert DEFAULT_MAX_PIXELS == 3840 * 2160 and DEFAULT_MAX_SIDE == 16384
    at_cap = SimpleNamespace(height=2160, width=3840, encoding="mono8", is_bigendian=0, step=3840, data=bytes(3840 * 2160))
    assert image_msg_to_rgb(at_cap).shape == (2160, 3840, 3)
    over = SimpleNamespace(height=2160, width=4096, encoding="mono8", is_bigendian=0, step=4096, data=b"")
    assert _reason(lambda: image_msg_to_rgb(over)) == DecodeReason.TOO_LARGE  # before the (empty) data is looked at


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


def test_fill_image_msg_assigns_a_byte_array_the_setter_keeps() -> None:
    """array.array('B') is the one type every distro's generated setter stores without a per-element check."""
    scores = np.random.default_rng(3).random((H, W), dtype=np.float32)
    msg = fill_image_msg(_plain_image(), scores, "32FC1")
    assert type(msg.data) is array.array and msg.data.typecode == "B"
    assert msg.data.tobytes() == scores.tobytes()


@pytest.mark.ros
def test_fill_image_msg_passes_the_checked_setter_unchanged() -> None:
    """With field checks on (Humble's default under __debug__; ROS_PYTHON_CHECK_FIELDS=1 later) the setter stores
    our array object itself: no per-element type check and no second copy."""
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    rgb = _rgb(5)
    msg = fill_image_msg(sensor_msgs.Image(check_fields=True), rgb, "rgb8")
    stored = msg.data
    again = sensor_msgs.Image(check_fields=True)
    again.data = stored
    assert again.data is stored  # the array.array branch: kept as is
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)


@pytest.mark.ros
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


@pytest.mark.parametrize("big_endian", [0, 1])
@pytest.mark.parametrize("pad", [0, 5])
def test_array_decoder_keeps_native_values_honours_step_and_endianness(make_image, big_endian: int, pad: int) -> None:
    """image_msg_to_array: the one Image decoder (score maps, label maps, cameras): values, not colours."""
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(5, 6)).astype(np.float32)
    rows = scores.astype(">f4" if big_endian else "<f4").view(np.uint8).reshape(5, 24)
    data = np.concatenate([rows, rng.integers(0, 256, (5, pad), dtype=np.uint8)], 1).tobytes()
    got = image_msg_to_array(make_image("32FC1", 5, 6, 24 + pad, data, big_endian))
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, scores)
    depth = rng.integers(0, 65536, (4, 3), dtype=np.uint16)
    rows = depth.astype(">u2" if big_endian else "<u2").view(np.uint8).reshape(4, 6)
    data = np.concatenate([rows, np.zeros((4, pad), np.uint8)], 1).tobytes()
    got = image_msg_to_array(make_image("mono16", 4, 3, 6 + pad, data, big_endian))
    assert got.dtype == np.uint16 and got.shape == (4, 3)
    np.testing.assert_array_equal(got, depth)  # all 16 bits, not the >> 8 of the RGB path
    rgb = rng.integers(0, 256, (2, 4, 3), dtype=np.uint8)
    data = np.concatenate([rgb.reshape(2, 12), np.zeros((2, pad), np.uint8)], 1).tobytes()
    np.testing.assert_array_equal(image_msg_to_array(make_image("bgr8", 2, 4, 12 + pad, data)), rgb)  # channels as sent


def test_array_decoder_refuses_what_the_caller_does_not_accept(make_image) -> None:
    labels = make_image("rgb8", 2, 2, 6, bytes(12))
    with pytest.raises(ImageDecodeError, match="is not one of mono8, 8UC1") as err:
        image_msg_to_array(labels, encodings=("mono8", "8UC1"))
    assert err.value.reason == DecodeReason.UNKNOWN_ENCODING
    with pytest.raises(ImageDecodeError) as err:  # a score map is no picture
        image_msg_to_rgb(make_image("32FC1", 1, 1, 4, bytes(4)))
    assert err.value.reason == DecodeReason.UNKNOWN_ENCODING and "32FC1" not in SUPPORTED_ENCODINGS
    with pytest.raises(ImageDecodeError) as err:
        image_msg_to_array(make_image("32FC1", 2, 2, 7, bytes(14)))
    assert err.value.reason == DecodeReason.BAD_STEP
