"""Seeded procedural road scenes with exact Cityscapes labels (the objects pasted into them: sprites.py).

Why: no real dataset can be downloaded here, yet training, evaluation and the demo need images whose labels follow
the real Cityscapes conventions (label ids incl. void content, instance ids, polygons). ``render_scene`` draws a
perspective street (road with lane markings, sidewalks, parking, facades with windows, walls, fences, trees,
terrain, sky, poles, signs, traffic lights, cars, trucks, buses, persons, riders on bicycles/motorcycles, void
``static``/``dynamic``/``ground`` objects, an ``out of roi`` frame and the ``ego vehicle`` hood) with random
geometry, palettes and lighting.

Labels are exact by construction: every object is one polygon with a Cityscapes label name, drawn in order with
PIL's polygon fill (the same call ``cityscapesscripts.preparation.json2labelImg.createLabelImage`` uses), so the
``labelIds`` / ``instanceIds`` arrays equal what the official tools produce from ``Scene.polygons_json()``.
The RGB is painted with OpenCV into the same polygons (edges may differ by a pixel, like real annotations).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS, name2label
from PIL import Image, ImageDraw

from dsa_core.labels import id_to_train_id_lut

#: labelId -> RGB colour of the official colour encoding.
ID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
for _label in CS_LABELS:
    if _label.id >= 0:
        ID_TO_COLOR[_label.id] = _label.color

CONDITIONS: tuple[str, ...] = ("day", "dusk", "fog")
#: The ego vehicle's hood covers at most this share of the bottom rows (what a camera's ego mask must cover).
EGO_HOOD_MAX_FRACTION = 0.14
#: The ego mask a vehicle team would set for this camera (ObstacleSettings.ego_mask_bottom_fraction): the hood plus
#: one percent of margin. The demo, the drive diagnosis and the recipe's calibration use it.
EGO_MASK_BOTTOM_FRACTION = round(EGO_HOOD_MAX_FRACTION + 0.01, 3)

Painter = Callable[[np.ndarray, np.ndarray, int, int], None]


@dataclass
class SceneObject:
    """One annotated polygon: Cityscapes label name and integer vertices (x, y) in drawing order."""

    label: str
    polygon: np.ndarray


@dataclass
class Scene:
    """A rendered frame: RGB uint8, Cityscapes labelIds (uint8), instanceIds (int32) and its polygons."""

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    objects: list[SceneObject]
    horizon: int
    road_mask: np.ndarray | None = field(repr=False, default=None)  # pixels labelled road (obstacle placement)
    camera_height: float = 1.5  # metres; with the horizon row this gives object sizes by distance

    def pixels_per_metre(self, row: float) -> float:
        """Image scale of an object standing on the (flat) ground with its base at image ``row``.

        Pinhole over flat ground: z = f * hc / (row - horizon), so f / z = (row - horizon) / hc. Lets benchmark
        generators size obstacles plausibly for where they are placed.
        """
        if row <= self.horizon:
            raise ValueError(f"row {row} is at or above the horizon ({self.horizon}): no ground there")
        return (row - self.horizon) / self.camera_height

    def polygons_json(self) -> dict:
        """The ``*_gtFine_polygons.json`` content (objects in drawing order; later polygons win)."""
        h, w = self.label_ids.shape
        return {
            "imgHeight": int(h),
            "imgWidth": int(w),
            "objects": [
                {"label": o.label, "polygon": o.polygon.astype(int).tolist(), "deleted": 0, "verified": 0,
                 "date": "", "user": "dsa-synth"}
                for o in self.objects
            ],
        }

    def label_train_ids(self) -> np.ndarray:
        return id_to_train_id_lut()[self.label_ids]


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in about [-1, 1]: a coarse random grid upsampled bicubically (cheap, seeded)."""
    gh, gw = max(2, cells * h // max(h, w) + 2), max(2, cells * w // max(h, w) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), -2.5, 2.5) / 1.5


class _Canvas:
    """Draws labelled polygons: PIL owner-index image for labels (exact), OpenCV masks for paint."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.h, self.w, self.rng = h, w, rng
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.owner = Image.new("I", (w, h), 0)
        self.draw = ImageDraw.Draw(self.owner)
        self.objects: list[SceneObject] = []
        self.noise = np.stack([smooth_noise(rng, h, w, 24), smooth_noise(rng, h, w, 96)], -1)
        self.grain = rng.standard_normal((h, w), dtype=np.float32)
        self.tex = np.zeros((h, w, 3), np.float32)
        self.gamma = 1.0

    def add(self, label: str, pts: np.ndarray, paint: Painter | np.ndarray | tuple,
            tex: tuple[float, float, float] = (0.08, 0.04, 3.0)) -> bool:
        """Append a polygon with Cityscapes ``label``.

        ``paint`` is a flat colour (texture added once for the whole frame in ``finish_rgb`` with this polygon's
        ``tex`` = (coarse noise, fine noise, grain) amplitudes) or a painter(rgb, mask, x0, y0) for structured
        content. Returns whether the polygon touches the frame (polygons entirely outside are not recorded).
        """
        if label not in name2label:
            raise KeyError(f"unknown Cityscapes label {label!r}")
        pts = np.round(np.asarray(pts, np.float64)).astype(np.int32).reshape(-1, 2)
        x0, y0 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
        x1, y1 = min(int(pts[:, 0].max()) + 1, self.w), min(int(pts[:, 1].max()) + 1, self.h)
        if x1 <= x0 or y1 <= y0 or len(pts) < 3:
            return False  # entirely outside the frame: not annotated (draws nothing in the official tools either)
        self.objects.append(SceneObject(label, pts))
        self.draw.polygon([(int(x), int(y)) for x, y in pts], fill=len(self.objects))
        cv2.fillPoly(self.tex, [pts], tex)
        if not callable(paint):
            cv2.fillPoly(self.rgb, [pts], tuple(float(v) for v in np.asarray(paint, np.float32)))
            return True
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [pts - np.array([x0, y0], np.int32)], 1)
        mask = mask.astype(bool)
        paint(self.rgb, mask, x0, y0)
        return True

    def finish_rgb(self) -> None:
        """Apply every polygon's texture amplitudes in one full-frame pass (cheap regardless of object count)."""
        t = self.tex
        shade = 1.0 + t[..., 0] * self.noise[..., 0] + t[..., 1] * self.noise[..., 1]
        self.rgb *= shade[..., None]
        self.rgb += (t[..., 2] * self.grain)[..., None]

    def decal(self, pts: np.ndarray, colour, alpha: float = 1.0) -> None:
        """Paint RGB only (details that belong to the label underneath: windows, wheels, markings)."""
        pts = np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 2)
        if alpha >= 1.0:
            cv2.fillPoly(self.rgb, [pts], tuple(float(c) for c in colour))
            return
        x0, y0 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
        x1, y1 = min(int(pts[:, 0].max()) + 1, self.w), min(int(pts[:, 1].max()) + 1, self.h)
        if x1 <= x0 or y1 <= y0:
            return
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [pts - np.array([x0, y0], np.int32)], 1)
        reg = self.rgb[y0:y1, x0:x1]
        sel = m.astype(bool)
        reg[sel] = reg[sel] * (1 - alpha) + np.asarray(colour, np.float32) * alpha

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        owner = np.asarray(self.owner, dtype=np.int64)
        lut_id = np.zeros(len(self.objects) + 1, np.int32)
        lut_inst = np.zeros(len(self.objects) + 1, np.int32)
        counts: dict[str, int] = {}
        for i, obj in enumerate(self.objects, start=1):
            lab = name2label[obj.label]
            lut_id[i] = lab.id
            if lab.hasInstances:  # same numbering as cityscapesscripts' createInstanceImage
                lut_inst[i] = lab.id * 1000 + counts.get(obj.label, 0)
                counts[obj.label] = counts.get(obj.label, 0) + 1
            else:
                lut_inst[i] = lab.id
        return lut_id[owner].astype(np.uint8), lut_inst[owner]


