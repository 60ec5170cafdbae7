"""Obstacle extraction, tracking, severity and flat-ground distance (dsa_core/perception/obstacles.py), checked against
brute-force recomputations and an independent camera projection."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from dsa_core.perception.obstacles import (Detection, DistanceSource, GroundCamera, ObstacleSettings, ObstacleTracker,
                                           Severity, find_obstacles)
from dsa_core.perception.testing import ROAD, SKY, ColourRuleBackend, road_scene

H, W = 120, 160


def _infer(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    res = ColourRuleBackend().infer(img[None])
    ids, score = res.class_ids[0], res.anomaly[0]
    return ids, score, np.where(score >= 0.5, 255, 0).astype(np.uint8)


def test_constants_match_the_messages() -> None:
    msg = pytest.importorskip("dsa_perception.msg", reason="the generated interfaces (not in the compat venv)")
    Obstacle, ObstacleAlert = msg.Obstacle, msg.ObstacleAlert

    assert [int(s) for s in Severity] == [ObstacleAlert.SEVERITY_NONE, ObstacleAlert.SEVERITY_INFO,
                                          ObstacleAlert.SEVERITY_WARNING, ObstacleAlert.SEVERITY_CRITICAL]
    assert DistanceSource.NONE == Obstacle.DISTANCE_SOURCE_NONE
    assert DistanceSource.FLAT_GROUND == Obstacle.DISTANCE_SOURCE_FLAT_GROUND


def test_road_obstacle_kept_sky_and_tiny_ones_dropped_with_brute_force_statistics() -> None:
    img = road_scene(H, W)
    img[80:95, 30:50] = (250, 20, 20)  # on the road
    img[10:25, 100:120] = (250, 20, 20)  # in the sky, far from the road
    img[100:103, 120:123] = (250, 20, 20)  # on the road but 9 px < min_area
    ids, score, mask = _infer(img)
    settings = ObstacleSettings(min_area=20)
    dets = find_obstacles(mask, ids, score, settings)
    assert len(dets) == 1
    d = dets[0]
    # brute force: scipy 8-connected labelling, the component containing (85, 40)
    labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3)))
    comp = labels == labels[85, 40]
    ys, xs = np.nonzero(comp)
    assert d.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (30, 80, 20, 15)
    assert d.pixel_area == comp.sum() == 300
    assert d.area_fraction == pytest.approx(300 / (H * W))
    assert d.score_max == pytest.approx(score[comp].max()) and d.score_mean == pytest.approx(score[comp].astype(np.float64).mean())
    assert d.drivable_fraction == 0.0  # its own pixels are "building"
    # ring of 3 px around a box fully inside the road: all road
    assert d.road_contact == pytest.approx(1.0)
    assert d.centroid == pytest.approx((xs.mean(), ys.mean()))


def test_touching_the_road_within_the_margin_counts() -> None:
    ids = np.full((40, 40), SKY, np.uint8)
    ids[30:] = ROAD
    score = np.zeros((40, 40), np.float32)
    mask = np.zeros((40, 40), np.uint8)
    mask[20:28, 10:18] = 255  # bottom row 27, road starts at 30: gap of 2 rows
    score[mask > 0] = 0.9
    assert len(find_obstacles(mask, ids, score, ObstacleSettings(min_area=10, touch_margin_px=3))) == 1
    assert find_obstacles(mask, ids, score, ObstacleSettings(min_area=10, touch_margin_px=2)) == []
    # on a drivable class given as parameter: sky counts as drivable -> kept even with no margin
    assert len(find_obstacles(mask, ids, score, ObstacleSettings(min_area=10, touch_margin_px=0,
                                                                 drivable_classes=(SKY,)))) == 1


def test_tracking_keeps_ids_debounces_and_forgets() -> None:
    tracker = ObstacleTracker(ObstacleSettings(min_area=20, debounce_frames=3, max_missed_frames=1))
    seen = []
    for t in range(5):  # a box moving 4 px per frame to the right
        ids, score, mask = _infer(road_scene(H, W, (20 + 4 * t, 70, 16, 12)))
        frame = tracker.update(find_obstacles(mask, ids, score, tracker.settings), (H, W), stamp=t)
        assert len(frame.obstacles) == 1
        seen.append(frame)
    assert {f.obstacles[0].track_id for f in seen} == {1}
    assert [f.obstacles[0].age_frames for f in seen] == [1, 2, 3, 4, 5]
    assert [f.obstacles[0].confirmed for f in seen] == [False, False, True, True, True]
    assert [f.severity != Severity.NONE for f in seen] == [False, False, True, True, True]
    assert all(f.obstacles[0].first_seen == 0 for f in seen)
    # one empty frame is tolerated (max_missed_frames=1) ...
    tracker.update([], (H, W), stamp=5)
    ids, score, mask = _infer(road_scene(H, W, (40, 70, 16, 12)))
    again = tracker.update(find_obstacles(mask, ids, score, tracker.settings), (H, W), stamp=6)
    assert again.obstacles[0].track_id == 1 and again.obstacles[0].age_frames == 6
    # ... two are not: the next detection is a new track, unconfirmed again
    tracker.update([], (H, W), stamp=7)
    tracker.update([], (H, W), stamp=8)
    fresh = tracker.update(find_obstacles(mask, ids, score, tracker.settings), (H, W), stamp=9)
    assert fresh.obstacles[0].track_id == 2 and not fresh.obstacles[0].confirmed and fresh.severity == Severity.NONE


def _detection(box: tuple[int, int, int, int]) -> Detection:
    x, y, w, h = box
    return Detection(box, w * h, w * h / (H * W), 0.99, 0.95, 1.0, 1.0, (x + (w - 1) / 2, y + (h - 1) / 2))


def test_an_approaching_obstacle_whose_boxes_do_not_overlap_keeps_one_track() -> None:
    """The part over the threshold of an obstacle approaching at 8 m/s in a 5 fps drive (boxes measured on the
    demo's first rock at 12.8, 11.2 and 9.6 m): consecutive boxes share no pixel, and the centroid moves by 0.7-1.0
    box diagonals per frame. It must confirm after three frames, not start three tracks."""
    boxes = [(340, 181, 14, 9), (348, 190, 14, 9), (355, 204, 10, 14)]
    tracker = ObstacleTracker(ObstacleSettings(min_area=1, debounce_frames=3))
    frames = [tracker.update([_detection(b)], (256, 512)) for b in boxes]
    assert [f.obstacles[0].track_id for f in frames] == [1, 1, 1]
    assert [f.obstacles[0].confirmed for f in frames] == [False, False, True]


def test_association_follows_the_track_motion() -> None:
    """A box that speeds up (0.9, then 1.6 diagonals per frame) is found where its last motion puts it; a box that
    jumps as far without a motion to predict it starts a new track."""
    diag = math.hypot(10, 10)
    steps = [0.0, 0.9, 2.5]  # cumulative displacement along x, in diagonals
    tracker = ObstacleTracker(ObstacleSettings(min_area=1, debounce_frames=1))
    ids = [tracker.update([_detection((40 + round(s * diag), 60, 10, 10))], (H, W)).obstacles[0].track_id
           for s in steps]
    assert ids == [1, 1, 1]
    still = ObstacleTracker(ObstacleSettings(min_area=1, debounce_frames=1))
    first = still.update([_detection((40, 60, 10, 10))], (H, W)).obstacles[0].track_id
    jumped = still.update([_detection((40 + round(1.6 * diag), 60, 10, 10))], (H, W)).obstacles[0].track_id
    assert (first, jumped) == (1, 2)


def test_prediction_goes_by_the_stamps_when_frames_are_dropped() -> None:
    """A box moving 0.8 diagonals per 0.2 s at 5 fps; the node drops the frames at 0.4 and 0.6 s (it was busy). By
    the stamps the box is where its motion puts it at 0.8 s; counting processed frames would predict one frame of
    motion and lose it (a new track). Stamps as a bag gives them (ns) and as a ROS header gives them (sec/nanosec)."""
    diag = math.hypot(10, 10)

    class Time:  # the fields of builtin_interfaces/Time
        def __init__(self, ns: int) -> None:
            self.sec, self.nanosec = divmod(ns, 1_000_000_000)

    kept = [0, 1, 4]  # frame numbers the node processed
    for stamp_of in (lambda k: 1_700_000_000_000_000_000 + k * 200_000_000,
                     lambda k: Time(1_700_000_000_000_000_000 + k * 200_000_000), lambda k: None):
        tracker = ObstacleTracker(ObstacleSettings(min_area=1, debounce_frames=3))
        ids = [tracker.update([_detection((20 + round(0.8 * k * diag), 60, 10, 10))], (H, W),
                              stamp=stamp_of(k)).obstacles[0] for k in kept]
        if stamp_of(0) is None:  # no stamps: processed frames are all it has
            assert [o.track_id for o in ids] == [1, 1, 2]
        else:
            assert [o.track_id for o in ids] == [1, 1, 1] and ids[-1].confirmed


def test_stamps_that_do_not_increase_fall_back_to_frames() -> None:
    """An unstamped publisher (all zero) or a clock that jumps back (a replayed bag restarting) must not break the
    prediction: it then counts processed frames, as without stamps."""
    diag = math.hypot(10, 10)
    for stamps in ([0, 0, 0], [5_000_000_000, 5_200_000_000, 1_000_000_000]):
        tracker = ObstacleTracker(ObstacleSettings(min_area=1, debounce_frames=1))
        ids = [tracker.update([_detection((20 + round(0.8 * k * diag), 60, 10, 10))], (H, W), stamp=t)
               .obstacles[0].track_id for k, t in enumerate(stamps)]
        assert ids == [1, 1, 1]


def test_two_obstacles_keep_their_own_ids() -> None:
    tracker = ObstacleTracker(ObstacleSettings(min_area=20, debounce_frames=1))
    ids_by_pos = {}
    for t in range(4):
        img = road_scene(H, W)
        img[70:82, 10 + 2 * t:26 + 2 * t] = (250, 20, 20)
        img[90:104, 120 - 2 * t:136 - 2 * t] = (250, 20, 20)
        ids, score, mask = _infer(img)
        frame = tracker.update(find_obstacles(mask, ids, score, tracker.settings), (H, W))
        for o in frame.obstacles:
            ids_by_pos.setdefault("left" if o.detection.bbox[0] < 80 else "right", set()).add(o.track_id)
    assert len(ids_by_pos["left"]) == 1 and len(ids_by_pos["right"]) == 1 and ids_by_pos["left"] != ids_by_pos["right"]


def test_severity_from_contact_size_and_position() -> None:
    settings = ObstacleSettings(min_area=10, debounce_frames=1, critical_area_fraction=0.02)

    def severity(img: np.ndarray) -> Severity:
        ids, score, mask = _infer(img)
        return ObstacleTracker(settings).update(find_obstacles(mask, ids, score, settings), (H, W)).severity

    assert severity(road_scene(H, W)) == Severity.NONE
    assert severity(road_scene(H, W, (10, 64, 8, 6))) == Severity.WARNING  # small, far (upper road), at the side
    assert severity(road_scene(H, W, (10, 64, 40, 20))) == Severity.CRITICAL  # 800 px > 2 % of the image
    assert severity(road_scene(H, W, (76, 100, 8, 8))) == Severity.CRITICAL  # bottom centre: in the path
    assert severity(road_scene(H, W, (10, 52, 8, 9))) == Severity.INFO  # mostly in the sky, touching the road


def _project(point_world: np.ndarray, fx: float, fy: float, cx: float, cy: float, cam_h: float,
             pitch: float) -> tuple[float, float]:
    """World frame (x right, y forward, z up), camera at (0, 0, cam_h) pitched down -> pixel; written independently."""
    forward = np.array([0.0, math.cos(pitch), -math.sin(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(forward, right)  # optical y axis
    rel = point_world - np.array([0.0, 0.0, cam_h])
    xc, yc, zc = rel @ right, rel @ down, rel @ forward
    return fx * xc / zc + cx, fy * yc / zc + cy


@pytest.mark.parametrize("pitch_deg", [0.0, 5.0, -2.0])
def test_flat_ground_distance_against_projection(pitch_deg: float) -> None:
    pitch = math.radians(pitch_deg)
    cam = GroundCamera(fx=400.0, fy=410.0, cx=320.0, cy=240.0, height_m=1.5, pitch_rad=pitch)
    for gx, gy in [(0.0, 10.0), (-3.0, 25.0), (4.0, 7.5)]:
        u, v = _project(np.array([gx, gy, 0.0]), 400.0, 410.0, 320.0, 240.0, 1.5, pitch)
        p = cam.ground_point(u, v)
        assert p is not None
        assert cam.ground_distance(p) == pytest.approx(math.hypot(gx, gy), rel=1e-9)
    # above the horizon: no ground intersection
    u, v = _project(np.array([0.0, 50.0, 3.0]), 400.0, 410.0, 320.0, 240.0, 1.5, pitch)
    assert cam.ground_point(u, v) is None


def test_camera_info_scaling_and_tracker_distance() -> None:
    k = [800.0, 0, 640.0, 0, 800.0, 360.0, 0, 0, 1]
    cam = GroundCamera.from_camera_info_k(k, 1280, 720, W, H, 1.2, 0.0)
    assert (cam.fx, cam.cx, cam.fy, cam.cy) == pytest.approx((100.0, 80.0, 800.0 * H / 720, 60.0))
    assert GroundCamera.from_camera_info_k([0.0] * 9, 1280, 720, W, H, 1.2, 0.0) is None
    settings = ObstacleSettings(min_area=10, debounce_frames=1, critical_distance_m=6.0, path_bottom_fraction=0.0,
                                critical_area_fraction=0.05)
    ids, score, mask = _infer(road_scene(H, W, (70, 80, 20, 10)))
    frame = ObstacleTracker(settings).update(find_obstacles(mask, ids, score, settings), (H, W), camera=cam)
    o = frame.obstacles[0]
    # bottom edge v = 90 -> 30 px below the principal point: z = fy * h / dv, x from the column offset
    z = (800.0 * H / 720) * 1.2 / 30.0
    x = (80.0 - 80.0) / 100.0 * z
    assert o.distance_source == DistanceSource.FLAT_GROUND
    assert o.distance_m == pytest.approx(math.hypot(x, z)) and frame.nearest_distance_m == pytest.approx(o.distance_m)
    assert o.ground_point == pytest.approx((x, 1.2, z))
    assert o.severity == Severity.CRITICAL  # 5.3 m <= 6 m (the in-path rule is off)
    far = ObstacleSettings(min_area=10, debounce_frames=1, critical_distance_m=5.0, path_bottom_fraction=0.0,
                           critical_area_fraction=0.05)
    assert ObstacleTracker(far).update(find_obstacles(mask, ids, score, far), (H, W), camera=cam).severity == Severity.WARNING


def test_min_area_fraction_scales_with_the_image() -> None:
    settings = ObstacleSettings(min_area=1, min_area_fraction=0.01, debounce_frames=1)
    assert settings.min_area_for(10, 30) == 3 and settings.min_area_for(100, 300) == 300
    assert ObstacleSettings(min_area=7, min_area_fraction=0.01).min_area_for(10, 30) == 7  # the larger one wins
    for h, w, kept in ((20, 40, True), (40, 80, False)):  # a 3x3 = 9 px blob on the road: 8 px vs 32 px minimum
        mask = np.zeros((h, w), np.uint8)
        mask[h - 6:h - 3, 10:13] = 255
        ids = np.zeros((h, w), np.uint8)
        found = find_obstacles(mask, ids, mask.astype(np.float32) / 255, settings)
        assert bool(found) == kept, (h, w)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_area"):
        ObstacleSettings(min_area=0)
    with pytest.raises(ValueError, match="min_area_fraction"):
        ObstacleSettings(min_area_fraction=1.0)
    with pytest.raises(ValueError, match="debounce_frames"):
        ObstacleSettings(debounce_frames=0)
    with pytest.raises(ValueError, match="drivable_classes"):
        ObstacleSettings(drivable_classes=(300,))


def test_ego_mask_keeps_the_hood_out_of_obstacles() -> None:
    """A component in the bottom band (the hood, next to the road) is no obstacle with the ego mask; one standing
    on the road above the band still is; the mask is validated."""
    h, w = 100, 200
    class_ids = np.full((h, w), 2, np.uint8)
    class_ids[50:90] = 0  # road down to the hood
    anomaly = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[90:, :] = 255  # the hood: flagged, touching the road
    mask[60:70, 90:110] = 255  # an obstacle on the road
    anomaly[mask > 0] = 1.0
    plain = find_obstacles(mask, class_ids, anomaly, ObstacleSettings(min_area=10))
    masked = find_obstacles(mask, class_ids, anomaly, ObstacleSettings(min_area=10, ego_mask_bottom_fraction=0.12))
    assert sorted(d.bbox for d in plain) == [(0, 90, 200, 10), (90, 60, 20, 10)]
    assert [d.bbox for d in masked] == [(90, 60, 20, 10)]
    assert mask[90:].all()  # the caller's mask is left alone
    with pytest.raises(ValueError, match="ego_mask_bottom_fraction"):
        ObstacleSettings(ego_mask_bottom_fraction=0.6)


def test_search_at_model_resolution_matches_the_camera_search_within_one_model_pixel() -> None:
    """The node searches the export-size maps and scales back (find_obstacles image_size); against the search on
    the camera-size maps the runtime resize produces (nearest ids, bilinear score): the same obstacles, boxes within
    one model pixel scaled, areas and centroids within a model pixel's share."""
    from dsa_core.export.resize import outputs_to_camera_size

    rng = np.random.default_rng(3)
    h, w, big_h, big_w = 64, 128, 180, 320  # 2.8125 x 2.5, like 1280x720 from 512x256
    sy, sx = big_h / h, big_w / w
    for trial in range(20):
        img = road_scene(h, w)
        boxes = []
        for _ in range(3):
            bw, bh = (int(v) for v in rng.integers(3, 12, 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(h // 2 - 4, h - bh))
            img[y:y + bh, x:x + bw] = (250, 20, 20)
            boxes.append((x, y, bw, bh))
        res = ColourRuleBackend().infer(img[None])
        small_ids, small_score = res.class_ids, res.anomaly
        big_ids, big_score = outputs_to_camera_size(small_ids, small_score, big_h, big_w)
        settings = ObstacleSettings(min_area=20, touch_margin_px=3)
        small = find_obstacles(np.where(small_score[0] >= 0.5, 255, 0).astype(np.uint8), small_ids[0], small_score[0],
                               settings, image_size=(big_h, big_w))
        big = find_obstacles(np.where(big_score[0] >= 0.5, 255, 0).astype(np.uint8), big_ids[0], big_score[0], settings)
        assert len(small) == len(big) >= 1, trial
        for a, b in zip(sorted(small, key=lambda d: d.bbox), sorted(big, key=lambda d: d.bbox)):
            assert all(abs(p - q) <= s for p, q, s in zip(a.bbox, b.bbox, (sx, sy, 2 * sx, 2 * sy))), (a.bbox, b.bbox)
            # the small box (grown to whole camera pixels) holds the camera-size component
            assert a.bbox[0] <= b.bbox[0] and a.bbox[1] <= b.bbox[1]
            assert a.bbox[0] + a.bbox[2] >= b.bbox[0] + b.bbox[2] and a.bbox[1] + a.bbox[3] >= b.bbox[1] + b.bbox[3]
            perimeter = 2 * (b.bbox[2] + b.bbox[3])
            assert abs(a.pixel_area - b.pixel_area) <= perimeter * max(sx, sy)
            assert a.area_fraction == pytest.approx(b.area_fraction, abs=perimeter * max(sx, sy) / (big_h * big_w))
            assert a.centroid == pytest.approx(b.centroid, abs=max(sx, sy))
            assert a.score_max == pytest.approx(b.score_max, abs=1e-6)  # bilinear never exceeds the samples' max
            assert a.road_contact == pytest.approx(b.road_contact, abs=0.35) and a.road_contact > 0


def test_search_at_the_own_size_is_unchanged_by_image_size() -> None:
    img = road_scene(H, W)
    img[80:95, 30:50] = (250, 20, 20)
    ids, score, mask = _infer(img)
    settings = ObstacleSettings(min_area=20)
    assert find_obstacles(mask, ids, score, settings, image_size=(H, W)) == find_obstacles(mask, ids, score, settings)


def test_min_area_counts_camera_pixels_at_model_resolution() -> None:
    """A 4x4 model-pixel blob is 16 model pixels = 16 * 2.5 * 2.5 = 100 camera pixels."""
    mask = np.zeros((40, 40), np.uint8)
    mask[30:34, 10:14] = 255
    ids = np.zeros((40, 40), np.uint8)
    score = mask.astype(np.float32) / 255
    for min_area, kept in ((100, True), (101, False)):
        found = find_obstacles(mask, ids, score, ObstacleSettings(min_area=min_area), image_size=(100, 100))
        assert [d.pixel_area for d in found] == ([100] if kept else []), min_area
    found = find_obstacles(mask, ids, score, ObstacleSettings(min_area=1), image_size=(100, 100))
    assert found[0].bbox == (25, 75, 10, 10) and found[0].centroid == pytest.approx((29.5, 79.5))


def test_components_match_scipy_labelling_on_random_masks() -> None:
    """Every 8-connected component (all on the road) with its box and area, against scipy's labelling."""
    rng = np.random.default_rng(5)
    for trial in range(10):
        mask = np.where(rng.random((60, 90)) < 0.3 + 0.04 * trial, 255, 0).astype(np.uint8)
        ids = np.zeros(mask.shape, np.uint8)
        found = find_obstacles(mask, ids, mask.astype(np.float32) / 255, ObstacleSettings(min_area=1, touch_margin_px=0))
        labels, n = ndimage.label(mask > 0, structure=np.ones((3, 3)))
        expected = sorted(((s[1].start, s[0].start, s[1].stop - s[1].start, s[0].stop - s[0].start),
                           int((labels[s] == i + 1).sum())) for i, s in enumerate(ndimage.find_objects(labels)))
        assert sorted((d.bbox, d.pixel_area) for d in found) == expected and len(found) == n, trial


def test_ground_camera_for_image_needs_camera_info_and_refuses_implausible_scaling() -> None:
    from dsa_core.perception.obstacles import ground_camera_for_image

    info = ([1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0], 1280, 720)
    assert ground_camera_for_image(None, 640, 360, 1.2, 0.0) == (None, None)
    unknown_height, problem = ground_camera_for_image(info, 640, 360, 0.0, 0.0)  # a horizon, no distances
    assert problem is None and unknown_height.height_m == 0.0 and unknown_height.horizon_row() == 180.0
    assert unknown_height.ground_point(320.0, 300.0) is None
    camera, problem = ground_camera_for_image(info, 640, 360, 1.2, 0.1)
    assert problem is None
    assert camera == GroundCamera.from_camera_info_k(info[0], 1280, 720, 640, 360, 1.2, 0.1)
    camera, problem = ground_camera_for_image(info, 1280, 100, 1.2, 0.0)  # another aspect: fy/fx implausible
    assert camera is None and problem.startswith("CameraInfo 1280x720 scaled to the 1280x100 image: pixel aspect")


@pytest.mark.parametrize("pitch_deg", [0.0, 4.0, -3.0])
def test_horizon_row_against_projection(pitch_deg: float) -> None:
    """The row of rays a given angle above the horizontal, against projecting far points at that elevation."""
    pitch = math.radians(pitch_deg)
    cam = GroundCamera(fx=400.0, fy=410.0, cx=320.0, cy=240.0, height_m=0.0, pitch_rad=pitch)
    for above_deg in (0.0, 3.0):
        far = 1e7  # metres ahead; a point at that elevation angle above the camera
        rise = far * math.tan(math.radians(above_deg))
        _, v = _project(np.array([0.0, far, rise]), 400.0, 410.0, 320.0, 240.0, 0.0, pitch)
        assert cam.horizon_row(math.radians(above_deg)) == pytest.approx(v, abs=1e-3)
    # pitched down by 89 degrees: rays 3 degrees above the horizontal leave the pinhole field, every row is below
    assert GroundCamera(400.0, 410.0, 320.0, 240.0, 0.0, math.radians(89.0)).horizon_row(math.radians(3.0)) == -math.inf


def _box_detection(box: tuple[int, int, int, int]) -> Detection:
    x, y, w, h = box
    return Detection(box, w * h, w * h / float(H * W), 0.9, 0.9, 0.0, 1.0, (x + w / 2.0, y + h / 2.0))


def test_the_horizon_gate_drops_components_that_cannot_stand_on_the_road() -> None:
    """A component whose bottom edge lies more than horizon_margin_deg above the horizon is not tracked (its lowest
    point is higher than the camera); one whose bottom is below the horizon, or above it within the margin, is. No
    camera (no CameraInfo) or horizon_gate off: nothing is dropped."""
    cam = GroundCamera(fx=100.0, fy=100.0, cx=80.0, cy=60.0, height_m=0.0, pitch_rad=0.0)
    margin_row = 60.0 - 100.0 * math.tan(math.radians(3.0))  # 54.76: the default 3 degrees above the horizon
    high = (20, 30, 10, 20)  # bottom edge 50: 10 px (5.7 degrees) above the horizon
    within = (60, 40, 10, 16)  # bottom edge 56: above the horizon, within the margin
    low = (100, 70, 10, 10)  # bottom edge 80: below it
    assert high[1] + high[3] < margin_row < within[1] + within[3] < 60.0
    settings = ObstacleSettings(min_area=1, debounce_frames=1)
    seen = ObstacleTracker(settings).update([_box_detection(b) for b in (high, within, low)], (H, W), camera=cam)
    assert sorted(o.detection.bbox for o in seen.obstacles) == sorted([within, low])
    assert all(math.isnan(o.distance_m) for o in seen.obstacles)  # no mount height: a horizon, no distances
    for kept_all in (ObstacleTracker(settings).update([_box_detection(b) for b in (high, within, low)], (H, W)),
                     ObstacleTracker(dataclasses.replace(settings, horizon_gate=False)).update(
                         [_box_detection(b) for b in (high, within, low)], (H, W), camera=cam)):
        assert len(kept_all.obstacles) == 3
    wider = ObstacleTracker(dataclasses.replace(settings, horizon_margin_deg=10.0))
    assert len(wider.update([_box_detection(high)], (H, W), camera=cam).obstacles) == 1
    for bad in (-1.0, 31.0, math.nan):
        with pytest.raises(ValueError, match="horizon_margin_deg"):
            ObstacleSettings(horizon_margin_deg=bad)


def test_moving_obstacle_frames_differ_frame_to_frame_and_are_seeded() -> None:
    from dsa_core.perception.testing import moving_obstacle_frames

    frames = moving_obstacle_frames(48, 96, 3, seed=0)
    assert [f.shape for f in frames] == [(48, 96, 3)] * 3 and all(f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(moving_obstacle_frames(48, 96, 3, seed=0)[2], frames[2])


def _run(settings: ObstacleSettings, kept: list[int], fps: float = 5.0, stamped: bool = True) -> list[bool]:
    """Confirmed flags of one obstacle seen in the camera frames ``kept`` (the ones the node processed), moving
    0.5 box diagonals per frame; frames not kept were dropped, a None in ``kept`` is a processed frame without it."""
    tracker = ObstacleTracker(settings)
    diag, out = math.hypot(10, 10), []
    for i, k in enumerate(kept):
        frame = k if k is not None else kept[i - 1] + 1
        stamp = 1_700_000_000_000_000_000 + round(frame * 1e9 / fps) if stamped else None
        dets = [] if k is None else [_detection((20 + round(0.5 * k * diag), 60, 10, 10))]
        obstacles = tracker.update(dets, (H, W), stamp=stamp).obstacles
        if obstacles:
            out.append(obstacles[0].confirmed)
    return out


def test_the_time_rule_confirms_an_obstacle_across_a_dropped_frame() -> None:
    """The live demo's case: the rock is over the area in frames 15-17 only and the node dropped 16. Three matched
    frames are never reached; the time rule set to the span of three frames at 5 fps confirms it in frame 17."""
    frames_only = ObstacleSettings(min_area=1, debounce_frames=3)
    timed = ObstacleSettings(min_area=1, debounce_frames=3, debounce_seconds=frames_only.debounce_seconds_at(5.0))
    assert timed.debounce_seconds == pytest.approx(0.4)
    assert _run(frames_only, [15, 17]) == [False, False]
    assert _run(timed, [15, 17]) == [False, True]
    assert _run(timed, [15, 17], stamped=False) == [False, False]  # no stamps: the frame count only
    assert _run(timed, [15, 16]) == [False, False]  # 0.2 s is not 0.4 s


def test_the_time_rule_confirms_nothing_the_frame_count_does_not_when_every_frame_is_processed() -> None:
    """With every frame processed a run of consecutive matches spanning (n - 1) / fps holds n matches, so the
    calibration (every frame of a bag) stays valid for a node using the time rule. A run broken by a processed frame
    without the obstacle starts again: hit, miss, hit is no run of 0.4 s."""
    frames_only = ObstacleSettings(min_area=1, debounce_frames=3, max_missed_frames=2)
    timed = dataclasses.replace(frames_only, debounce_seconds=frames_only.debounce_seconds_at(5.0))
    for kept in ([0, 1, 2, 3], [0, None, 2, 3], [0, None, 2, None, 4, 5], [0, 1, None, 3, 4]):
        with_time, counted = _run(timed, kept), _run(frames_only, kept)
        assert with_time == counted, kept
    assert _run(timed, [0, None, 2]) == [False, False]  # one match each side of a processed miss


def test_the_time_rule_is_checked() -> None:
    for bad in (-0.1, 61.0, math.nan):
        with pytest.raises(ValueError, match="debounce_seconds"):
            ObstacleSettings(debounce_seconds=bad)
    with pytest.raises(ValueError, match="fps"):
        ObstacleSettings().debounce_seconds_at(0.0)


def test_a_track_seen_once_is_found_again_after_a_dropped_frame() -> None:
    """The demo's first rock at 0.985 / 115 px (measured boxes): seen in frame 15, the node drops 16, seen again in
    17, its box centre about 28 px further (more than one box diagonal). With one sighting there is no motion to predict; the gate grows
    by one per dropped camera frame (the shortest stamp step, 0.2 s from frames 0 and 1, gives the frame period), so
    17 continues the track and the time rule confirms it. A frame processed without it (16 in the stream, nothing
    detected) is not a dropped frame: the gate stays, as it did before, and 17 starts a new track."""
    rock = {15: (340, 181, 15, 10), 17: (354, 203, 16, 15)}
    settings = ObstacleSettings(min_area=1, debounce_frames=3, debounce_seconds=0.4)

    def run(processed: list[int]) -> list[tuple[int, bool]]:
        tracker = ObstacleTracker(settings)
        seen = []
        for k in processed:
            obstacles = tracker.update([_detection(rock[k])] if k in rock else [], (256, 512),
                                       stamp=1_700_000_000_000_000_000 + k * 200_000_000).obstacles
            seen += [(o.track_id, o.confirmed) for o in obstacles]
        return seen

    assert run([0, 1, 15, 17]) == [(1, False), (1, True)]  # 16 dropped
    assert run([0, 1, 15, 16, 17]) == [(1, False), (2, False)]  # 16 processed, the rock not found in it
    assert run([15, 17]) == [(1, False), (2, False)]  # the frame period is not known yet: no gap is counted
