"""PerceptionPipeline (no ROS): batching across cameras, masks/colours vs brute force, per-camera trackers,
reconfiguration, stage timings."""
from __future__ import annotations

import numpy as np
import pytest

from dsa_core.labels import CITYSCAPES_PALETTE
from dsa_core.perception.obstacles import ObstacleSettings, Severity
from dsa_core.perception.pipeline import Frame, PerceptionPipeline, PipelineSettings
from dsa_core.perception.testing import ColourRuleBackend, road_scene
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


def test_mask_is_numpy_threshold_in_float32_nan_is_zero() -> None:
    from dsa_core.perception.pipeline import anomaly_mask

    rng = np.random.default_rng(1)
    scores = rng.random((50, 70), dtype=np.float32)
    for t in (0.7, 0.3, 0.1):  # float32(0.7) rounds down, float32(0.3) and float32(0.1) up
        scores[0, :3] = (np.float32(t), np.nextafter(np.float32(t), np.float32(0)), np.float32(np.nan))
        expected = np.where(scores >= t, 255, 0).astype(np.uint8)
        np.testing.assert_array_equal(anomaly_mask(scores, t), expected)
        assert anomaly_mask(scores, t)[0, 2] == 0


def test_colorize_and_overlay_against_numpy_indexing() -> None:
    from dsa_core.perception.obstacles import Detection, TrackedObstacle
    from dsa_core.perception.visualization import PALETTE_LUT, overlay

    rng = np.random.default_rng(2)
    ids = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    np.testing.assert_array_equal(colorize(ids), PALETTE_LUT[ids])
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = np.where(rng.random((37, 53)) < 0.3, 255, 0).astype(np.uint8)
    color = colorize(ids)
    expected = np.clip(np.rint(image * 0.6 + color * 0.4), 0, 255).astype(np.uint8)
    expected[mask > 0] = (255, 0, 0)
    got = overlay(image, color, mask, [], 0.4)
    np.testing.assert_array_equal(got, expected)
    # the boxes are drawn on top: the box's corner pixel takes the severity colour, the anomaly paint stays elsewhere
    det = Detection((5, 6, 10, 8), 80, 0.04, 1.0, 1.0, 0.0, 1.0, (10.0, 10.0))
    boxed = overlay(image, color, mask, [TrackedObstacle(1, 3, None, det, True, Severity.CRITICAL)], 0.4)
    assert tuple(boxed[6, 5]) == (255, 0, 0) and tuple(boxed[30, 40]) == tuple(got[30, 40])


class SmallModelBackend:
    """The runtime backends' contract at a fixed export size: the colour rule runs on the image resized to 24x32;
    camera-size maps come back through the runtime's resize, the export-size maps alongside."""

    name = "small"

    def infer(self, images: np.ndarray):
        from dsa_core.export.resize import images_to_export_size, outputs_to_camera_size
        from dsa_core.runtime.base import InferenceResult

        small = images_to_export_size(images, 24, 32).transpose(0, 2, 3, 1)
        res = ColourRuleBackend().infer(np.ascontiguousarray(small))
        ids, score = outputs_to_camera_size(res.class_ids, res.anomaly, *images.shape[1:3])
        return InferenceResult(ids, score, {}, export_class_ids=res.class_ids, export_anomaly=res.anomaly)


def test_obstacles_come_from_the_export_size_maps_in_camera_pixels() -> None:
    img = road_scene(96, 128, (40, 60, 24, 16))
    settings = PipelineSettings(anomaly_threshold=0.5, obstacles=ObstacleSettings(min_area=20, debounce_frames=1))
    res = PerceptionPipeline(SmallModelBackend(), settings).process({"cam": Frame(img)})["cam"]
    assert res.mask.shape == res.class_ids.shape == (96, 128)
    [obs] = res.obstacles.obstacles
    # the red box covers model pixels x 10..15, y 15..18 (a scale of 4): exactly the camera box
    assert obs.detection.bbox == (40, 60, 24, 16) and obs.detection.pixel_area == 24 * 16
    ys, xs = np.nonzero(res.mask)  # the published camera-size mask (bilinear score) lies inside that box
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (40, 60, 63, 75)


def test_the_road_top_is_measured_on_the_export_size_maps_in_camera_rows() -> None:
    """The mount pitch check on the small model's maps: road from camera row 48 (model row 12 of 24), so against a
    horizon at cy = 40 the road's top lies atan(8 / fy) below it; without a camera there is no check."""
    import math

    from dsa_core.perception.obstacles import GroundCamera

    camera = GroundCamera(fx=100.0, fy=100.0, cx=64.0, cy=40.0, height_m=0.0, pitch_rad=0.0)
    pipeline = PerceptionPipeline(SmallModelBackend(), PipelineSettings(anomaly_threshold=0.5))
    res = pipeline.process({"cam": Frame(road_scene(96, 128), camera=camera)})["cam"]
    assert res.road_top_deg == pytest.approx(math.degrees(math.atan2(40 - 48, 100)))
    assert pipeline.process({"cam": Frame(road_scene(96, 128))})["cam"].road_top_deg is None