@dataclass
class _Camera:
    """Pinhole camera over a flat ground: x = xv + f X / z, y = yh + f (hc - Y) / z."""

    f: float
    xv: float
    yh: float
    hc: float

    def p(self, x: float | np.ndarray, y: float | np.ndarray, z: float | np.ndarray) -> np.ndarray:
        z = np.asarray(z, float)
        u = self.xv + self.f * np.asarray(x, float) / z
        v = self.yh + self.f * (self.hc - np.asarray(y, float)) / z
        out = np.empty(np.broadcast_shapes(u.shape, v.shape) + (2,))
        out[..., 0], out[..., 1] = u, v
        return out

    def quad_side(self, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
        """A vertical rectangle in the plane X = x (a facade, wall or fence seen along the street)."""
        return self.p([x, x, x, x], [y0, y0, y1, y1], [z0, z1, z1, z0])

    def quad_front(self, x0: float, x1: float, z: float, y0: float, y1: float) -> np.ndarray:
        return self.p([x0, x1, x1, x0], [y0, y0, y1, y1], [z, z, z, z])

    def box_hull(self, x: float, z: float, w: float, h: float, length: float, y: float = 0.0) -> np.ndarray:
        xs, ys, zs = np.meshgrid([x - w / 2, x + w / 2], [y, y + h], [z, z + length], indexing="ij")
        return self.p(xs.ravel(), ys.ravel(), zs.ravel())


def hull(points: np.ndarray) -> np.ndarray:
    return cv2.convexHull(np.round(points).astype(np.float32)).reshape(-1, 2)


def jitter_colour(rng: np.random.Generator, base, spread: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(base, np.float32) + rng.normal(0, spread, 3), 0, 255)


CAR_PALETTE = [(160, 20, 25), (20, 40, 120), (190, 190, 195), (25, 25, 28), (235, 235, 235), (90, 95, 100),
               (30, 90, 50), (200, 140, 30), (120, 30, 90), (60, 110, 170)]
FACADE_PALETTE = [(150, 140, 130), (180, 160, 120), (120, 110, 105), (170, 90, 70), (200, 195, 185),
                  (95, 100, 110), (160, 170, 180), (140, 120, 90)]
CLOTH_PALETTE = [(30, 30, 35), (40, 50, 90), (150, 30, 30), (200, 200, 200), (60, 90, 60), (120, 80, 40),
                 (90, 90, 95), (190, 150, 40), (30, 80, 140)]


def render_scene(height: int, width: int, rng: np.random.Generator | int, condition: str = "day",
                 vehicle_camera: bool = True, clear_ego_lane_m: float = 0.0) -> Scene:
    """Render one seeded street scene of ``height`` x ``width`` pixels (see module docstring).

    ``condition`` ("day", "dusk", "fog") lets benchmark generators add a domain shift; training scenes use "day"
    (which already varies exposure, white balance and gamma). The labels do not depend on it.
    ``vehicle_camera=False`` leaves out what only a camera on a vehicle sees, the ego hood and the ``out of roi``
    frame (web photos such as Road Anomaly's have neither); the rest of the scene is the same rendering.
    ``clear_ego_lane_m`` moves the traffic of the camera's own lane that far further away (the same draws, so the rest
    of the scene is unchanged up to that lane's vehicle count): a drive's street with an obstacle on the road ahead
    needs no lead vehicle in front of it, or the obstacle would stand behind that vehicle.
    """
    if height < 32 or width < 32:
        raise ValueError(f"scene size must be at least 32x32, got {height}x{width}")
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    rng = np.random.default_rng(rng)
    c = _Canvas(height, width, rng)
    h, w = height, width
    cam = _Camera(f=w * rng.uniform(0.85, 1.2), xv=w * (0.5 + rng.uniform(-0.12, 0.12)),
                  yh=h * rng.uniform(0.36, 0.5), hc=rng.uniform(1.2, 1.7))
    z_far = 400.0

    _sky(c, cam, rng)
    ground = jitter_colour(rng, rng.choice([(100, 120, 60), (120, 110, 80), (90, 110, 70)]), 12)
    c.add("terrain", [(-w, cam.yh), (2 * w, cam.yh), (2 * w, 3 * h), (-w, 3 * h)], ground)
    _skyline(c, cam, rng)

    lane_w = rng.uniform(2.8, 3.6)
    lanes_left, lanes_right = int(rng.integers(0, 3)), int(rng.integers(1, 3))
    ego_offset = rng.uniform(-0.6, 0.6)
    road_l = -(lanes_left + 0.5) * lane_w + ego_offset
    road_r = (lanes_right - 0.5) * lane_w + ego_offset
    asphalt = jitter_colour(rng, rng.choice([(85, 85, 90), (110, 105, 105), (70, 72, 78), (125, 120, 118)]), 6)

    z_near = 0.5
    c.add("road", cam.p([road_l, road_r, road_r, road_l], 0, [z_near, z_near, z_far, z_far]), asphalt,
          tex=(0.07, 0.05, 4.0))
    _markings(c, cam, rng, road_l, road_r, lane_w, ego_offset, lanes_left, lanes_right, z_near)

    objects: list[tuple[float, Callable[[], None]]] = []  # (depth, draw) for painter's order far -> near
    for side, edge in ((-1, road_l), (1, road_r)):
        _roadside(c, cam, rng, side, edge, objects)
    _traffic(c, cam, rng, road_l, road_r, lane_w, ego_offset, lanes_left, lanes_right, objects, clear_ego_lane_m)
    for _, draw in sorted(objects, key=lambda t: -t[0]):
        draw()

    c.finish_rgb()
    _lighting(c, cam, rng)
    if rng.random() < 0.4:
        b = int(rng.integers(1, max(2, w // 100) + 1))  # drawn either way, so later draws do not change
        if vehicle_camera:
            for quad in ([(0, 0), (b, 0), (b, h), (0, h)], [(w - b, 0), (w, 0), (w, h), (w - b, h)],
                         [(0, 0), (w, 0), (w, b), (0, b)]):
                c.add("out of roi", quad, (0, 0, 0))
    _ego_hood(c, rng, draw=vehicle_camera)
    if condition != "day":  # last random draws touching the image only: labels equal the "day" rendering
        _condition(c, cam, rng, condition)

    label_ids, instance_ids = c.finish()
    image = np.clip(c.rgb, 0, 255).astype(np.uint8)
    image = cv2.LUT(image, (255.0 * (np.arange(256) / 255.0) ** c.gamma).round().astype(np.uint8))
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
    return Scene(image=image, label_ids=label_ids, instance_ids=instance_ids, objects=c.objects,
                 horizon=int(round(cam.yh)), road_mask=label_ids == name2label["road"].id, camera_height=cam.hc)


def _sky(c: _Canvas, cam: _Camera, rng: np.random.Generator) -> None:
    top = jitter_colour(rng, rng.choice([(70, 120, 200), (110, 150, 210), (150, 160, 175), (200, 170, 150)]), 15)
    bottom = np.clip(top + rng.uniform(30, 80), 0, 255)

    def paint(rgb, mask, x0, y0):
        hh, ww = mask.shape
        # The sky polygon is the first, full-width rectangle: its mask is the whole patch, so paint without it.
        t = np.linspace(0, 1, hh, dtype=np.float32)[:, None, None]
        cloud = np.maximum(c.noise[y0:y0 + hh, x0:x0 + ww, :1], 0)
        rgb[y0:y0 + hh, x0:x0 + ww] = (top * (1 - t) + bottom * t).astype(np.float32) + 25 * cloud

    c.add("sky", [(-c.w, -c.h), (2 * c.w, -c.h), (2 * c.w, cam.yh + 2), (-c.w, cam.yh + 2)], paint)


def _skyline(c: _Canvas, cam: _Camera, rng: np.random.Generator) -> None:
    """Distant frontal blocks or a tree line at the end of the street."""
    kind = rng.choice(["buildings", "trees", "none"], p=[0.5, 0.35, 0.15])
    if kind == "none":
        return
    z = rng.uniform(120, 250)
    x = -z * 1.5
    while x < z * 1.5:
        bw = rng.uniform(8, 30)
        if kind == "buildings":
            c.add("building", cam.quad_front(x, x + bw, z, 0, rng.uniform(8, 40)),
                  jitter_colour(rng, FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))], 10) * 0.85)
        else:
            top = cam.p(np.linspace(x + bw, x, 7), rng.uniform(6, 14, 7), z)
            c.add("vegetation", np.concatenate([cam.p([x, x + bw], [0, 0], z), top]),
                  jitter_colour(rng, (60, 90, 40), 10))
        x += bw


def _markings(c: _Canvas, cam: _Camera, rng, road_l, road_r, lane_w, ego_offset, nl, nr, z_near) -> None:
    white = np.array([225, 225, 220], np.float32) * rng.uniform(0.8, 1.0)
    lw = rng.uniform(0.1, 0.18)
    dash, gap = rng.uniform(2.0, 4.0), rng.uniform(4.0, 8.0)
    for k in range(-nl, nr):
        x = (k + 0.5) * lane_w + ego_offset
        if abs(x - road_l) < 0.5 or abs(x - road_r) < 0.5:
            continue
        colour = (220, 180, 40) if (k == -1 and nl > 0 and rng.random() < 0.3) else white
        z = z_near + rng.uniform(0, gap)
        while z < 120:
            c.add("road", cam.p([x - lw, x + lw, x + lw, x - lw], 0, [z, z, z + dash, z + dash]), colour)
            z += dash + gap
    for x in (road_l + 0.3, road_r - 0.3):
        if rng.random() < 0.7:
            c.add("road", cam.p([x - lw, x + lw, x + lw, x - lw], 0, [z_near, z_near, 150, 150]), white)
    if rng.random() < 0.25:  # zebra crossing
        z0 = rng.uniform(8, 25)
        x = road_l
        while x < road_r:
            c.add("road", cam.p([x, x + 0.5, x + 0.5, x], 0, [z0, z0, z0 + 3, z0 + 3]), white)
            x += 1.0


def _roadside(c: _Canvas, cam: _Camera, rng, side: int, edge: float, objects: list) -> None:
    """Parking strip, sidewalk, terrain, facades, walls, fences, trees and street furniture on one side."""
    z0 = 0.5
    x = edge
    if rng.random() < 0.2:  # parking strip (void 'parking' id 9)
        pw = rng.uniform(2.0, 2.5)
        c.add("parking", cam.p([x, x + side * pw, x + side * pw, x], 0, [z0, z0, 300, 300]),
              jitter_colour(rng, (120, 110, 110), 8))
        for zp in np.arange(rng.uniform(4, 10), 60, rng.uniform(6, 12)):
            objects.append((zp, _vehicle_fn(c, cam, rng, x + side * pw / 2, zp, "car", parked=True)))
        x += side * pw
    kerb = rng.uniform(0.15, 0.3)
    sw_w = rng.uniform(1.5, 4.0)
    if rng.random() < 0.85:
        c.add("sidewalk", cam.p([x, x + side * sw_w, x + side * sw_w, x], 0, [z0, z0, 300, 300]),
              jitter_colour(rng, rng.choice([(150, 140, 140), (175, 165, 160), (130, 125, 130)]), 8))
        c.decal(cam.p([x, x + side * kerb, x + side * kerb, x], 0, [z0, z0, 300, 300]), (190, 190, 185), 0.6)
        inner = x + side * sw_w
    else:
        inner = x + side * 0.5
    if rng.random() < 0.15:  # traffic island / gravel strip: void 'ground'
        c.add("ground", cam.p([x - side * 0.1, x + side * 0.6, x + side * 0.6, x - side * 0.1], 0,
                              [rng.uniform(5, 15), rng.uniform(5, 15), rng.uniform(20, 40), rng.uniform(20, 40)]),
              jitter_colour(rng, (120, 100, 90), 10))
    green = rng.uniform(0, 3) if rng.random() < 0.5 else 0.0
    if green > 0:
        c.add("terrain", cam.p([inner, inner + side * green, inner + side * green, inner], 0, [z0, z0, 300, 300]),
              jitter_colour(rng, (110, 140, 60), 15))
    facade_x = inner + side * green
    # Blocks along the street, far to near so nearer ones overwrite.
    zs = np.cumsum(rng.uniform(8, 30, 20)) + 1.0
    zs = zs[zs < 200]
    for za, zb in reversed(list(zip(np.r_[0.8, zs[:-1]], zs))):
        kind = rng.choice(["building", "building", "building", "vegetation", "wall", "fence", "open"])
        xf = facade_x + side * rng.uniform(0, 2)
        if kind == "building":
            _facade(c, cam, rng, xf, za, zb)
        elif kind == "vegetation":
            c.add("vegetation", cam.quad_side(xf, za, zb, 0, rng.uniform(1, 3)), jitter_colour(rng, (50, 90, 35)))
            if rng.random() < 0.6:
                _facade(c, cam, rng, xf + side * rng.uniform(3, 8), za, zb)
        elif kind in ("wall", "fence"):
            _facade(c, cam, rng, xf + side * rng.uniform(2, 6), za, zb)
            _barrier(c, cam, rng, kind, xf, za, zb)
    # Street furniture and people on the sidewalk / verge.
    for zi in np.cumsum(rng.uniform(3, 14, 24)) + 2.0:
        if zi > 90:
            break
        xi = x + side * rng.uniform(0.4, max(0.5, sw_w - 0.3))
        kind = rng.choice(["pole", "sign", "light", "tree", "person", "person", "static", "dynamic", "bicycle"],
                          p=[0.12, 0.12, 0.08, 0.2, 0.2, 0.1, 0.08, 0.05, 0.05])
        if kind in ("pole", "sign", "light"):
            objects.append((zi, _pole_fn(c, cam, rng, xi, zi, kind, side)))
        elif kind == "tree":
            objects.append((zi, _tree_fn(c, cam, rng, xi, zi)))
        elif kind == "person":
            objects.append((zi, _person_fn(c, cam, rng, xi, zi, "person")))
        elif kind == "bicycle":
            objects.append((zi, _vehicle_fn(c, cam, rng, xi, zi, "bicycle", parked=True)))
        else:
            objects.append((zi, _void_object_fn(c, cam, rng, xi, zi, kind)))


def _facade(c: _Canvas, cam: _Camera, rng, xf: float, za: float, zb: float) -> None:
    hb = rng.uniform(5, 25)
    colour = jitter_colour(rng, FACADE_PALETTE[rng.integers(len(FACADE_PALETTE))], 12)
    if not c.add("building", cam.quad_side(xf, za, zb, 0, hb), colour, tex=(0.05, 0.04, 3.0)):
        return
    glass = jitter_colour(rng, rng.choice([(40, 50, 60), (80, 100, 120), (30, 30, 35)]), 10)
    ww, wh = rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.8)
    sx, sy = ww + rng.uniform(0.8, 2.0), wh + rng.uniform(1.0, 2.0)
    ys = np.arange(rng.uniform(1.0, 2.5), hb - wh - 0.5, sy)
    zs = np.arange(za + 0.6, zb - ww - 0.3, sx)
    zs = zs[zs >= 1.0]
    if ys.size and zs.size:  # all windows of the facade in one projection and one fill
        yg, zg = np.meshgrid(ys, zs, indexing="ij")
        yg, zg = yg.ravel()[:, None], zg.ravel()[:, None]
        quads = cam.p(xf, yg + np.array([0, 0, wh, wh]), zg + np.array([0, ww, ww, 0]))
        cv2.fillPoly(c.rgb, list(np.round(quads).astype(np.int32)), tuple(float(v) for v in glass))
    if rng.random() < 0.5:  # shop window / door band at street level
        c.decal(cam.quad_side(xf, max(za, 1.0), zb, 0, min(2.5, hb)), jitter_colour(rng, (70, 60, 55)), 0.5)


