"""PerceptionPipeline (no ROS): batching across cameras, masks/colours vs brute force, per-camera trackers,
reconfiguration, stage timings."""
from __future__ import annotations

import numpy as np
import pytest

from dsa_core.export.manifest import CITYSCAPES_PALETTE
from dsa_core.perception.obstacles import ObstacleSettings, Severity
from dsa_core.perception.pipeline import Frame, PerceptionPipeline, PipelineSettings
from dsa_perception.testing import ColourRuleBackend, road_scene
from dsa_core.perception.visualization import colorize


def test_same_size_cameras_share_one_batch_and_results_match_single_runs() -> None:
    rng = np.random.default_rng(0)
    frames = {"a": Frame(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),
              "b": Frame(road_scene(40, 60, (10, 25, 8, 8))),
              "c": Frame(road_scene(30, 50, (5, 20, 8, 6)))}
    backend = ColourRuleBackend()
    batched = PerceptionPipeline(backend).process(frames)
    assert sorted(backend.batch_sizes) == [1, 2]  # a+b together, c alone (other size)
    assert batched["a"].timings["batch_size"] == 2 and batched["c"].timings["batch_size"] == 1
    for cam, frame in frames.items():
        single = PerceptionPipeline(ColourRuleBackend()).process({cam: frame})[cam]
        np.testing.assert_array_equal(batched[cam].class_ids, single.class_ids)
        np.testing.assert_array_equal(batched[cam].anomaly, single.anomaly)
        np.testing.assert_array_equal(batched[cam].overlay, single.overlay)


def test_mask_colour_and_overlay_against_brute_force() -> None:
    img = road_scene(32, 48, (10, 20, 6, 5))
    img[2, 3] = (200, 100, 90)  # score (200-100)/255 = 0.39: below 0.5, above 0.3
    settings = PipelineSettings(anomaly_threshold=0.3, obstacles=ObstacleSettings(min_area=5, debounce_frames=1))
    res = PerceptionPipeline(ColourRuleBackend(), settings).process({"cam": Frame(img)})["cam"]
    for y in range(32):
        for x in range(48):
            r, g, b = (int(v) for v in img[y, x])
            score = min(1.0, max(0.0, (r - max(g, b)) / 255.0))
            assert res.anomaly[y, x] == pytest.approx(score, abs=1e-6)
            assert res.mask[y, x] == (255 if res.anomaly[y, x] >= 0.3 else 0)
            cid = int(res.class_ids[y, x])
            assert tuple(res.color[y, x]) == (CITYSCAPES_PALETTE[cid] if cid < 19 else (0, 0, 0))
    assert res.mask[2, 3] == 255 and res.mask.dtype == np.uint8 and set(np.unique(res.mask)) == {0, 255}
    assert res.overlay.shape == img.shape and tuple(res.overlay[22, 12]) == (255, 0, 0)  # anomaly pixels in red
    # the 1-pixel component is below min_area; the box on the road is the one obstacle
    assert [o.detection.bbox for o in res.obstacles.obstacles] == [(10, 20, 6, 5)]
    assert res.obstacles.severity >= Severity.WARNING
    assert {"inference", "mask", "obstacles", "visualization", "backend_total"} <= set(res.timings)
    assert colorize(np.array([[255, 18]], np.uint8)).tolist() == [[[0, 0, 0], list(CITYSCAPES_PALETTE[18])]]


def test_trackers_are_per_camera_and_reconfigure_applies() -> None:
    pipe = PerceptionPipeline(ColourRuleBackend(), PipelineSettings(
        obstacles=ObstacleSettings(min_area=5, debounce_frames=2), make_overlay=False, make_color=False))
    scene = road_scene(32, 48, (10, 20, 6, 5))
    first = pipe.process({"a": Frame(scene), "b": Frame(scene)})
    assert first["a"].color is None and first["a"].overlay is None
    assert first["a"].obstacles.obstacles[0].track_id == first["b"].obstacles.obstacles[0].track_id == 1
    assert not first["a"].obstacles.obstacles[0].confirmed
    second = pipe.process({"a": Frame(scene)})
    assert second["a"].obstacles.obstacles[0].confirmed and second["a"].frame_index == 1
    pipe.reconfigure(PipelineSettings(anomaly_threshold=0.95, obstacles=ObstacleSettings(min_area=5)))
    third = pipe.process({"a": Frame(scene)})["a"]
    assert third.mask.max() == 0 and third.obstacles.obstacles == [] and third.color is not None
    lazy = pipe.process({"a": Frame(scene, want_color=False, want_overlay=False)})["a"]
    assert lazy.color is None and lazy.overlay is None and lazy.class_ids.shape == (32, 48)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        PerceptionPipeline(ColourRuleBackend()).process({"a": Frame(np.zeros((4, 4), np.uint8))})
