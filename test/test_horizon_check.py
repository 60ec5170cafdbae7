"""The mount pitch check (dsa_core/perception/horizon_check.py): the road's top edge against the configured horizon,
on class maps whose answer is known, and its running median."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dsa_core.perception.horizon_check import (MIN_ROAD_TOP_FRAMES, RoadTopMonitor, pitch_warning,
                                               road_top_elevation_deg)
from dsa_core.perception.obstacles import GroundCamera

ROAD, SKY = 0, 10


def _scene(height: int, width: int, road_from: int) -> np.ndarray:
    ids = np.full((height, width), SKY, np.uint8)
    ids[road_from:] = ROAD
    return ids


def test_the_road_top_is_the_angle_of_its_first_row_above_the_configured_horizon() -> None:
    level = GroundCamera(fx=200.0, fy=200.0, cx=160.0, cy=100.0, height_m=1.5, pitch_rad=0.0)
    ids = _scene(200, 320, 80)  # road from row 80: 20 px above cy
    assert road_top_elevation_deg(ids, level, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(20 / 200)))
    # configured 5 degrees down: the horizon moves up by fy tan 5°, the road top sits that much lower against it
    down = GroundCamera(200.0, 200.0, 160.0, 100.0, 1.5, math.radians(5.0))
    assert road_top_elevation_deg(ids, down, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(0.1)) - 5.0)
    assert level.horizon_row(math.radians(road_top_elevation_deg(ids, level, (ROAD,), 200))) == pytest.approx(80.0)
    # the model's export size: half the rows, scaled back to the camera's
    assert road_top_elevation_deg(ids[::2, ::2], level, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(0.1)))


def test_road_patches_high_in_the_frame_stray_pixels_and_frames_without_road_do_not_count() -> None:
    camera = GroundCamera(200.0, 200.0, 160.0, 100.0, 0.0, 0.0)
    ids = _scene(200, 320, 120)
    ids[119, :20] = ROAD  # 20 px on the road's far edge, 0.08 % of the 25 620 road pixels: under the quantile (0.1 %)
    assert road_top_elevation_deg(ids, camera, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(-20 / 200)))
    ids[119, :40] = ROAD  # 40 px, 0.16 % of the road: above the quantile, the top moves up a row
    assert road_top_elevation_deg(ids, camera, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(-19 / 200)))
    # a patch the model calls road high in the frame (sky between buildings), not connected to the road below it:
    # 600 px, far above the quantile, and still not the road's top; a patch touching the road is part of it
    ids[5:25, 100:130] = ROAD
    assert road_top_elevation_deg(ids, camera, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(-19 / 200)))
    ids[25:120, 128:130] = ROAD  # a 2-px column joins the patch to the road: one surface, its top is the patch's
    assert road_top_elevation_deg(ids, camera, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(95 / 200)))
    almost_none = _scene(200, 320, 199)
    almost_none[199, 300:] = SKY  # 300 road pixels < 1 % of the image
    assert road_top_elevation_deg(almost_none, camera, (ROAD,), 200) is None
    assert road_top_elevation_deg(_scene(200, 320, 120), camera, (1,), 200) is None  # sidewalk only: none here
    walk = _scene(200, 320, 120)
    walk[110:120] = 1  # a sidewalk strip above the road counts when the node calls sidewalk drivable
    assert road_top_elevation_deg(walk, camera, (ROAD, 1), 200) == pytest.approx(math.degrees(math.atan(-10 / 200)))
    assert road_top_elevation_deg(walk, camera, (ROAD,), 200) == pytest.approx(math.degrees(math.atan(-20 / 200)))
    with pytest.raises(ValueError):
        road_top_elevation_deg(np.zeros(5, np.uint8), camera, (ROAD,), 200)


def test_the_monitor_takes_the_median_and_starts_again_for_a_new_camera() -> None:
    a = GroundCamera(200.0, 200.0, 160.0, 100.0, 0.0, 0.0)
    b = GroundCamera(200.0, 200.0, 160.0, 100.0, 0.0, math.radians(-4.0))
    m = RoadTopMonitor(window=50)
    for i in range(MIN_ROAD_TOP_FRAMES - 1):
        m.add(-2.0 + 0.01 * i, a)
    assert m.median_deg() is None  # too few frames for a verdict
    m.add(40.0, a)  # one wild frame
    m.add(None, a)  # and one without road
    assert m.frames() == MIN_ROAD_TOP_FRAMES and m.median_deg() == pytest.approx(
        float(np.median([-2.0 + 0.01 * i for i in range(MIN_ROAD_TOP_FRAMES - 1)] + [40.0])))
    m.add(None, None)  # a frame without CameraInfo changes nothing
    assert m.frames() == MIN_ROAD_TOP_FRAMES
    m.add(2.0, b)  # another pitch: the window starts again
    assert m.frames() == 1 and m.median_deg() is None
    for _ in range(60):
        m.add(6.0, b)
    assert m.frames() == 50 and m.median_deg() == 6.0
    assert pitch_warning(6.0, 3.0).startswith("road seen 6.0° above the configured horizon")
    assert pitch_warning(2.9, 3.0) is None and pitch_warning(None, 3.0) is None