def _barrier(c: _Canvas, cam: _Camera, rng, kind: str, xb: float, za: float, zb: float) -> None:
    hb = rng.uniform(0.8, 2.5)
    za = max(za, 0.8)
    if kind == "wall":
        c.add("wall", cam.quad_side(xb, za, zb, 0, hb), jitter_colour(rng, (150, 145, 135), 20))
        return
    bar = jitter_colour(rng, rng.choice([(110, 90, 70), (160, 160, 160), (60, 80, 60)]), 10)

    def paint(rgb, mask, x0, y0):  # see-through lattice: background stays, bars painted
        hh, ww = mask.shape
        lat = np.zeros((hh, ww), np.uint8)
        step = max(3, ww // max(4, int(rng.integers(6, 20))))
        lat[:, ::step] = 1
        lat[:: max(2, hh // 3)] = 1
        lat[:2] = 1
        sel = mask & lat.astype(bool)
        rgb[y0:y0 + hh, x0:x0 + ww][sel] = bar
        rgb[y0:y0 + hh, x0:x0 + ww][mask & ~sel] *= 0.85

    c.add("fence", cam.quad_side(xb, za, zb, 0, hb), paint)


def _pole_fn(c: _Canvas, cam: _Camera, rng, x: float, z: float, kind: str, side: int) -> Callable[[], None]:
    hp = rng.uniform(3.5, 8.0)
    pw = rng.uniform(0.1, 0.2)
    grey = jitter_colour(rng, (110, 110, 115), 15)
    sign_shape = rng.choice(["circle", "triangle", "rect", "diamond"])
    sign_col = rng.choice([(200, 30, 30), (30, 70, 180), (230, 200, 30), (230, 230, 230)])
    arm = kind == "light" and rng.random() < 0.4

    def draw() -> None:
        c.add("pole", cam.quad_front(x - pw / 2, x + pw / 2, z, 0, hp), grey)
        if kind == "sign":
            r = rng.uniform(0.3, 0.45)
            cy = hp - r
            ang = {"circle": np.linspace(0, 360, 12, endpoint=False), "triangle": np.array([90, 210, 330]),
                   "rect": np.array([45, 135, 225, 315]), "diamond": np.array([0, 90, 180, 270])}[sign_shape]
            ang = np.deg2rad(ang)
            pts = cam.p(x + r * np.cos(ang), cy + r * np.sin(ang), z - 0.05)
            if c.add("traffic sign", pts, sign_col) and sign_shape == "circle":
                c.decal(cam.p(x + 0.6 * r * np.cos(ang), cy + 0.6 * r * np.sin(ang), z - 0.05), (235, 235, 235))
        elif kind == "light":
            lx = x - side * rng.uniform(2, 4) if arm else x
            if arm:
                c.add("pole", cam.p([x, lx, lx, x], [hp - 0.15, hp - 0.15, hp, hp], z), grey)
            bw, bh = 0.35, 1.0
            top = hp if arm else hp + 0.1
            c.add("traffic light", cam.quad_front(lx - bw / 2, lx + bw / 2, z - 0.05, top - bh, top), (30, 30, 30))
            on = int(rng.integers(3))
            for i, col in enumerate([(230, 40, 30), (240, 180, 20), (40, 220, 90)]):
                cy = top - bh * (i + 0.5) / 3
                ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
                c.decal(cam.p(lx + 0.1 * np.cos(ang), cy + 0.1 * np.sin(ang), z - 0.06),
                        col if i == on else (60, 60, 55))
    return draw


def _tree_fn(c: _Canvas, cam: _Camera, rng, x: float, z: float) -> Callable[[], None]:
    ht, r = rng.uniform(2.5, 5.0), rng.uniform(1.2, 3.0)
    leaf = jitter_colour(rng, rng.choice([(60, 100, 40), (80, 120, 50), (50, 80, 45), (120, 130, 60)]), 12)

    def draw() -> None:
        c.add("vegetation", cam.quad_front(x - 0.15, x + 0.15, z, 0, ht), (80, 60, 45))
        ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        rad = r * rng.uniform(0.75, 1.15, 14)
        pts = cam.p(x + rad * np.cos(ang), ht + r * 0.8 + 0.8 * rad * np.sin(ang), z)

        c.add("vegetation", pts, leaf, tex=(0.25, 0.2, 8.0))
    return draw


def _person_polygon(cam: _Camera, x: float, z: float, height: float, stride: float, y0: float = 0.0) -> np.ndarray:
    s = stride
    ang = np.linspace(-0.3, np.pi + 0.3, 7)
    head = [(0.07 * np.cos(a), 0.92 + 0.07 * np.sin(a)) for a in ang]
    pts = [(-0.09 - s, 0), (-0.03 - s, 0), (0, 0.44), (0.03 + s, 0), (0.09 + s, 0), (0.1, 0.5), (0.14, 0.56),
           (0.13, 0.8), (0.05, 0.84)] + head + [(-0.05, 0.84), (-0.13, 0.8), (-0.14, 0.56), (-0.1, 0.5)]
    pts = np.asarray(pts)
    return cam.p(x + pts[:, 0] * height, y0 + pts[:, 1] * height, z)


def _person_fn(c: _Canvas, cam: _Camera, rng, x: float, z: float, label: str, y0: float = 0.0,
               height: float | None = None) -> Callable[[], None]:
    height = height or rng.uniform(1.5, 1.95)
    stride = rng.uniform(0, 0.1)
    shirt = jitter_colour(rng, CLOTH_PALETTE[rng.integers(len(CLOTH_PALETTE))])
    trousers = jitter_colour(rng, CLOTH_PALETTE[rng.integers(len(CLOTH_PALETTE))])
    skin = jitter_colour(rng, rng.choice([(220, 180, 150), (160, 110, 80), (110, 75, 55)]), 8)

    def draw() -> None:
        hip_y = cam.p(x, y0 + 0.5 * height, z)[1]
        neck_y = cam.p(x, y0 + 0.85 * height, z)[1]

        def paint(rgb, mask, x0, y0_):
            hh, ww = mask.shape
            rows = np.arange(y0_, y0_ + hh, dtype=np.float32)[:, None, None]
            col = np.where(rows > hip_y, trousers, np.where(rows > neck_y, shirt, skin))
            rgb[y0_:y0_ + hh, x0:x0 + ww][mask] = np.broadcast_to(col, (hh, ww, 3))[mask]
        c.add(label, _person_polygon(cam, x, z, height, stride, y0), paint)
    return draw


VEHICLE_DIMS = {  # width, lower height, cabin height, length
    "car": (1.8, 0.9, 0.55, 4.3), "truck": (2.5, 2.2, 1.2, 8.0), "bus": (2.55, 3.0, 0.0, 11.0),
    "bicycle": (0.5, 1.0, 0.0, 1.7), "motorcycle": (0.8, 1.1, 0.0, 2.1),
}


def _vehicle_fn(c: _Canvas, cam: _Camera, rng, x: float, z: float, label: str, parked: bool = False,
                oncoming: bool = False) -> Callable[[], None]:
    w, hl, hcab, length = VEHICLE_DIMS[label]
    scale = rng.uniform(0.9, 1.1)
    w, hl, hcab, length = w * scale, hl * scale, hcab * scale, length * scale
    body = jitter_colour(rng, CAR_PALETTE[rng.integers(len(CAR_PALETTE))], 10)
    if label == "bus":
        body = jitter_colour(rng, rng.choice([(230, 200, 40), (200, 40, 40), (240, 240, 240), (40, 120, 200)]), 10)
    rider = label in ("bicycle", "motorcycle") and not parked
    rider_draw = (_person_fn(c, cam, rng, x, z + length / 2, "rider", y0=0.35, height=rng.uniform(1.5, 1.8))
                  if rider else None)

    def draw() -> None:
        if z - 0.2 < 1.0:
            return
        # Shadow on the ground, then the body as the convex hull of its boxes.
        c.decal(cam.p([x - w / 2 - 0.2, x + w / 2 + 0.2, x + w / 2 + 0.2, x - w / 2 - 0.2], 0,
                      [z - 0.2, z - 0.2, z + length, z + length]), (20, 20, 25), 0.5)
        if label in ("bicycle", "motorcycle"):
            pts = cam.box_hull(x, z, w, hl, length)
            frame = jitter_colour(rng, (40, 40, 45), 20)

            c.add(label, hull(pts), frame, tex=(0.3, 0.1, 10.0))
            near_x = x - w / 2 if x > 0 else x + w / 2
            for zw in (z + 0.3, z + length - 0.3):
                ang = np.linspace(0, 2 * np.pi, 10, endpoint=False)
                c.decal(cam.p(near_x, 0.33 + 0.33 * np.sin(ang), zw + 0.33 * np.cos(ang)), (15, 15, 15))
            if rider_draw is not None:
                rider_draw()
            return
        pts = cam.box_hull(x, z, w, hl, length)
        if hcab > 0:
            cz = z + (0.25 * length if label == "car" else 0.0)
            cl = 0.5 * length if label == "car" else 0.25 * length
            pts = np.concatenate([pts, cam.box_hull(x, cz, w * 0.8, hcab, cl, y=hl)])
        c.add(label, hull(pts), body)
        # Rear (or front) face, windows, lights, wheels.
        c.decal(cam.quad_front(x - w / 2, x + w / 2, z, 0.15 * hl, hl), body * 0.8)
        if hcab > 0 and label == "car":
            cz = z + 0.25 * length
            lo, hi = hl + 0.05, hl + hcab - 0.05
            c.decal(cam.p(x + w * np.array([-0.38, 0.38, 0.33, -0.33]), [lo, lo, hi, hi], cz), (35, 40, 50))
        elif label == "bus":
            side_x = x - w / 2 if x > 0 else x + w / 2
            c.decal(cam.quad_side(side_x, z + 0.5, z + length - 0.5, 1.3, 2.6), (40, 50, 60))
            c.decal(cam.quad_front(x - w / 2 + 0.1, x + w / 2 - 0.1, z, 1.6, 2.8), (40, 50, 60))
        lamp = (240, 240, 220) if oncoming else (200, 20, 20)
        for lx in (x - w / 2 + 0.1, x + w / 2 - 0.35):
            c.decal(cam.quad_front(lx, lx + 0.25, z, 0.55 * hl, 0.7 * hl), lamp)
        c.decal(cam.quad_front(x - 0.25, x + 0.25, z, 0.3 * hl, 0.45 * hl), (230, 230, 230))
        side_x = x - w / 2 if x > 0 else x + w / 2
        for zw in (z + 0.15 * length, z + 0.8 * length):
            ang = np.linspace(0, 2 * np.pi, 10, endpoint=False)
            c.decal(cam.p(side_x, 0.34 + 0.34 * np.sin(ang), zw + 0.34 * np.cos(ang)), (20, 20, 20))
        c.decal(cam.quad_front(x - w / 2, x - w / 2 + 0.3, z, 0, 0.15 * hl), (15, 15, 15))
        c.decal(cam.quad_front(x + w / 2 - 0.3, x + w / 2, z, 0, 0.15 * hl), (15, 15, 15))
    return draw


def _void_object_fn(c: _Canvas, cam: _Camera, rng, x: float, z: float, kind: str) -> Callable[[], None]:
    """Void content that is not one of the 19 classes: 'static' (bins, benches, boxes) or 'dynamic' (carts)."""
    if kind == "static":
        w, hgt = rng.uniform(0.4, 1.8), rng.uniform(0.5, 1.3)
        col = rng.choice([(40, 90, 40), (90, 60, 40), (60, 60, 70), (150, 120, 60)])
    else:
        w, hgt = rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.2)
        col = rng.choice([(150, 40, 130), (40, 140, 160), (200, 120, 30)])
    colour = jitter_colour(rng, col, 15)

    def draw() -> None:
        c.add(kind, hull(cam.box_hull(x, z, w, hgt, rng.uniform(0.4, 1.2))), colour)
        if kind == "dynamic":
            for dx in (-w / 3, w / 3):
                ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
                c.decal(cam.p(x + dx + 0.12 * np.cos(ang), 0.12 + 0.12 * np.sin(ang), z - 0.01), (20, 20, 20))
    return draw


def _traffic(c: _Canvas, cam: _Camera, rng, road_l, road_r, lane_w, ego_offset, nl, nr, objects: list,
             clear_ego_lane_m: float = 0.0) -> None:
    for k in range(-nl, nr):
        xc = k * lane_w + ego_offset
        z = rng.uniform(6, 25) if k != 0 else rng.uniform(8, 30) + clear_ego_lane_m
        while z < 120:
            u = rng.random()
            label = "car" if u < 0.75 else "truck" if u < 0.83 else "bus" if u < 0.88 else \
                "bicycle" if u < 0.95 else "motorcycle"
            x = xc + rng.uniform(-0.4, 0.4)
            objects.append((z, _vehicle_fn(c, cam, rng, x, z, label, oncoming=k < 0)))
            z += VEHICLE_DIMS[label][3] + rng.uniform(3, 40)
    for _ in range(int(rng.poisson(0.6))):  # pedestrians crossing
        z = rng.uniform(6, 40)
        objects.append((z, _person_fn(c, cam, rng, rng.uniform(road_l, road_r), z, "person")))


def _lighting(c: _Canvas, cam: _Camera, rng: np.random.Generator) -> None:
    """Global exposure, white balance, gamma, a random cast shadow and vignetting."""
    if rng.random() < 0.4:
        xs = np.sort(rng.uniform(-0.3, 1.3, 2)) * c.w
        y = cam.yh + rng.uniform(0.05, 0.3) * (c.h - cam.yh)
        pts = np.array([(xs[0], y), (xs[1], y), (xs[1] + rng.uniform(-1, 1) * c.w, c.h), (xs[0], c.h)])
        c.decal(pts, (10, 10, 20), rng.uniform(0.2, 0.45))
    gain = (rng.uniform(0.65, 1.25) * rng.uniform(0.92, 1.08, 3)).astype(np.float32)
    ry = (np.linspace(-0.5, 0.5, c.h, dtype=np.float32) ** 2)[:, None]
    rx = (np.linspace(-0.5, 0.5, c.w, dtype=np.float32) ** 2)[None, :]
    c.rgb *= gain * (1 - np.float32(rng.uniform(0, 0.4)) * (ry + rx))[..., None]
    c.rgb += np.float32(rng.uniform(0.5, 3.0)) * np.roll(c.grain, int(rng.integers(1, c.w)), axis=1)[..., None]
    c.gamma = float(rng.uniform(0.8, 1.25))


def _condition(c: _Canvas, cam: _Camera, rng: np.random.Generator, condition: str) -> None:
    """Domain shift: 'fog' blends towards a haze colour with the ground depth of each row; 'dusk' darkens/warms."""
    if condition == "fog":
        rows = np.arange(c.h, dtype=np.float32) + 0.5
        # Rows at/above the horizon show facades and trees at street distance, not infinity: cap the depth.
        depth = np.minimum(cam.f * cam.hc / np.maximum(rows - cam.yh, 1e-3), 60.0)
        weight = (1.0 - np.exp(-depth / rng.uniform(25, 70))).astype(np.float32)[:, None, None]
        haze = np.float32(rng.uniform(170, 220)) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
        c.rgb = c.rgb * (1 - weight) + haze * weight
    else:  # dusk
        c.rgb *= np.float32(rng.uniform(0.35, 0.55)) * np.array([1.15, 0.9, 0.7], np.float32)


def _ego_hood(c: _Canvas, rng: np.random.Generator, draw: bool = True) -> None:
    """Bottom strip with a curved top edge: the Cityscapes 'ego vehicle' (label id 1). ``draw=False`` makes the
    same random draws and paints nothing, so the frame's later draws do not change."""
    hh = c.h * rng.uniform(0.06, EGO_HOOD_MAX_FRACTION)
    xs = np.linspace(-0.05 * c.w, 1.05 * c.w, 17)
    ys = c.h - hh * (1 - 0.45 * ((xs / c.w - 0.5) * 2) ** 2)
    pts = np.concatenate([np.stack([xs, ys], 1), [(1.05 * c.w, c.h + 2), (-0.05 * c.w, c.h + 2)]])
    col = jitter_colour(rng, CAR_PALETTE[rng.integers(len(CAR_PALETTE))], 8) * 0.6
    if not draw:
        return
    c.add("ego vehicle", pts, col, tex=(0.05, 0.02, 2.0))
    for i in range(6):  # reflection bands towards the windshield
        band = np.concatenate([np.stack([xs, ys + i * hh / 6], 1), np.stack([xs, ys + (i + 1) * hh / 6], 1)[::-1]])
        c.decal(band, col * (1.25 - 0.1 * i))


def draw_coco_overlap_object(name: str, img: np.ndarray, cx: float, cy: float, size: float,
                             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a crude COCO object of a class that overlaps Cityscapes (person, car, bicycle, …) into ``img``.

    Used by the synthetic COCO writer so that the AnomalyMix class filter has images to drop.
    Returns (polygon, mask).
    """
    if name == "person":
        cam = _Camera(f=size, xv=cx, yh=cy + size / 2, hc=0.0)
        poly = _person_polygon(cam, 0.0, 1.0, 1.0, rng.uniform(0, 0.1))
        colour = (150, 40, 40)
    elif name in ("car", "bus", "truck"):
        hh = size * (0.45 if name == "car" else 0.7)
        body = np.array([(cx - size / 2, cy), (cx + size / 2, cy), (cx + size / 2, cy - hh * 0.55),
                         (cx + size * 0.25, cy - hh), (cx - size * 0.3, cy - hh), (cx - size / 2, cy - hh * 0.55)])
        poly = body
        colour = (30, 60, 170) if name == "car" else (220, 190, 40)
    elif name in ("bicycle", "motorcycle"):
        ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        r = size * 0.22
        wheels = np.concatenate([np.stack([cx - size * 0.3 + r * np.cos(ang), cy + r * np.sin(ang)], 1),
                                 np.stack([cx + size * 0.3 + r * np.cos(ang), cy + r * np.sin(ang)], 1),
                                 [(cx, cy - size * 0.35)]])
        poly = hull(wheels)
        colour = (20, 20, 20)
    elif name == "stop sign":
        ang = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        poly = np.stack([cx + size / 2 * np.cos(ang), cy + size / 2 * np.sin(ang)], 1)
        colour = (200, 20, 20)
    elif name == "traffic light":
        poly = np.array([(cx - size * 0.15, cy - size / 2), (cx + size * 0.15, cy - size / 2),
                         (cx + size * 0.15, cy + size / 2), (cx - size * 0.15, cy + size / 2)])
        colour = (30, 30, 30)
    else:
        raise ValueError(f"not a Cityscapes-overlapping COCO class: {name!r}")
    poly = np.round(poly).astype(np.int32)
    cv2.fillPoly(img, [poly], colour)
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    return poly, mask.astype(bool)
