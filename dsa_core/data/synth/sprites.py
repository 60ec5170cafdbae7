"""Anomaly / outlier objects (``make_sprite`` + ``paste_sprite``): one painter per appearance family (``PAINTERS``).

The families are split into four DISJOINT sets:

* ``TEST_ANOMALY_FAMILIES`` (rock, cardboard_box, tyre, animal, wooden_crate): natural, muted colours with
  cellular (Voronoi-like) or smooth-noise textures, fur spots, wood grain, 3-D shading. Used only by the anomaly
  benchmark generators (Fishyscapes, Road Anomaly, SMIYC substitutes).
* ``OUTLIER_POOL_FAMILIES``: saturated colours with periodic textures and geometric outlines (checker_polygon,
  striped_ellipse, polka_star, gradient_crescent, plus_cross), and, for diversity, families in any colour from
  greys and browns to saturated hues without outlines: multi-scale noise blobs, shaded polygons, thin bars
  (pole-like) and patchworks of random shapes (cluttered, photo-like content). Used only for the synthetic COCO
  outlier-exposure pool; none uses the test families' cellular textures, wood grain, box faces, treads or fur.
* ``PRETRAIN_OBJECT_FAMILIES``: everyday-object stand-ins in any colour (shaded spheres and capsules, marbled slabs,
  plaid cloth, glyph signs, faceted crumpled sheets) for backbone pre-training only, disjoint from both sets above:
  the frozen backbone learns features for objects that are not scene classes without ever seeing the pool that
  outlier exposure later trains on, nor an evaluation family. (A study may also widen the stage-2 pool with them.)
* ``VALIDATION_OBJECT_FAMILIES``: road-debris stand-ins (traffic cones, barrels, tied sacks, furniture
  silhouettes, fallen branches) for model selection only, disjoint from all three sets above: a validation set of
  objects no training stage sees, so choosing between training variants measures generalisation to unseen objects
  without spending the evaluation families.

No set appears in the training scenes, so a benchmark measures generalisation to unseen appearance, not
memorisation of the outlier-exposure generator (docs/eval_reference.md §4.2).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dsa_core.data.synth.scene import hull, jitter_colour, smooth_noise

TEST_ANOMALY_FAMILIES: tuple[str, ...] = ("rock", "cardboard_box", "tyre", "animal", "wooden_crate")
OUTLIER_POOL_FAMILIES: tuple[str, ...] = (
    "checker_polygon", "striped_ellipse", "polka_star", "gradient_crescent", "plus_cross",
    "noise_blob", "shaded_polygon", "thin_bar", "patchwork",
)
#: Pool families drawn with the crisp dark outline. The newer families have none: a property only outliers have
#: is a shortcut outlier exposure learns instead of "no known class here", and it does not transfer.
OUTLINED_POOL_FAMILIES: tuple[str, ...] = OUTLIER_POOL_FAMILIES[:5]
PRETRAIN_OBJECT_FAMILIES: tuple[str, ...] = (
    "shaded_sphere", "capsule", "marbled_slab", "plaid_cloth", "glyph_sign", "crumpled_sheet",
)
VALIDATION_OBJECT_FAMILIES: tuple[str, ...] = (
    "traffic_cone", "barrel", "tied_sack", "furniture_silhouette", "fallen_branch",
)


@dataclass
class Sprite:
    """An object cut-out: RGB, its mask (the rasterised ``polygon``) and the outline in local (x, y) pixels."""

    family: str
    rgb: np.ndarray
    mask: np.ndarray
    polygon: np.ndarray


def saturated_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(200, 256), rng.integers(200, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def any_colour(rng: np.random.Generator) -> np.ndarray:
    """Any hue, saturation 0-255 and value 40-255: greys, browns and muted tones as often as vivid ones."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(0, 256), rng.integers(40, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _cellular(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Voronoi edge distance in [0, 1] (F2 - F1 of the two nearest seeds): cracked-stone / cobble texture."""
    seeds = rng.uniform(0, 1, (cells, 2)) * [w, h]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt((xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2)
    d.sort(axis=-1)
    edge = d[..., 1] - d[..., 0]
    return np.clip(edge / (edge.max() + 1e-6) * 3.0, 0, 1)


def _blob_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, n: int = 14,
                  rough: float = 0.25) -> np.ndarray:
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = 1.0 - rough * rng.random(n)
    return np.stack([cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)], 1)


