"""One source for each perception default: the settings dataclasses (ObstacleSettings, PipelineSettings). The node's
parameter table reads its defaults from them and the node builds its settings from the parameters through the same
table; config/dsa.yaml is held to the table by test_launch_contract.py (test_default_config_equals_the_declared_
defaults), and the operating point stays with resolve_operating_point (test_operating_point.py)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter

from dsa_core.perception.obstacles import ObstacleSettings
from dsa_core.perception.pipeline import PipelineSettings
from dsa_core.runtime.operating_point import resolve_operating_point
from dsa_perception.node import DsaPerceptionNode
from dsa_core.perception.params import NODE_PARAMS, SETTINGS_FIELDS, settings_kwargs, spec_for
from dsa_core.perception.testing import ColourRuleBackend

pytestmark = pytest.mark.ros

DOMAIN_ID = 86
#: a value other than the default for each settings parameter
CHANGED = {"debounce_frames": 5, "debounce_seconds": 0.4, "drivable_classes": [0, 1], "ego_mask_bottom_fraction": 0.125,
           "horizon_gate": False, "horizon_margin_deg": 5.0, "touch_margin_px": 7, "publish_color": False, "publish_overlay": False, "overlay_alpha": 0.7}


def _field(cls, name):
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def test_every_settings_parameter_takes_its_default_from_the_dataclass() -> None:
    assert set(CHANGED) == set(SETTINGS_FIELDS)
    for param, (cls, name) in SETTINGS_FIELDS.items():
        default = _field(cls, name)
        spec = spec_for(param)
        assert spec is not None and spec.default == (list(default) if isinstance(default, tuple) else default), param
        assert type(spec.default) is (list if isinstance(default, tuple) else type(default)), param
        assert CHANGED[param] != spec.default, param
    # the pure conversion: parameter values -> dataclass keyword arguments of the right types
    kwargs = settings_kwargs(ObstacleSettings, CHANGED.__getitem__)
    assert kwargs == {"debounce_frames": 5, "debounce_seconds": 0.4, "drivable_classes": (0, 1), "ego_mask_bottom_fraction": 0.125,
                      "horizon_gate": False, "horizon_margin_deg": 5.0, "touch_margin_px": 7}
    assert settings_kwargs(PipelineSettings, CHANGED.__getitem__) == {"make_color": False, "make_overlay": False,
                                                                       "overlay_alpha": 0.7}


def test_the_default_config_file_holds_the_dataclass_defaults() -> None:
    from pathlib import Path

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "dsa.yaml").read_text())
    params = doc["/**"]["ros__parameters"]
    for param, (cls, name) in SETTINGS_FIELDS.items():
        default = _field(cls, name)
        assert params[param] == (list(default) if isinstance(default, tuple) else default), param


@pytest.mark.parametrize("overrides", [{}, CHANGED], ids=["defaults", "changed"])
def test_the_node_builds_its_settings_through_the_table(overrides: dict) -> None:
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        node = DsaPerceptionNode(context=ctx, backend_factory=lambda kind: ColourRuleBackend(),
                                 parameter_overrides=[Parameter("backends", value=["onnxruntime"]),
                                                      Parameter("build_only", value=True),
                                                      *(Parameter(k, value=v) for k, v in overrides.items())])
        settings = node.pipeline.settings
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    op = resolve_operating_point(None, math.nan, 0)  # no manifest, parameters unset: the per-score fallback
    values = {**{p.name: p.default for p in NODE_PARAMS if p.name in SETTINGS_FIELDS}, **overrides}
    expected = PipelineSettings(
        anomaly_threshold=op.anomaly_threshold,
        obstacles=ObstacleSettings(min_area=op.min_area_px, min_area_fraction=op.min_area_fraction,
                                   **settings_kwargs(ObstacleSettings, values.__getitem__)),
        **settings_kwargs(PipelineSettings, values.__getitem__))
    assert settings == expected
    if not overrides:  # every field not set from the operating point is the dataclass's own default
        defaults = PipelineSettings()
        assert dataclasses.replace(settings, anomaly_threshold=defaults.anomaly_threshold,
                                   obstacles=dataclasses.replace(settings.obstacles,
                                                                 min_area=defaults.obstacles.min_area,
                                                                 min_area_fraction=defaults.obstacles.min_area_fraction)
                                   ) == defaults


@pytest.mark.parametrize("spinning", [False, True])
def test_allow_spinning_reaches_the_onnxruntime_session(spinning: bool, exported_nano) -> None:
    """The node parameter is passed to the real ONNX Runtime backend the chain starts (not only declared)."""
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        node = DsaPerceptionNode(context=ctx, parameter_overrides=[
            Parameter("backends", value=["onnxruntime"]), Parameter("build_only", value=True),
            Parameter("model_dir", value=str(exported_nano.model_dir)), Parameter("inference_threads", value=1),
            Parameter("allow_spinning", value=spinning)])
        threads = node.pipeline.backend.threads
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
    assert threads["allow_spinning"] is spinning and threads["intra_op"] == 1
