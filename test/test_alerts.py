"""Obstacle-alert scoring (dsa_core.bags.alerts) on hand-built sequences whose answers are worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from dsa_core.bags.alerts import (AlertBox, AlertScorer, GtObstacle, alert_rate_upper_bound, camera_seconds,
                                 flagged_class, frame_ranges, gt_boxes_from_mask)
from dsa_core.bags.report import _alerts_markdown
from dsa_core.labels import CITYSCAPES_CLASSES, VOID

H = W = 100
PERIOD_NS = 200_000_000  # 5 fps


def _mask(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    gt = np.zeros((H, W), np.uint8)
    gt[:5] = 255  # void rows never count as obstacle
    for x, y, w, h in boxes:
        gt[y:y + h, x:x + w] = 1
    return gt


def test_gt_boxes_from_mask_merges_touching_pieces_only() -> None:
    assert gt_boxes_from_mask(_mask()) == []
    assert gt_boxes_from_mask(_mask((10, 20, 5, 5), (60, 20, 5, 5))) == [(10, 20, 5, 5), (60, 20, 5, 5)]
    # Two pieces of one object whose boxes overlap (a tyre: the ring and its hub, not 8-connected) become one box.
    gt = _mask((10, 20, 10, 10))
    gt[21:29, 11:19] = 0
    gt[24:26, 14:16] = 1
    assert gt_boxes_from_mask(gt) == [(10, 20, 10, 10)]


def test_frame_metrics_time_to_alert_and_false_alerts_by_hand() -> None:
    a = [(40, 40, 10, 10), (38, 42, 14, 14), (36, 45, 18, 18), (34, 50, 22, 22)]  # obstacle A, growing
    b = (5, 60, 10, 10)  # obstacle B after a gap: no overlap with A
    frames = [  # (gt boxes, confirmed alert boxes or None = dropped)
        ([], []),                                   # 0: clear, quiet          -> true negative
        ([], [(80, 80, 10, 10)]),                   # 1: clear, alert          -> false alert (no obstacle)
        ([a[0]], []),                               # 2: A appears, no alert   -> missed
        ([a[1]], [(0, 0, 10, 10)]),                 # 3: alert, box off A      -> alert frame, false box
        ([a[2]], [(36, 45, 18, 2), (90, 0, 5, 5)]),  # 4: IoU 36/324 = 0.111 on A -> A confirmed; one box off
        ([a[3]], None),                             # 5: dropped by the node
        ([b], []),                                  # 6: B, quiet              -> missed
        ([b], [(5, 60, 10, 1)]),                    # 7: IoU 10/100 = 0.1 exactly -> on B (>= threshold)
        ([b], [(5, 60, 9, 1)]),                     # 8: IoU 9/100 = 0.09      -> off B
    ]
    scorer = AlertScorer()
    for i, (gt, alerts) in enumerate(frames):
        scorer.add("front", i, i * PERIOD_NS, _mask(*gt), None if alerts is None else [AlertBox(x) for x in alerts])
    r = scorer.compute()
    # Processed frames 0-4 and 6-8; positives 2, 3, 4, 6, 7, 8; alert frames 1, 3, 4, 7, 8.
    assert (r["frames_evaluated"], r["frames_with_obstacle"], r["frames_without_obstacle"]) == (8, 6, 2)
    assert (r["true_alert_frames"], r["false_alert_frames_without_obstacle"], r["missed_obstacle_frames"]) == (4, 1, 2)
    assert r["alert_precision"] == pytest.approx(4 / 5) and r["alert_recall"] == pytest.approx(4 / 6)
    assert r["obstacle_frames_with_box_on_obstacle"] == 2 and r["box_on_obstacle_fraction"] == pytest.approx(2 / 6)
    assert (r["confirmed_boxes_on_obstacle"], r["confirmed_boxes_off_obstacle"]) == (2, 4)
    assert [(f["index"], f["boxes_off_obstacle"]) for f in r["false_alerts"]] == [(1, 1), (3, 1), (4, 1), (8, 1)]
    assert r["false_alerts"][0]["reason"] == "alert on a frame without an obstacle"
    assert r["false_alerts"][1]["reason"] == "alert box on no obstacle"

    obs_a, obs_b = r["obstacles"]
    assert (obs_a["first_frame"], obs_a["last_frame"], obs_a["frames_visible"], obs_a["frames_processed"]) == (2, 5, 4, 3)
    assert obs_a["first_bottom_row"] == 49 and obs_a["frames_with_box"] == 1
    ca = obs_a["confirmed"]
    assert (ca["frame"], ca["frames_after_first_seen"], ca["bottom_row"], ca["image_height"]) == (4, 2, 62, H)
    assert ca["seconds_after_first_seen"] == pytest.approx(0.4) and ca["box_iou"] == pytest.approx(36 / 324)
    assert obs_b["id"] != obs_a["id"] and obs_b["first_frame"] == 6 and obs_b["confirmed"]["frame"] == 7
    assert r["obstacles_total"] == 2 and r["obstacles_confirmed"] == 2
    assert r["median_seconds_to_alert"] == pytest.approx((0.4 + 0.2) / 2)
    assert r["median_distance_at_alert_m"] is None  # masks carry no distance


def test_false_alerts_count_tracks_never_on_an_obstacle() -> None:
    """Track 1 starts off the obstacle and then lies on it (a true alert, late); track 2 stays off it for three
    frames and track 3 alerts once on a clear frame: two false alerts over four false-alert frames."""
    a = (40, 40, 10, 10)
    frames = [  # (gt boxes, [(alert box, track id)])
        ([a], [((0, 0, 10, 10), 1)]),
        ([a], [(a, 1), ((80, 80, 5, 5), 2)]),
        ([a], [(a, 1), ((81, 80, 5, 5), 2)]),
        ([], [((82, 80, 5, 5), 2), ((10, 10, 5, 5), 3)]),
    ]
    scorer = AlertScorer()
    for i, (gt, alerts) in enumerate(frames):
        scorer.add("front", i, i * PERIOD_NS, _mask(*gt), [AlertBox(b, track_id=t) for b, t in alerts])
    r = scorer.compute()
    assert [f["index"] for f in r["false_alerts"]] == [0, 1, 2, 3]
    assert (r["alert_tracks"], r["false_alert_tracks"]) == (3, 2)
    hours = 4 * PERIOD_NS / 1e9 / 3600  # four frames stand for four frame intervals
    assert r["camera_hours"] == pytest.approx(hours)
    assert r["false_alerts_per_hour"] == pytest.approx(2 / hours)
    assert r["false_alerts_per_hour_upper95"] == pytest.approx(alert_rate_upper_bound(2, hours))
    dropped = AlertScorer()  # a frame the node dropped was still driven: it counts as camera time
    for i, (gt, alerts) in enumerate(frames):
        dropped.add("front", i, i * PERIOD_NS, _mask(*gt), None if i == 2 else [AlertBox(b, track_id=t) for b, t in alerts])
    assert dropped.compute()["camera_hours"] == pytest.approx(hours)
    other_camera = AlertScorer()  # the same id on two cameras is two tracks
    for cam in ("front", "rear"):
        other_camera.add(cam, 0, 0, _mask(), [AlertBox((80, 80, 5, 5), track_id=1)])
    assert other_camera.compute()["false_alert_tracks"] == 2
    unknown = AlertScorer()  # boxes without a track id: the count is unknown, not zero
    unknown.add("front", 0, 0, _mask(), [AlertBox((80, 80, 5, 5))])
    assert unknown.compute()["false_alert_tracks"] is None and unknown.compute()["false_alerts_per_hour"] is None


def test_scores_from_each_severity_up() -> None:
    """Track 1 (on obstacle A) is INFO in frame 1 and WARNING in frame 2; track 2 is a false INFO alert at the road
    edge on the clear frame 0; track 3 a false CRITICAL one in frame 2. From WARNING up: A is confirmed at frame 2,
    frame 1 does not alert, track 2 is gone; from CRITICAL up only track 3 remains."""
    from dsa_core.perception.obstacles import Severity

    a = (40, 40, 10, 10)
    frames = [  # (gt boxes, [(alert box, track id, severity)])
        ([], [((80, 80, 5, 5), 2, Severity.INFO)]),
        ([a], [(a, 1, Severity.INFO)]),
        ([a], [(a, 1, Severity.WARNING), ((0, 0, 5, 5), 3, Severity.CRITICAL)]),
    ]
    scorer = AlertScorer()
    for i, (gt, alerts) in enumerate(frames):
        scorer.add("front", i, i * PERIOD_NS, _mask(*gt), [AlertBox(b, track_id=t, severity=v) for b, t, v in alerts])
    r = scorer.compute()
    assert (r["frames_with_alert"], r["false_alert_tracks"], r["obstacles_confirmed"]) == (3, 2, 1)
    assert r["obstacles"][0]["confirmed"]["frame"] == 1
    warning, critical = r["by_min_severity"]["warning"], r["by_min_severity"]["critical"]
    assert (warning["frames_with_alert"], warning["true_alert_frames"], warning["false_alert_tracks"]) == (1, 1, 1)
    assert warning["obstacles_confirmed"] == 1 and warning["alert_recall"] == pytest.approx(1 / 2)
    assert (critical["frames_with_alert"], critical["true_alert_frames"], critical["false_alert_tracks"]) == (1, 1, 1)
    assert critical["obstacles_confirmed"] == 0  # the frame alerts (track 3), but no CRITICAL box lies on A
    hours = 3 * PERIOD_NS / 1e9 / 3600
    assert warning["false_alerts_per_hour"] == pytest.approx(1 / hours)
    md = "\n".join(_alerts_markdown(r))
    assert "| WARNING | 1 | 1.000 | 0.500 | 1 of 1 | - | 1 |" in md
    assert "| CRITICAL | 1 | 1.000 | 0.500 | 0 of 1 | - | 1 |" in md


def test_false_alerts_are_sorted_by_what_they_lie_on() -> None:
    """The class of a box is that of most of its flagged pixels, not of the box (a small blob on a bus is on the bus
    even when road fills the rest of its box); a track takes the class of most of its boxes; a true alert is not a
    false one whatever it lies on."""
    bus, person = CITYSCAPES_CLASSES.index("bus"), CITYSCAPES_CLASSES.index("person")
    sem = np.zeros((H, W), np.uint8)  # road
    sem[60:70, 60:70] = bus
    sem[20:30, 20:30] = VOID  # e.g. a gravel strip
    sem[20:30, 30:40] = person
    flagged = np.zeros((H, W), np.uint8)
    flagged[62:66, 62:66] = 255  # 16 px on the bus in a 20 x 20 box that is mostly road
    flagged[20:30, 22:34] = 255  # 80 void px and 40 person px
    assert flagged_class((55, 55, 20, 20), flagged, sem) == bus
    assert flagged_class((20, 20, 20, 10), flagged, sem) == VOID
    assert flagged_class((0, 0, 10, 10), flagged, sem) is None  # nothing flagged in it
    assert flagged_class((55, 55, 20, 20), flagged, None) is None  # no ground truth
    assert flagged_class((55, 55, 20, 20), flagged, sem[:50]) is None  # ground truth of another size
    a = (40, 40, 10, 10)
    frames = [  # (gt boxes, [(alert box, track id, class)])
        ([a], [(a, 1, bus)]),  # on the obstacle: a true alert, whatever the semantics say
        ([], [((80, 80, 5, 5), 2, VOID), ((10, 10, 5, 5), 3, bus)]),
        ([], [((80, 80, 5, 5), 2, VOID), ((10, 10, 5, 5), 3, person), ((0, 90, 5, 5), 4, VOID)]),
        ([], [((80, 80, 5, 5), 2, person), ((10, 10, 5, 5), 3, bus)]),
    ]
    scorer = AlertScorer()
    for i, (gt, alerts) in enumerate(frames):
        scorer.add("front", i, i * PERIOD_NS, _mask(*gt), [AlertBox(b, track_id=t, gt_class=c) for b, t, c in alerts])
    r = scorer.compute()
    assert r["false_alert_tracks"] == 3
    assert r["false_alerts_by_class"] == {"void": 2, "bus": 1}
    assert list(r["false_alerts_by_class"]) == ["void", "bus"]  # most first
    assert "void 2, bus 1" in "\n".join(_alerts_markdown(r))
    plain = AlertScorer()  # no ground-truth semantics: no breakdown, and the report says nothing about it
    plain.add("front", 0, 0, _mask(), [AlertBox((80, 80, 5, 5), track_id=1)])
    assert plain.compute()["false_alerts_by_class"] is None
    assert "lie on" not in "\n".join(_alerts_markdown(plain.compute()))


def test_camera_time_counts_one_interval_per_frame() -> None:
    assert camera_seconds([0, 200_000_000, 400_000_000]) == pytest.approx(0.6)  # 3 frames at 5 fps
    assert camera_seconds([400_000_000, 0, 200_000_000]) == pytest.approx(0.6)  # order does not matter
    assert camera_seconds([5]) == 0.0 and camera_seconds([]) == 0.0


def test_ground_truth_table_gives_identity_and_distance() -> None:
    # A street cut: obstacle 1 near and low, then obstacle 2 far, with overlapping boxes. The masks alone would call
    # them one obstacle; the ground-truth table keeps them apart and supplies the true distances.
    near, far = (40, 60, 30, 30), (50, 55, 10, 10)
    table = {0: [GtObstacle(1, near, 6.0)], PERIOD_NS: [GtObstacle(2, far, 40.0)],
             2 * PERIOD_NS: [GtObstacle(2, far, 38.4)], 4 * PERIOD_NS: []}  # stamp -> obstacles; frame 3 missing
    scorer = AlertScorer(gt_tables={"/cam/image": table})
    for i, gt in enumerate([near, far, far, far, None]):
        mask = _mask(gt) if gt else _mask()
        scorer.add("cam", i, i * PERIOD_NS, mask, [AlertBox(far, 41.0)] if i == 2 else [], topic="/cam/image")
    r = scorer.compute()
    assert r["frames_evaluated"] == 4  # frame 3 has no entry in the table: not scored
    assert [(o["id"], o["first_frame"], o["first_distance_m"]) for o in r["obstacles"]] == [(1, 0, 6.0), (2, 1, 40.0)]
    c = r["obstacles"][1]["confirmed"]
    assert (c["frame"], c["distance_m"], c["node_distance_m"], c["frames_after_first_seen"]) == (2, 38.4, 41.0, 1)
    assert r["obstacles"][0]["confirmed"] is None

    mask_only = AlertScorer()
    for i, gt in enumerate([near, far]):
        mask_only.add("cam", i, i * PERIOD_NS, _mask(gt), [])
    assert len(mask_only.compute()["obstacles"]) == 1  # the documented limit of the mask fallback


def test_bad_input_and_helpers() -> None:
    with pytest.raises(ValueError, match="match_iou"):
        AlertScorer(match_iou=0.0)
    empty = AlertScorer()
    empty.add("cam", 0, 0, None, [])  # no ground truth at all: nothing to score
    assert not empty.scored
    r = AlertScorer()
    r.add("cam", 0, 0, _mask(), [])
    out = r.compute()
    assert out["alert_precision"] is None and out["alert_recall"] is None and out["obstacles"] == []
    assert frame_ranges([7, 3, 4, 5, 12, 15, 16]) == "3-5, 7, 12, 15-16" and frame_ranges([]) == ""