def _mask_to_polygon(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise ValueError("sprite mask is empty")
    return max(contours, key=cv2.contourArea).reshape(-1, 2)


@dataclass
class _SpriteCanvas:
    """What every painter draws on: the float RGB (painted in place), a smooth noise field, pixel coordinates."""

    rgb: np.ndarray  # float32 [s, s, 3]
    noise: np.ndarray  # float32 [s, s]
    yy: np.ndarray
    xx: np.ndarray
    size: int


def _paint_rock(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    poly = _blob_polygon(rng, w / 2, h * 0.6, w * 0.48, h * rng.uniform(0.25, 0.4), 16, 0.3)
    base = jitter_colour(rng, rng.choice([(120, 115, 110), (130, 110, 85), (90, 88, 85), (150, 140, 120)]), 10)
    cell = _cellular(rng, h, w, int(rng.integers(6, 14)))
    light = 1.15 - 0.5 * (yy / h)
    rgb[:] = base * ((0.6 + 0.4 * cell) * light)[..., None] + 10 * noise[..., None]
    return poly


def _paint_cardboard_box(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    bw, bh, d = w * rng.uniform(0.55, 0.7), h * rng.uniform(0.4, 0.6), w * rng.uniform(0.15, 0.3)
    x0, y1 = 1.0, h - 2.0
    front = np.array([(x0, y1 - bh), (x0 + bw, y1 - bh), (x0 + bw, y1), (x0, y1)])
    top = np.array([(x0, y1 - bh), (x0 + d, y1 - bh - d * 0.7), (x0 + bw + d, y1 - bh - d * 0.7), (x0 + bw, y1 - bh)])
    side = np.array([(x0 + bw, y1 - bh), (x0 + bw + d, y1 - bh - d * 0.7), (x0 + bw + d, y1 - d * 0.7), (x0 + bw, y1)])
    poly = hull(np.concatenate([front, top, side]))
    tan = jitter_colour(rng, (175, 135, 85), 12)
    for face, k in ((front, 1.0), (top, 1.2), (side, 0.75)):
        cv2.fillPoly(rgb, [np.round(face).astype(np.int32)], tuple(float(v) for v in tan * k))
    tape = max(1, int(bw * 0.08))
    cx = int(x0 + bw / 2)
    cv2.rectangle(rgb, (cx - tape, int(y1 - bh)), (cx + tape, int(y1)), (200, 190, 160), -1)
    rgb += 8 * noise[..., None]
    return poly


def _paint_tyre(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    ry = h * 0.48 * (rng.uniform(0.35, 0.55) if rng.random() < 0.5 else 1.0)
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    poly = np.stack([w / 2 + w * 0.48 * np.cos(ang), h / 2 + ry * np.sin(ang)], 1)
    r = np.sqrt(((xx - w / 2) / (w * 0.48)) ** 2 + ((yy - h / 2) / ry) ** 2)
    tread = 0.8 + 0.2 * np.sign(np.sin(np.arctan2(yy - h / 2, xx - w / 2) * 24))
    rgb[:] = np.where((r < 0.45)[..., None], [120, 120, 125], np.where((r < 0.6)[..., None], [35, 35, 38],
                      np.array([28, 28, 30]) * tread[..., None]))
    rgb += 6 * noise[..., None]
    return poly


def _paint_animal(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    body = np.zeros((h, w), np.uint8)
    bcx, bcy, brx, bry = w * 0.45, h * 0.45, w * 0.3, h * rng.uniform(0.14, 0.22)
    cv2.ellipse(body, (int(bcx), int(bcy)), (int(brx), int(bry)), 0, 0, 360, 1, -1)
    hx, hy, hr = int(bcx + brx * 1.05), int(bcy - bry * 0.9), max(2, int(h * rng.uniform(0.09, 0.13)))
    cv2.circle(body, (hx, hy), hr, 1, -1)
    cv2.line(body, (int(bcx + brx * 0.6), int(bcy)), (hx, hy), 1, max(2, hr))
    for lx in (bcx - brx * 0.7, bcx - brx * 0.4, bcx + brx * 0.4, bcx + brx * 0.7):
        cv2.line(body, (int(lx), int(bcy)), (int(lx + rng.uniform(-2, 2)), int(h * 0.92)), 1, max(1, int(w * 0.05)))
    cv2.line(body, (int(bcx - brx), int(bcy)), (int(bcx - brx * 1.4), int(bcy - bry * rng.uniform(-0.5, 1.2))), 1,
             max(1, int(w * 0.03)))
    poly = _mask_to_polygon(body).astype(np.float64)
    fur = jitter_colour(rng, rng.choice([(140, 95, 55), (225, 220, 205), (45, 38, 32), (190, 120, 60)]), 12)
    spot = jitter_colour(rng, rng.choice([(40, 30, 25), (240, 235, 225), (110, 70, 40)]), 10)
    spots = (smooth_noise(rng, h, w, 10) > 0.5)[..., None]
    rgb[:] = np.where(spots, spot, fur) * (1.0 + 0.08 * noise[..., None])
    rgb *= (1.1 - 0.3 * (yy / h))[..., None]
    return poly


def _paint_wooden_crate(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    cw, ch = w * rng.uniform(0.8, 0.97), h * rng.uniform(0.5, 0.8)
    x0, y0 = (w - cw) / 2, h - ch - 1
    poly = np.array([(x0, y0), (x0 + cw, y0), (x0 + cw, y0 + ch), (x0, y0 + ch)])
    wood = jitter_colour(rng, rng.choice([(160, 115, 70), (185, 150, 100), (120, 85, 50)]), 10)
    grain = 0.85 + 0.15 * np.sin(yy * rng.uniform(0.8, 1.5) + 3 * noise)
    planks = int(rng.integers(3, 6))
    gap = (np.mod((yy - y0) / ch * planks, 1.0) < 0.08)
    rgb[:] = wood * (grain * np.where(gap, 0.45, 1.0))[..., None]
    cv2.line(rgb, (int(x0), int(y0 + ch)), (int(x0 + cw), int(y0)), tuple(float(v) for v in wood * 0.7),
             max(1, int(s * 0.06)))
    return poly


def _paint_checker_polygon(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    poly = hull(rng.uniform([0, 0], [w - 1, h - 1], (9, 2)))
    a, b = saturated_colour(rng), saturated_colour(rng)
    cell = max(2, int(s / rng.integers(3, 8)))
    check = ((xx // cell + yy // cell) % 2).astype(bool)[..., None]
    rgb[:] = np.where(check, a, b)
    return poly


def _paint_striped_ellipse(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    ang = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    rot = rng.uniform(0, np.pi)
    ex, ey = w * 0.48, h * rng.uniform(0.2, 0.48)
    px, py = ex * np.cos(ang), ey * np.sin(ang)
    poly = np.stack([w / 2 + px * np.cos(rot) - py * np.sin(rot), h / 2 + px * np.sin(rot) + py * np.cos(rot)], 1)
    cols = np.stack([saturated_colour(rng) for _ in range(int(rng.integers(2, 4)))])
    t = rng.uniform(0, np.pi)
    band = (((xx * np.cos(t) + yy * np.sin(t)) / max(2.0, s / rng.integers(4, 10))).astype(int) % len(cols))
    rgb[:] = cols[band]
    return poly


def _paint_polka_star(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    k = int(rng.integers(5, 9))
    ang = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * k) % 2 == 0, 0.48, rng.uniform(0.2, 0.35)) * s
    poly = np.stack([w / 2 + rad * np.cos(ang), h / 2 + rad * np.sin(ang)], 1)
    a, b = saturated_colour(rng), saturated_colour(rng)
    step = max(3.0, s / rng.integers(4, 8))
    dots = ((np.mod(xx, step) - step / 2) ** 2 + (np.mod(yy, step) - step / 2) ** 2) < (step * 0.3) ** 2
    rgb[:] = np.where(dots[..., None], b, a)
    return poly


def _paint_gradient_crescent(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    ang = np.linspace(-0.75 * np.pi, 0.75 * np.pi, 16)
    outer = np.stack([w / 2 + 0.48 * w * np.cos(ang), h / 2 + 0.48 * h * np.sin(ang)], 1)
    inner = np.stack([w / 2 + 0.1 * w + 0.36 * w * np.cos(ang[::-1]), h / 2 + 0.36 * h * np.sin(ang[::-1])], 1)
    poly = np.concatenate([outer, inner])
    hue = ((xx / w * 179 + rng.integers(0, 180)) % 180).astype(np.uint8)
    hsv = np.stack([hue, np.full_like(hue, 255), np.full_like(hue, 230)], -1)
    rgb[:] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    return poly


def _paint_noise_blob(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    poly = _blob_polygon(rng, w / 2, h / 2, w * 0.48, h * rng.uniform(0.25, 0.48), 18, 0.35)
    a, b = any_colour(rng), any_colour(rng)
    mix = np.clip(0.6 * smooth_noise(rng, h, w, int(rng.integers(3, 7))) + 0.4 * smooth_noise(rng, h, w, 16), 0, 1)
    rgb[:] = a * (1 - mix[..., None]) + b * mix[..., None]
    return poly


def _paint_shaded_polygon(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    poly = hull(rng.uniform([0, 0], [w - 1, h - 1], (int(rng.integers(4, 9)), 2)))
    t = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t)) / s
    rgb[:] = any_colour(rng) * np.clip(1.0 + rng.uniform(0.3, 0.9) * ramp, 0.3, 1.6)[..., None] + 6 * noise[..., None]
    return poly


def _paint_thin_bar(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    half = rng.uniform(0.03, 0.1) * s
    t = rng.uniform(0, np.pi)
    d = np.array([np.cos(t), np.sin(t)]) * 0.48 * s
    n = np.array([-np.sin(t), np.cos(t)]) * half
    c0 = np.array([w / 2, h / 2])
    poly = np.array([c0 - d - n, c0 + d - n, c0 + d + n, c0 - d + n])
    across = ((xx - w / 2) * -np.sin(t) + (yy - h / 2) * np.cos(t)) / max(half, 1.0)
    rgb[:] = any_colour(rng) * np.clip(1.1 - 0.35 * across, 0.4, 1.5)[..., None]
    return poly


def _paint_patchwork(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    poly = _blob_polygon(rng, w / 2, h / 2, w * 0.48, h * rng.uniform(0.3, 0.48), 12, 0.2)
    rgb[:] = any_colour(rng)
    for _ in range(int(rng.integers(6, 20))):
        pts = np.round(rng.uniform([0, 0], [w - 1, h - 1], (3, 2)) if rng.random() < 0.5 else
                       _blob_polygon(rng, *rng.uniform(0, [w, h]), *(rng.uniform(0.05, 0.3, 2) * s), 6, 0.3))
        cv2.fillPoly(rgb, [pts.astype(np.int32)], tuple(float(v) for v in any_colour(rng)))
    rgb += 10 * noise[..., None]
    return poly


def _paint_plus_cross(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    rgb, noise, yy, xx, s = c.rgb, c.noise, c.yy, c.xx, c.size
    h = w = s
    a = rng.uniform(0.12, 0.22) * s
    base = np.array([(-a, -0.48 * s), (a, -0.48 * s), (a, -a), (0.48 * s, -a), (0.48 * s, a), (a, a),
                     (a, 0.48 * s), (-a, 0.48 * s), (-a, a), (-0.48 * s, a), (-0.48 * s, -a), (-a, -a)])
    t = rng.uniform(0, np.pi / 2)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    poly = base @ rot.T * 0.95 + [w / 2, h / 2]
    rgb[:] = saturated_colour(rng)
    return poly


def _paint_shaded_sphere(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A ball lit from one side: smooth Lambertian shading with a specular spot, no texture."""
    yy, xx, s = c.yy, c.xx, c.size
    r = s * 0.48
    ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    poly = np.stack([s / 2 + r * np.cos(ang), s / 2 + r * np.sin(ang)], 1)
    nx, ny = (xx - s / 2) / r, (yy - s / 2) / r
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, 1))
    t = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(t) * 0.5, np.sin(t) * 0.5, 0.7])
    lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    spec = np.clip(lam, 0, 1) ** 20 * rng.uniform(60, 160)
    c.rgb[:] = any_colour(rng) * (0.25 + 0.9 * lam)[..., None] + spec[..., None]
    return poly


def _paint_capsule(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A bottle- or can-like rounded bar at any angle, shaded as a cylinder with a highlight stripe."""
    yy, xx, s = c.yy, c.xx, c.size
    half_len, rad = s * 0.46, s * rng.uniform(0.1, 0.24)
    t = rng.uniform(0, np.pi)
    u = np.array([np.cos(t), np.sin(t)])
    axis = (xx - s / 2) * u[0] + (yy - s / 2) * u[1]
    across = (-(xx - s / 2) * u[1] + (yy - s / 2) * u[0]) / rad
    ang = np.linspace(-np.pi / 2, np.pi / 2, 9)
    a = half_len - rad
    cap1 = np.stack([a + rad * np.cos(ang), rad * np.sin(ang)], 1)
    cap2 = np.stack([-a - rad * np.cos(ang), -rad * np.sin(ang)], 1)
    local = np.concatenate([cap1, cap2])
    poly = local @ np.array([[u[0], u[1]], [-u[1], u[0]]]) + s / 2
    shade = np.sqrt(np.clip(1 - across ** 2, 0, 1))
    hi = np.exp(-((across - rng.uniform(-0.6, 0.6)) / 0.15) ** 2) * rng.uniform(40, 120)
    body = any_colour(rng)
    band = np.abs(axis) < s * rng.uniform(0.0, 0.2)  # a label band (zero width for half of them)
    rgb = np.where(band[..., None], any_colour(rng), body)
    c.rgb[:] = rgb * (0.3 + 0.8 * shade)[..., None] + hi[..., None]
    return poly


def _paint_marbled_slab(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A flat slab with marble veins (a sine of turbulent noise): long smooth veins, not cells or grain."""
    noise, yy, xx, s = c.noise, c.yy, c.xx, c.size
    poly = hull(rng.uniform([0, 0], [s - 1, s - 1], (int(rng.integers(4, 7)), 2)))
    t = rng.uniform(0, np.pi)
    turb = smooth_noise(rng, s, s, int(rng.integers(3, 6)))
    phase = (xx * np.cos(t) + yy * np.sin(t)) / s * rng.uniform(4, 10) * np.pi + rng.uniform(3, 8) * turb
    vein = np.abs(np.sin(phase)) ** 0.3
    a, b = any_colour(rng), any_colour(rng)
    c.rgb[:] = a * vein[..., None] + b * (1 - vein[..., None]) + 6 * noise[..., None]
    return poly


def _paint_plaid_cloth(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """Draped cloth: a soft outline with a tartan of two crossing stripe sets in two to three colours."""
    noise, yy, xx, s = c.noise, c.yy, c.xx, c.size
    poly = _blob_polygon(rng, s / 2, s / 2, s * 0.48, s * rng.uniform(0.3, 0.48), 10, 0.3)
    period = max(4.0, s / rng.integers(2, 5))
    warp = 0.3 * period * smooth_noise(rng, s, s, 3)
    cols = np.stack([any_colour(rng) for _ in range(int(rng.integers(2, 4)))])
    sx = ((xx + warp) // (period / 2)).astype(int) % len(cols)
    sy = ((yy + warp) // (period / 2)).astype(int) % len(cols)
    c.rgb[:] = 0.5 * cols[sx] + 0.5 * cols[sy]
    c.rgb *= (0.85 + 0.3 * noise)[..., None]  # folds
    return poly


def _paint_glyph_sign(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A plate carrying rows of glyph-like strokes (text or symbols) in a contrasting colour."""
    s = c.size
    w, h = s * rng.uniform(0.6, 0.96), s * rng.uniform(0.35, 0.9)
    x0, y0 = (s - w) / 2, (s - h) / 2
    poly = np.array([(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)])
    c.rgb[:] = any_colour(rng)
    ink = tuple(float(v) for v in any_colour(rng))
    rows = int(rng.integers(1, 4))
    gh = h / (rows + 1)
    thick = max(1, int(gh * 0.15))
    for r in range(rows):
        cy = y0 + gh * (r + 0.5) + gh * 0.25
        x = x0 + gh * 0.3
        while x < x0 + w - gh * 0.6:
            pts = np.round(np.stack([x + rng.uniform(0, gh * 0.5, 3), cy + rng.uniform(-gh * 0.35, gh * 0.35, 3)], 1))
            cv2.polylines(c.rgb, [pts.astype(np.int32)], False, ink, thick)
            x += gh * rng.uniform(0.55, 0.8)
    return poly


def _paint_crumpled_sheet(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A crumpled sheet or plastic bag: flat triangular facets, each lit differently, in one colour."""
    s = c.size
    poly = _blob_polygon(rng, s / 2, s / 2, s * 0.48, s * rng.uniform(0.3, 0.48), 9, 0.35)
    centre = poly.mean(0) + rng.uniform(-0.1, 0.1, 2) * s
    base = any_colour(rng)
    ring = np.concatenate([poly, poly[:1]])
    for a, b in zip(ring[:-1], ring[1:]):
        mid = centre + rng.uniform(0.2, 0.7) * ((a + b) / 2 - centre)
        for tri in ((centre, a, mid), (mid, a, b), (centre, mid, b)):
            cv2.fillPoly(c.rgb, [np.round(np.array(tri)).astype(np.int32)], tuple(float(v) for v in base * rng.uniform(0.5, 1.3)))
    c.rgb += 5 * c.noise[..., None]
    return poly


def _paint_traffic_cone(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A cone on a square foot: a warning colour with one or two pale reflective bands, shaded across."""
    s = c.size
    top, base = s * rng.uniform(0.03, 0.08), s * rng.uniform(0.36, 0.48)
    y0, y1, foot = s * 0.02, s * 0.9, s * 0.98
    poly = np.array([(s / 2 - top, y0), (s / 2 + top, y0), (s / 2 + base, y1), (s / 2 + base * 1.08, y1),
                     (s / 2 + base * 1.08, foot), (s / 2 - base * 1.08, foot), (s / 2 - base * 1.08, y1),
                     (s / 2 - base, y1)])
    warning = np.float32([(240, 110, 20), (250, 200, 30), (210, 40, 30), (160, 220, 40)])[rng.integers(4)]
    v = (c.yy - y0) / (y1 - y0)
    band = np.zeros_like(v, bool)
    for centre in rng.choice([0.3, 0.5, 0.7], int(rng.integers(1, 3)), replace=False):
        band |= np.abs(v - centre) < 0.07
    across = np.clip(np.abs(c.xx - s / 2) / (top + (base - top) * np.clip(v, 0, 1) + 1e-3), 0, 1)
    rgb = np.where(band[..., None], np.float32([235, 235, 230]), warning)
    c.rgb[:] = rgb * (1.0 - 0.45 * across ** 2)[..., None] + 4 * c.noise[..., None]
    return poly


def _paint_barrel(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """An upright drum: a cylinder with elliptical rims, shaded across, with two or three darker hoops."""
    s = c.size
    half, ry = s * rng.uniform(0.28, 0.46), s * rng.uniform(0.04, 0.1)
    y0, y1 = s * 0.02 + ry, s * 0.98 - ry
    ang = np.linspace(0, np.pi, 12)
    top = np.stack([s / 2 - half * np.cos(ang), y0 - ry * np.sin(ang)], 1)
    bottom = np.stack([s / 2 + half * np.cos(ang), y1 + ry * np.sin(ang)], 1)
    poly = np.concatenate([top, bottom])
    body = any_colour(rng)
    hoops = np.zeros_like(c.yy, bool)
    for h in np.linspace(0.2, 0.8, int(rng.integers(2, 4))):
        hoops |= np.abs(c.yy - (y0 + h * (y1 - y0))) < max(1.0, s * 0.02)
    shade = np.sqrt(np.clip(1 - ((c.xx - s / 2) / half) ** 2, 0, 1))
    rgb = np.where(hoops[..., None], body * 0.55, body)
    c.rgb[:] = rgb * (0.35 + 0.75 * shade)[..., None] + 5 * c.noise[..., None]
    return poly


def _paint_tied_sack(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A filled sack tied at the neck: a lumpy body, a narrow neck and a flared top, in a fine woven weave."""
    s = c.size
    cx, cy, rx, ry = s / 2, s * 0.62, s * rng.uniform(0.34, 0.48), s * 0.34
    ang = np.linspace(-np.pi / 2 + 0.45, 1.5 * np.pi - 0.45, 14)  # around the bottom, open at the neck
    rad = 1.0 - 0.12 * rng.random(ang.size)
    body = np.stack([cx + rx * rad * np.cos(ang), cy + ry * rad * np.sin(ang)], 1)
    neck_w, flare = s * rng.uniform(0.04, 0.08), s * rng.uniform(0.1, 0.18)
    neck = np.array([(cx - neck_w, s * 0.3), (cx - flare, s * 0.04), (cx + flare, s * 0.04), (cx + neck_w, s * 0.3)])
    poly = np.concatenate([body, neck])
    period = rng.uniform(2.5, 4.5)
    weave = 0.5 + 0.25 * (np.sin(c.xx * np.pi / period) * np.sin(c.yy * np.pi / period))
    fold = 0.8 + 0.35 * c.noise
    c.rgb[:] = any_colour(rng) * (weave * fold)[..., None] + 40
    return poly


def _paint_furniture_silhouette(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A dumped chair or table seen from the side: a concave outline of legs, seat and back in one flat material
    with a lit top edge."""
    s = c.size
    leg, seat_y, seat_h = s * rng.uniform(0.05, 0.1), s * rng.uniform(0.45, 0.6), s * rng.uniform(0.06, 0.12)
    x0, x1, bottom = s * 0.05, s * 0.95, s * 0.98
    back_top = s * 0.03 if rng.random() < 0.6 else seat_y  # a chair has a back, a table none
    poly = np.array([(x0, back_top), (x0 + leg, back_top), (x0 + leg, seat_y), (x1, seat_y), (x1, bottom),
                     (x1 - leg, bottom), (x1 - leg, seat_y + seat_h), (x0 + leg, seat_y + seat_h),
                     (x0 + leg, bottom), (x0, bottom)])
    material = any_colour(rng)
    lit = (np.abs(c.yy - seat_y) < max(1.0, s * 0.02)) | (np.abs(c.xx - x0) < max(1.0, s * 0.015))
    c.rgb[:] = np.where(lit[..., None], np.minimum(material * 1.4 + 30, 255), material) + 5 * c.noise[..., None]
    return poly


def _paint_fallen_branch(rng: np.random.Generator, c: _SpriteCanvas) -> np.ndarray:
    """A bent branch lying across: a tapering, kinked limb with bark streaks along it (not a straight bar)."""
    s = c.size
    n = 6
    xs = np.linspace(s * 0.04, s * 0.96, n)
    ys = s / 2 + np.cumsum(rng.uniform(-0.12, 0.12, n)) * s
    ys = np.clip(ys - ys.mean() + s / 2, s * 0.15, s * 0.85)
    width = np.linspace(s * rng.uniform(0.08, 0.14), s * 0.03, n)
    upper = np.stack([xs, ys - width], 1)
    lower = np.stack([xs, ys + width], 1)[::-1]
    poly = np.concatenate([upper, lower])
    along = np.interp(c.xx, xs, ys)
    streak = 0.75 + 0.25 * np.sin((c.yy - along) * rng.uniform(1.2, 2.4) + 3 * c.noise)
    bark = np.float32([(95, 75, 55), (120, 110, 95), (70, 60, 50), (140, 120, 90)])[rng.integers(4)]
    c.rgb[:] = bark * streak[..., None] * rng.uniform(0.8, 1.2)
    return poly


Painter = Callable[[np.random.Generator, _SpriteCanvas], np.ndarray]
#: family -> painter: draws the texture into the canvas (in place) and returns the outline polygon.
PAINTERS: dict[str, Painter] = {
    "rock": _paint_rock,
    "cardboard_box": _paint_cardboard_box,
    "tyre": _paint_tyre,
    "animal": _paint_animal,
    "wooden_crate": _paint_wooden_crate,
    "checker_polygon": _paint_checker_polygon,
    "striped_ellipse": _paint_striped_ellipse,
    "polka_star": _paint_polka_star,
    "gradient_crescent": _paint_gradient_crescent,
    "noise_blob": _paint_noise_blob,
    "shaded_polygon": _paint_shaded_polygon,
    "thin_bar": _paint_thin_bar,
    "patchwork": _paint_patchwork,
    "plus_cross": _paint_plus_cross,
    "shaded_sphere": _paint_shaded_sphere,
    "capsule": _paint_capsule,
    "marbled_slab": _paint_marbled_slab,
    "plaid_cloth": _paint_plaid_cloth,
    "glyph_sign": _paint_glyph_sign,
    "crumpled_sheet": _paint_crumpled_sheet,
    "traffic_cone": _paint_traffic_cone,
    "barrel": _paint_barrel,
    "tied_sack": _paint_tied_sack,
    "furniture_silhouette": _paint_furniture_silhouette,
    "fallen_branch": _paint_fallen_branch,
}


def make_sprite(family: str, size: int, rng: np.random.Generator | int) -> Sprite:
    """Draw one object of ``family`` whose longer side is about ``size`` pixels (see module docstring)."""
    if family not in PAINTERS:
        raise ValueError(f"unknown sprite family {family!r}; expected one of {tuple(PAINTERS)}")
    if size < 6:
        raise ValueError(f"sprite size must be >= 6 pixels, got {size}")
    rng = np.random.default_rng(rng)
    s = int(size)
    h = w = s
    rgb = np.zeros((h, w, 3), np.float32)
    shape = np.zeros((h, w), np.uint8)
    noise = smooth_noise(rng, h, w, 6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    poly = PAINTERS[family](rng, _SpriteCanvas(rgb, noise, yy, xx, s))
    poly = np.clip(np.round(poly), 0, [w - 1, h - 1]).astype(np.int32)
    cv2.fillPoly(shape, [poly], 1)
    if family in OUTLINED_POOL_FAMILIES:  # crisp dark outline (see OUTLINED_POOL_FAMILIES)
        cv2.polylines(rgb, [poly], True, (20, 20, 20), max(1, s // 40))
    return Sprite(family=family, rgb=np.clip(rgb, 0, 255).astype(np.uint8), mask=shape.astype(bool), polygon=poly)


def paste_sprite(image: np.ndarray, sprite: Sprite, top_left: tuple[int, int], soft: float = 0.0,
                 shadow: float = 0.0) -> np.ndarray:
    """Paste ``sprite`` into ``image`` (in place) with its top-left corner at (x, y); returns the frame mask.

    ``soft`` > 0 blends the border with a Gaussian alpha of that sigma (Fishyscapes-Static-like blending); the
    returned mask is always the hard sprite mask clipped to the frame. ``shadow`` darkens a band below the object.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    ih, iw = image.shape[:2]
    sh, sw = sprite.mask.shape
    x, y = int(top_left[0]), int(top_left[1])
    fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + sw, iw), min(y + sh, ih)
    frame_mask = np.zeros((ih, iw), bool)
    if fx1 <= fx0 or fy1 <= fy0:
        return frame_mask
    sl_s = (slice(fy0 - y, fy1 - y), slice(fx0 - x, fx1 - x))
    region = image[fy0:fy1, fx0:fx1].astype(np.float32)
    if shadow > 0:
        sm = np.zeros_like(sprite.mask, np.float32)
        sm[-max(1, sh // 6):] = sprite.mask[-max(1, sh // 6):]
        sm = cv2.GaussianBlur(sm, (0, 0), max(1.0, sw / 15))[sl_s]
        region *= (1 - shadow * np.clip(sm * 2, 0, 1))[..., None]
    alpha = sprite.mask.astype(np.float32)
    if soft > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), soft) * sprite.mask
        alpha = np.clip(alpha * 1.5, 0, 1)
    a = alpha[sl_s][..., None]
    region = region * (1 - a) + sprite.rgb[sl_s].astype(np.float32) * a
    image[fy0:fy1, fx0:fx1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    frame_mask[fy0:fy1, fx0:fx1] = sprite.mask[sl_s]
    return frame_mask
