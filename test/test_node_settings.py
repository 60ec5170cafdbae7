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


def test_backend_options_give_each_backend_its_own_parameters() -> None:
    from dsa_core.perception.params import backend_options

    values = {**DEFAULTS, "inference_threads": 3, "allow_spinning": True, "msda": "decomposition"}
    assert backend_options("onnxruntime", values.__getitem__) == {"intra_op_threads": 3, "allow_spinning": True}
    assert backend_options("torch", values.__getitem__) == {"num_threads": 3}
    assert backend_options("openvino", values.__getitem__) == {"num_threads": 3}
    assert backend_options("tensorrt", values.__getitem__) == {"msda": "decomposition"}
    assert backend_options("onnxruntime", DEFAULTS.__getitem__)["intra_op_threads"] is None  # 0 = library default


def test_msda_parameter_default_and_choices_are_the_tensorrt_backends() -> None:
    """One source: the TensorRT backend's MSDA_CHOICES give the parameter its choices and default; a bad value is
    refused by the node's check with the valid ones named."""
    import inspect

    from dsa_core.export.trt_msda_plugin import MSDA_CHOICES
    from dsa_core.perception.params import check_value, spec_for
    from dsa_core.runtime.tensorrt_backend import TensorRTBackend

    spec = spec_for("msda")
    assert spec.choices == MSDA_CHOICES and spec.read_only
    assert spec.default == MSDA_CHOICES[0] == inspect.signature(TensorRTBackend).parameters["msda"].default
    assert all(check_value("msda", v) is None for v in MSDA_CHOICES)
    assert check_value("msda", "gather") == "msda: ['gather'] not in ['auto', 'plugin', 'decomposition']"


def test_the_msda_option_reaches_the_tensorrt_backend(tmp_path) -> None:
    """Through create_backend, as the node calls it: the backend checks msda before anything else, so a bad value
    is refused by the backend itself (ValueError naming msda) and a valid one passes that check and fails later
    for another reason (here: no TensorRT, or no model in tmp_path)."""
    import pytest

    from dsa_core.perception.params import backend_options
    from dsa_core.runtime import create_backend

    def start(value: str) -> None:
        opts = backend_options("tensorrt", {**DEFAULTS, "msda": value}.__getitem__)
        create_backend("tensorrt", tmp_path, device="cuda", precision="fp16", **opts)

    with pytest.raises(ValueError, match="msda must be one of .* got 'gather'"):
        start("gather")
    for value in ("plugin", "decomposition"):
        with pytest.raises(Exception) as info:
            start(value)
        assert "msda" not in str(info.value)


def test_model_dir_problem_names_the_parameter_and_the_fix(tmp_path) -> None:
    from dsa_core.perception.params import model_dir_problem

    assert model_dir_problem("") is None  # empty: the installed default model
    missing, afile, nodir = tmp_path / "missing", tmp_path / "file", tmp_path / "dir"
    afile.write_text("x")
    nodir.mkdir()
    assert model_dir_problem(str(missing)).startswith(f"parameter model_dir: {missing} does not exist; set model_dir:=")
    assert "is a file, not a directory" in model_dir_problem(str(afile))
    assert "has no manifest.json" in model_dir_problem(str(nodir))
    (nodir / "manifest.json").write_text("{}")
    assert model_dir_problem(str(nodir)) is None


def test_help_is_asked_only_before_ros_args() -> None:
    from dsa_core.perception.params import wants_help

    assert wants_help(["node", "--help"]) and wants_help(["node", "-h", "--ros-args", "-p", "x:=1"])
    assert not wants_help(["node", "--ros-args", "--help"]) and not wants_help(["node"])
