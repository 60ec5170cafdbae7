"""What the node's output messages hold, computed without ROS (dsa_core/perception/messages.py): the image outputs
of a frame, the ObstacleAlert / Obstacle field values from a real pipeline run, and the RViz marker layouts.
The node copies these layouts into the generated classes; test_ros_usability.py and test_node.py check that side."""
from __future__ import annotations

import math

import pytest

from dsa_core.perception import messages
from dsa_core.perception.obstacles import Detection, DistanceSource, ObstacleSettings, Severity, TrackedObstacle
from dsa_core.perception.pipeline import Frame, PerceptionPipeline, PipelineSettings
from dsa_core.perception.testing import ColourRuleBackend, road_scene


def _run(frames: int, **settings) -> tuple[PipelineSettings, object]:
    """The last result of ``frames`` identical road frames with a red obstacle on the road."""
    s = PipelineSettings(anomaly_threshold=0.5, obstacles=ObstacleSettings(min_area=10, debounce_frames=2),
                         **settings)
    pipe = PerceptionPipeline(ColourRuleBackend(), s)
    img = road_scene(60, 80, (30, 40, 10, 8))
    for i in range(frames):
        res = pipe.process({"front": Frame(img, stamp=f"stamp{i}")})["front"]
    return s, res


def test_alert_layout_carries_the_frame_its_obstacles_and_the_operating_point_in_force() -> None:
    settings, res = _run(3)
    alert = messages.obstacle_alert_layout("front", res, settings)
    assert alert["camera_name"] == "front" and alert["frame_index"] == res.frame_index == 2
    assert (alert["image_width"], alert["image_height"]) == (80, 60)
    assert alert["anomaly_threshold"] == 0.5 and alert["min_area_pixels"] == settings.obstacles.min_area_for(60, 80)
    assert alert["severity"] == int(res.obstacles.severity) > 0 and type(alert["severity"]) is int
    assert alert["most_severe_track_id"] == res.obstacles.most_severe_track_id
    assert math.isnan(alert["nearest_distance_m"])  # no camera model: no distance
    (obstacle,) = alert["obstacles"]
    o = res.obstacles.obstacles[0]
    assert (obstacle["bbox_x"], obstacle["bbox_y"], obstacle["bbox_width"], obstacle["bbox_height"]) == (30, 40, 10, 8)
    assert obstacle["pixel_area"] == 80 and obstacle["confirmed"] is True and obstacle["track_id"] == o.track_id
    assert obstacle["first_seen"] == "stamp0"  # the stamp of the first frame, passed through untouched
    assert obstacle["distance_source"] == int(DistanceSource.NONE) and type(obstacle["severity"]) is int
    assert all(math.isnan(obstacle["ground_point"][k]) for k in "xyz")


def test_an_obstacle_without_a_first_seen_stamp_leaves_the_field_to_the_message_default() -> None:
    d = Detection(bbox=(1, 2, 3, 4), pixel_area=12, area_fraction=0.1, score_max=0.9, score_mean=0.7,
                  drivable_fraction=0.5, road_contact=0.6, centroid=(2.5, 4.0))
    o = TrackedObstacle(track_id=7, age_frames=1, first_seen=None, detection=d, confirmed=False,
                        severity=Severity.INFO, distance_m=4.0, distance_source=DistanceSource.FLAT_GROUND,
                        ground_point=(0.1, 1.2, 4.0))
    layout = messages.obstacle_layout(o)
    assert "first_seen" not in layout
    assert layout["ground_point"] == {"x": 0.1, "y": 1.2, "z": 4.0} and layout["distance_m"] == 4.0
    assert layout["distance_source"] == int(DistanceSource.FLAT_GROUND) and layout["confirmed"] is False


@pytest.mark.parametrize("color, overlay", [(True, True), (False, False), (True, False)])
def test_image_outputs_are_the_three_maps_plus_what_was_made(color: bool, overlay: bool) -> None:
    _, res = _run(1, make_color=color, make_overlay=overlay)
    outputs = messages.image_outputs(res)
    expected = ["semantic", "anomaly_score", "anomaly_mask"] + ["semantic_color"] * color + ["overlay"] * overlay
    assert [t for t, _, _ in outputs] == expected
    encodings = {t: e for t, _, e in outputs}
    assert encodings["semantic"] == encodings["anomaly_mask"] == "mono8" and encodings["anomaly_score"] == "32FC1"
    assert all(a is getattr(res, {"semantic": "class_ids", "anomaly_score": "anomaly", "anomaly_mask": "mask",
                                  "semantic_color": "color", "overlay": "overlay"}[t]) for t, a, _ in outputs)


def test_markers_delete_all_then_two_per_confirmed_obstacle() -> None:
    _, res = _run(3)
    header = object()
    layouts = messages.marker_layouts("front", res.obstacles.obstacles, header, 80, 60)
    assert layouts[0] == {"header": header, "ns": "front/obstacles", "action": messages.MARKER_DELETEALL}
    track = res.obstacles.obstacles[0].track_id
    shape, label = layouts[1:]
    assert (shape["id"], label["id"]) == (2 * track, 2 * track + 1)
    assert shape["type"] == messages.MARKER_ARROW and label["type"] == messages.MARKER_TEXT_VIEW_FACING
    assert label["text"] == f"#{track} ? m" and all(m["header"] is header for m in layouts)
    end = shape["points"][1]
    # nominal pinhole (fx = fy = width, centred): the ray's end projects onto the box's bottom centre (35, 48)
    assert (80 * end["x"] / end["z"] + 40, 80 * end["y"] / end["z"] + 30) == pytest.approx((35.0, 48.0))
    _, first = _run(1)  # not yet confirmed (debounce 2): only the DELETEALL
    assert len(messages.marker_layouts("front", first.obstacles.obstacles, header, 80, 60)) == 1
