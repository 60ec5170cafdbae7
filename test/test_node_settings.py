"""The node's parameters → perception settings without ROS (dsa_core/perception/params.py): pipeline_settings
assembles the settings and the operating point in force; threshold_problem refuses a threshold outside the model's
score range. The node runs both (test_params_table.py and test_operating_point.py check that through rclpy)."""
from __future__ import annotations

import math

from dsa_core.perception.obstacles import ObstacleSettings
from dsa_core.perception.params import NODE_PARAMS, pipeline_settings, threshold_problem
from dsa_core.perception.pipeline import PipelineSettings
from dsa_core.runtime.operating_point import resolve_operating_point

DEFAULTS = {spec.name: spec.default for spec in NODE_PARAMS}
MANIFEST = {"score": "msp", "operating_point": {"anomaly_threshold": 0.6, "min_obstacle_area_fraction": 0.002}}


def test_unset_parameters_take_the_models_operating_point_and_the_dataclass_defaults() -> None:
    settings, op = pipeline_settings(MANIFEST, DEFAULTS.__getitem__)
    expected = resolve_operating_point(MANIFEST, math.nan, 0)
    assert op == expected and settings.anomaly_threshold == expected.anomaly_threshold
    assert settings.obstacles.min_area == expected.min_area_px
    assert settings.obstacles.min_area_fraction == expected.min_area_fraction
    assert settings.obstacles.debounce_frames == ObstacleSettings().debounce_frames
    assert settings.overlay_alpha == PipelineSettings().overlay_alpha


def test_set_parameters_win_and_arrays_become_tuples() -> None:
    values = {**DEFAULTS, "anomaly_threshold": 0.25, "min_obstacle_area": 77, "drivable_classes": [0, 1, 9],
              "debounce_frames": 4, "publish_overlay": False}
    settings, op = pipeline_settings(MANIFEST, values.__getitem__)
    assert settings.anomaly_threshold == 0.25 == op.anomaly_threshold
    assert settings.obstacles.min_area == 77
    assert settings.obstacles.drivable_classes == (0, 1, 9) and settings.obstacles.debounce_frames == 4
    assert settings.make_overlay is False


def test_threshold_problem_follows_the_score_range_of_the_manifest() -> None:
    assert threshold_problem(math.nan, MANIFEST) is None  # unset
    assert threshold_problem(0.5, MANIFEST) is None and threshold_problem(1.0, MANIFEST) is None
    assert "every pixel" in threshold_problem(0.0, MANIFEST)
    assert "no pixel" in threshold_problem(1.5, MANIFEST)
    assert threshold_problem(1.5, None) is None and threshold_problem(1.5, {}) is None  # range unknown


def test_same_value_treats_nan_as_equal_and_compares_arrays_by_content() -> None:
    from dsa_core.perception.params import same_value

    assert same_value(math.nan, math.nan) and same_value([0, 1], (0, 1)) and same_value("cpu", "cpu")
    assert not same_value(0.5, math.nan) and not same_value([0, 1], [0]) and not same_value([0], 0)
    assert not same_value("ab", ["a", "b"])  # strings are values, not arrays
