"""Joint image / label / outlier-mask augmentation as in Mask2Former / ViT-Adapter (mmseg pipeline).

Why: the paper trains with the standard Cityscapes recipe: RandomResize (ratio 0.5-2.0 of a base scale,
keep ratio), RandomCrop (cat_max_ratio 0.75), RandomFlip (0.5), PhotoMetricDistortion, Pad (label 255).
Geometry is applied identically to the image (bilinear), the label and the outlier mask (nearest), so
pixels stay aligned. All randomness comes from a ``numpy.random.Generator`` passed per call (or owned).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dsa_core.labels import VOID, VOID_GROUND


Triple = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _check(image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    if label.shape != image.shape[:2]:
        raise ValueError(f"label shape {label.shape} does not match image {image.shape[:2]}")
    if outlier is not None and outlier.shape != image.shape[:2]:
        raise ValueError(f"outlier mask shape {outlier.shape} does not match image {image.shape[:2]}")


def resize_triple(image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None, size_hw: tuple[int, int]) -> Triple:
    """Image bilinear, label and outlier mask nearest.

    INTER_NEAREST_EXACT samples pixel centres like the bilinear image resize; plain INTER_NEAREST floors
    ``dst * scale`` and shifts labels by up to half a source pixel against the image.
    """
    h, w = size_hw
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    # cv2's nearest on int64 is unsupported: go through int32 (labels are small ints).
    label = cv2.resize(label.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(label.dtype)
    if outlier is not None:
        outlier = cv2.resize(outlier.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return image, label, outlier


def photometric_distortion(image: np.ndarray, rng: np.random.Generator, brightness_delta: int = 32,
                           contrast: tuple[float, float] = (0.5, 1.5), saturation: tuple[float, float] = (0.5, 1.5),
                           hue_delta: int = 18) -> np.ndarray:
    """mmseg PhotoMetricDistortion: each step with prob 0.5; contrast before or after the HSV steps."""
    def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    img = image
    if rng.integers(2):
        img = convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = convert(img, alpha=rng.uniform(*contrast))
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = convert(hsv[..., 1], alpha=rng.uniform(*saturation))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(rng.integers(-hue_delta, hue_delta))) % 180).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.integers(2):
        img = convert(img, alpha=rng.uniform(*contrast))
    return img


@dataclass
class TrainAugment:
    """Random resize -> random crop (cat_max_ratio) -> flip -> photometric -> pad, applied jointly.

    ``crop_size`` is (H, W). ``base_size`` (H, W) is the scale the ratio refers to, fitted with kept aspect ratio
    as mmseg's ``RandomResize(scale=(W, H), ratio_range, keep_ratio=True)``; None means the image's own size
    (the factor is then exactly the drawn ratio). ``cat_max_ratio`` None disables the class-balance retry.
    """

    crop_size: tuple[int, int]
    base_size: tuple[int, int] | None = None
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float | None = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    ignore_index: int = VOID
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) <= 0:
            raise ValueError(f"crop_size must be (H, W) > 0, got {self.crop_size}")
        if not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(f"ratio_range must be 0 < lo <= hi, got {self.ratio_range}")
        self._rng = np.random.default_rng(self.seed)

    def scale_factor(self, hw: tuple[int, int], ratio: float) -> float:
        if self.base_size is None:
            return ratio
        bh, bw = self.base_size
        long_t, short_t = max(bh, bw) * ratio, min(bh, bw) * ratio
        return min(long_t / max(hw), short_t / min(hw))

    def _crop_box(self, hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
        ch, cw = self.crop_size
        y0 = int(rng.integers(0, max(hw[0] - ch, 0) + 1))
        x0 = int(rng.integers(0, max(hw[1] - cw, 0) + 1))
        return y0, min(y0 + ch, hw[0]), x0, min(x0 + cw, hw[1])

    def __call__(self, image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> Triple:
        return self.with_valid(image, label, outlier, rng)[:3]

    def with_valid(self, image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None = None,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray]:
        """As ``__call__``, plus ``valid`` [H, W] bool: False on the crop padding.

        Why: padding is labelled void (255) for the Mask2Former losses, but void also means "OOD" to L_ubhl; the
        loss needs to tell real void from padding.
        """
        _check(image, label, outlier)
        rng = self._rng if rng is None else rng
        h, w = image.shape[:2]
        f = self.scale_factor((h, w), rng.uniform(*self.ratio_range))
        image, label, outlier = resize_triple(image, label, outlier, (max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))))

        box = self._crop_box(label.shape, rng)
        if self.cat_max_ratio is not None and self.cat_max_ratio < 1.0:
            for _ in range(10):  # mmseg: retry until no class covers more than cat_max_ratio of the crop
                crop = label[box[0]:box[1], box[2]:box[3]]
                cnt = np.bincount(crop.ravel(), minlength=max(self.ignore_index, VOID_GROUND) + 1)
                cnt = np.delete(cnt, [self.ignore_index, VOID_GROUND])  # void ground is void here too: same crops
                cnt = cnt[cnt > 0]
                if len(cnt) > 1 and cnt.max() / cnt.sum() < self.cat_max_ratio:
                    break
                box = self._crop_box(label.shape, rng)
        y0, y1, x0, x1 = box
        image, label = image[y0:y1, x0:x1], label[y0:y1, x0:x1]
        outlier = outlier[y0:y1, x0:x1] if outlier is not None else None

        if rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
            outlier = outlier[:, ::-1] if outlier is not None else None
        if self.photometric:
            image = photometric_distortion(np.ascontiguousarray(image), rng)
        valid = np.ones(label.shape, bool)
        image, label, outlier = pad_triple(image, label, outlier, self.crop_size, self.ignore_index)
        valid = np.pad(valid, ((0, label.shape[0] - valid.shape[0]), (0, label.shape[1] - valid.shape[1])))
        return image, label, outlier, valid


def pad_triple(image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None, size_hw: tuple[int, int],
               ignore_index: int = VOID) -> Triple:
    """Pad bottom/right to ``size_hw``: image 0, label ``ignore_index``, outlier False."""
    h, w = label.shape
    ph, pw = max(size_hw[0] - h, 0), max(size_hw[1] - w, 0)
    image = np.ascontiguousarray(np.pad(image, ((0, ph), (0, pw), (0, 0))))
    label = np.ascontiguousarray(np.pad(label, ((0, ph), (0, pw)), constant_values=ignore_index))
    if outlier is not None:
        outlier = np.ascontiguousarray(np.pad(outlier, ((0, ph), (0, pw))))
    return image, label, outlier


@dataclass
class ValTransform:
    """Deterministic evaluation transform: identity, or resize to ``size`` (H, W) (label nearest)."""

    size: tuple[int, int] | None = None

    def __call__(self, image: np.ndarray, label: np.ndarray, outlier: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> Triple:
        _check(image, label, outlier)
        if self.size is None:
            return image, label, outlier
        return resize_triple(image, label, outlier, self.size)
