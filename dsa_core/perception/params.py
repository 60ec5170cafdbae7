"""The node's parameters in one table: names, defaults, ranges, read-only flags and value checks (ROS-free;
the node turns each spec into a ParameterDescriptor).

Why a table: the node declares from it, the validation callback checks against it, and the launch-contract test
reads it to prove that every parameter the launch and config files pass exists.
Paths, backends, cameras and QoS are read-only (they shape subscriptions and the engine); thresholds, areas,
debounce and output toggles can change at run time.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dsa_core.export.trt_msda_plugin import MSDA_CHOICES
from dsa_core.perception.image_codec import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from dsa_core.perception.obstacles import MAX_DEBOUNCE_S, MAX_HORIZON_MARGIN_DEG, MOUNT_PITCH_RANGE_DEG, ObstacleSettings
from dsa_core.perception.pipeline import PipelineSettings

BACKEND_KINDS = ("tensorrt", "onnxruntime", "openvino", "torch")  # = dsa_core.runtime.BACKEND_KINDS (checked in a test)
PRECISIONS = ("fp32", "fp16", "int8")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
ANOMALY_THRESHOLD_LIMIT = 100.0  # |threshold| beyond this is a typo for every score (RbA >= -K)


#: Parameter -> (settings dataclass, field) for the parameters that are plain perception settings. The dataclass
#: holds the one default (the parameter's default is read from it), and the node builds the settings from these
#: parameters through this table (``settings_kwargs``). The operating point (anomaly_threshold, min_obstacle_area)
#: is not here: unset, it comes from the model (dsa_core.runtime.operating_point.resolve_operating_point).
SETTINGS_FIELDS: dict[str, tuple[type, str]] = {
    "debounce_frames": (ObstacleSettings, "debounce_frames"),
    "debounce_seconds": (ObstacleSettings, "debounce_seconds"),
    "drivable_classes": (ObstacleSettings, "drivable_classes"),
    "ego_mask_bottom_fraction": (ObstacleSettings, "ego_mask_bottom_fraction"),
    "horizon_gate": (ObstacleSettings, "horizon_gate"),
    "horizon_margin_deg": (ObstacleSettings, "horizon_margin_deg"),
    "touch_margin_px": (ObstacleSettings, "touch_margin_px"),
    "publish_color": (PipelineSettings, "make_color"),
    "publish_overlay": (PipelineSettings, "make_overlay"),
    "overlay_alpha": (PipelineSettings, "overlay_alpha"),
}


def _field_default(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def settings_default(param: str) -> Any:
    """A settings parameter's default, from its dataclass field (tuples become the ROS array type, a list)."""
    value = _field_default(*SETTINGS_FIELDS[param])
    return list(value) if isinstance(value, tuple) else value


def settings_kwargs(cls: type, value_of: Any) -> dict[str, Any]:
    """Keyword arguments of ``cls`` (ObstacleSettings or PipelineSettings) from the parameters:
    ``value_of(param)`` -> value, converted to the field's type."""
    out = {}
    for param, (owner, name) in SETTINGS_FIELDS.items():
        if owner is cls:
            default, value = _field_default(owner, name), value_of(param)
            out[name] = tuple(int(v) for v in value) if isinstance(default, tuple) else type(default)(value)
    return out


def same_value(a: Any, b: Any) -> bool:
    """Parameter values equal (NaN equals NaN: the unset threshold; arrays compare by content): whether a value set
    is the one stored."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if not isinstance(a, (str, bytes)) and hasattr(a, "__len__"):
        return hasattr(b, "__len__") and list(a) == list(b)
    return a == b


def pipeline_settings(manifest: dict[str, Any] | None, value_of: Callable[[str], Any]) -> tuple[PipelineSettings, Any]:
    """PipelineSettings from the node's parameters (``value_of(name)`` -> value) and the operating point in force
    (threshold and minimum area: the parameter if set, else the model's manifest, else the per-score fallback;
    dsa_core.runtime.operating_point.resolve_operating_point)."""
    from dsa_core.runtime.operating_point import resolve_operating_point

    op = resolve_operating_point(manifest, float(value_of("anomaly_threshold")), int(value_of("min_obstacle_area")))
    obstacles = ObstacleSettings(min_area=op.min_area_px, min_area_fraction=op.min_area_fraction,
                                 **settings_kwargs(ObstacleSettings, value_of))
    return PipelineSettings(anomaly_threshold=op.anomaly_threshold, obstacles=obstacles,
                            **settings_kwargs(PipelineSettings, value_of)), op


def threshold_problem(value: float, manifest: dict[str, Any] | None) -> str | None:
    """Why ``value`` is no anomaly threshold for the model's score type (from its manifest), else None. NaN (unset)
    and a model without a known score range are always accepted."""
    from dsa_core.export.manifest import anomaly_score_range

    if math.isnan(value):
        return None  # unset: the manifest's calibrated value (dsa_core.runtime.operating_point)
    bounds = anomaly_score_range(manifest) if isinstance(manifest, dict) else None
    if bounds is None or bounds[0] < value <= bounds[1]:
        return None
    return (f"anomaly_threshold: {value} is outside ({bounds[0]}, {bounds[1]}], the useful range of the model's "
            f"{manifest.get('score')} score ({'every' if value <= bounds[0] else 'no'} pixel would be an anomaly)")


@dataclass(frozen=True)
class ParamSpec:
    name: str  # for camera parameters the suffix after "camera.<name>."
    default: Any
    description: str
    read_only: bool = False
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    choices: tuple[str, ...] | None = None

    def expected(self) -> str:
        """What a valid value looks like, in words (for errors and --help)."""
        d = self.default
        kind = ("a list of strings" if isinstance(d, list) and all(isinstance(v, str) for v in d) else
                "a list of integers" if isinstance(d, list) else "true or false" if isinstance(d, bool) else
                "an integer" if isinstance(d, int) else "a float" if isinstance(d, float) else "a string")
        if self.choices:
            kind += " from " + ", ".join(self.choices)
        rng = self.float_range or self.int_range
        if rng:
            kind += f" in [{rng[0]}, {rng[1]}]"
        return kind


NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("cameras", ["front"], "camera names; each has camera.<name>.* parameters and ~/<name>/* outputs",
              read_only=True),
    ParamSpec("model_dir", "", "exported model directory (dsa export: ONNX graphs + manifest.json); empty = the "
              "default model installed with the package (share/dsa_perception/models/dsa_nano)", read_only=True),
    ParamSpec("backends", ["tensorrt", "onnxruntime", "torch"],
              "backend preference list; the first that starts is used, the next ones are run-time fallbacks",
              read_only=True, choices=BACKEND_KINDS),
    ParamSpec("device", "cpu", "inference device: cpu, cuda or cuda:N", read_only=True),
    ParamSpec("precision", "fp32", "inference precision (backends that cannot run it are skipped)", read_only=True,
              choices=PRECISIONS),
    ParamSpec("inference_threads", 0, "CPU threads for onnxruntime / openvino / torch (0 = library default)", read_only=True,
              int_range=(0, 256)),
    # default = dsa_core.runtime.onnxruntime_backend.DEFAULT_ALLOW_SPINNING (checked in test_runtime_threads.py)
    ParamSpec("allow_spinning", False, "onnxruntime: idle inference threads busy-wait for work (off: they sleep; "
              "measured better for the whole node on a shared CPU, results/bench_node_threads.md)", read_only=True),
    ParamSpec("msda", MSDA_CHOICES[0], "tensorrt: deformable attention as TensorRT's MultiscaleDeformableAttnPlugin_TRT "
              "(auto: when the model dir has the plugin graph, dsa export --msda-plugin, and TensorRT registers the "
              "plugin, else the standard graph; plugin: the plugin graph or the backend fails; decomposition: the "
              "standard graph)", read_only=True, choices=MSDA_CHOICES),
    ParamSpec("build_only", False, "create the backend (build / cache a TensorRT engine) and exit", read_only=True),
    ParamSpec("anomaly_threshold", math.nan, "anomaly score at or above which a pixel is in the anomaly mask; NaN = "
              "unset: the model's calibrated value (manifest.json, dsa calibrate), else a per-score fallback"),
    ParamSpec("min_obstacle_area", 0, "minimum pixels of an anomaly-mask component to become an obstacle; 0 = unset: "
              "the model's calibrated share of the image, else a fallback share", int_range=(0, 100_000_000)),
    ParamSpec("debounce_frames", settings_default("debounce_frames"),
              "matched frames before an obstacle is confirmed and raises the alert", int_range=(1, 1000)),
    ParamSpec("debounce_seconds", settings_default("debounce_seconds"),
              "... or matches in consecutive processed frames spanning this long by the header stamps confirm it "
              "(0 = off): a node that cannot process every frame still confirms a persistent obstacle; e.g. "
              "(debounce_frames - 1) / camera fps", float_range=(0.0, MAX_DEBOUNCE_S)),
    ParamSpec("drivable_classes", settings_default("drivable_classes"),
              "train ids of the drivable area (0 road, 1 sidewalk, ...)"),
    ParamSpec("ego_mask_bottom_fraction", settings_default("ego_mask_bottom_fraction"),
              "share of the image's bottom rows showing the ego vehicle (hood); no obstacle is searched there",
              float_range=(0.0, 0.5)),
    ParamSpec("horizon_gate", settings_default("horizon_gate"),
              "drop anomaly components whose bottom edge lies above the horizon by more than horizon_margin_deg: "
              "they do not stand on the road (needs the camera's CameraInfo and mount_pitch_deg; no-op without "
              "CameraInfo)"),
    ParamSpec("horizon_margin_deg", settings_default("horizon_margin_deg"),
              "how far above the horizon a component's bottom edge may lie (road grade, pitch error), degrees",
              float_range=(0.0, MAX_HORIZON_MARGIN_DEG)),
    ParamSpec("touch_margin_px", settings_default("touch_margin_px"),
              "an obstacle within this many pixels of the drivable area touches it", int_range=(0, 100)),
    ParamSpec("publish_color", settings_default("publish_color"), "publish ~/<camera>/semantic_color (rgb8)"),
    ParamSpec("publish_overlay", settings_default("publish_overlay"), "publish ~/<camera>/overlay (rgb8)"),
    ParamSpec("publish_markers", True, "publish ~/<camera>/markers (MarkerArray)"),
    ParamSpec("overlay_alpha", settings_default("overlay_alpha"), "weight of the segmentation colours in the overlay",
              float_range=(0.0, 1.0)),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "input images with more pixels (width x height) are rejected "
              "(too_large) before decoding; default 3840 x 2160 (4K UHD)", int_range=(1, 1 << 31)),
    ParamSpec("max_image_side", DEFAULT_MAX_SIDE, "input images with a longer width or height are rejected "
              "(too_large) before decoding; bounds per-row costs the area cap does not", int_range=(1, 1 << 20)),
    ParamSpec("qos_depth", 1, "input subscription history depth", read_only=True, int_range=(1, 1000)),
    ParamSpec("qos_reliability", "best_effort", "input subscription reliability", read_only=True,
              choices=RELIABILITIES),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics", read_only=True, float_range=(0.05, 60.0)),
    ParamSpec("reject_log_period_s", 5.0, "at most one log line per camera and reject / frame-error reason per period",
              float_range=(0.0, 3600.0)),
    ParamSpec("backend_retry_period_s", 30.0, "after a run-time backend failure, try to bring the preferred backend "
              "back this often (0 = never)", float_range=(0.0, 86400.0)),
    ParamSpec("watchdog_timeout_s", 10.0, "/diagnostics goes to ERROR when a camera's decoded input has waited this "
              "long without any output being published (or when the inference worker is not running)",
              float_range=(0.1, 3600.0)),
)

CAMERA_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("image_topic", "", "image topic (sensor_msgs/Image, or CompressedImage when transport is "
              "compressed); empty = /<name>/image_raw[/compressed]", read_only=True),
    ParamSpec("transport", "raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)",
              read_only=True, choices=TRANSPORTS),
    ParamSpec("camera_info_topic", "", "sensor_msgs/CameraInfo topic for the horizon gate and flat-ground distances "
              "(empty = neither)",
              read_only=True),
    ParamSpec("mount_height_m", 0.0, "camera height above a flat ground (0 = unknown: no distances)",
              float_range=(0.0, 100.0)),
    ParamSpec("mount_pitch_deg", 0.0, "camera pitch below the horizon, degrees (distances and the horizon gate)",
              float_range=MOUNT_PITCH_RANGE_DEG),
    ParamSpec("rate_hz", 0.0, "the camera's frame rate; /diagnostics then reports the delivered fraction and warns "
              "below 80 % (0 = unknown)", float_range=(0.0, 1000.0)),
)

_BY_NAME = {p.name: p for p in NODE_PARAMS}
_CAMERA_BY_SUFFIX = {p.name: p for p in CAMERA_PARAMS}


def camera_param(camera: str, suffix: str) -> str:
    return f"camera.{camera}.{suffix}"


def camera_parameters(cameras: Any) -> list[tuple[str, ParamSpec]]:
    """(full name, spec) of the parameters of every camera in ``cameras``."""
    return [(camera_param(cam, spec.name), spec) for cam in cameras for spec in CAMERA_PARAMS]


def spec_for(name: str) -> ParamSpec | None:
    """The spec of a full parameter name (camera.<name>.<suffix> included), None for unknown names."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "camera":
        return _CAMERA_BY_SUFFIX.get(parts[2])
    return None


def override_problem(name: str, value: Any) -> str:
    """One line for a start-up value rclpy refused (type or range): the parameter, what it takes, how to fix it.
    Why: rclpy raises InvalidParameter{Type,Value}Exception with a traceback that names neither the fix nor the
    valid values."""
    spec = spec_for(name)
    expected = spec.expected() if spec else "a value of the declared type"
    return (f"{name}: got {value!r}, expected {expected}; fix the params file or pass "
            f"--ros-args -p {name}:=<value>")


def backend_options(kind: str, value_of: Callable[[str], Any]) -> dict[str, Any]:
    """The keyword options the node passes to ``dsa_core.runtime.create_backend(kind, ...)`` besides model dir,
    device and precision, from its parameters (``value_of(name)`` -> value): threads and spinning for onnxruntime,
    threads for openvino and torch, the deformable-attention graph for tensorrt."""
    threads = int(value_of("inference_threads")) or None
    if kind == "onnxruntime":
        return {"intra_op_threads": threads, "allow_spinning": bool(value_of("allow_spinning"))}
    if kind in ("openvino", "torch"):
        return {"num_threads": threads}
    if kind == "tensorrt":
        return {"msda": str(value_of("msda"))}
    return {}


def model_dir_problem(model_dir: str) -> str | None:
    """Why ``model_dir`` (the parameter's value) cannot be a model directory: one line naming the parameter and a
    fix; None when it may be one, or when it is empty (the installed default model is used)."""
    if not model_dir:
        return None
    path = Path(model_dir).expanduser()
    fix = "set model_dir:=<a `dsa export` directory> (launch argument or -p), or leave it empty for the default model"
    if not path.exists():
        return f"parameter model_dir: {model_dir} does not exist; {fix}"
    if not path.is_dir():
        return f"parameter model_dir: {model_dir} is a file, not a directory; {fix}"
    if not (path / "manifest.json").is_file():
        return (f"parameter model_dir: {model_dir} has no manifest.json, so it is no `dsa export` model directory; "
                f"{fix}")
    return None


def wants_help(argv: list[str]) -> bool:
    """The node's command line asks for --help / -h before --ros-args (after it, the arguments belong to ROS)."""
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return any(a in ("-h", "--help") for a in own)


def help_text(executable: str) -> str:
    """`<executable> --help`: usage and every parameter with its default, valid values and meaning."""
    lines = [f"usage: {executable} [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] [-r FROM:=TO ...]]",
             "       ros2 launch dsa_perception dsa.launch.py [model_dir:=DIR] [camera_topic:=TOPIC] ...",
             "", "Road-scene segmentation and anomaly (unknown obstacle) detection for one or more cameras.",
             "Defaults: config/dsa.yaml. (ro) = read-only after start; the others can be set at run time.", "",
             "parameters:"]

    def entry(name: str, spec: ParamSpec) -> None:
        ro = " (ro)" if spec.read_only else ""
        default = "NaN" if isinstance(spec.default, float) and math.isnan(spec.default) else repr(spec.default)
        lines.append(f"  {name}{ro} = {default}  [{spec.expected()}]")
        lines.append(f"      {spec.description}")

    for spec in NODE_PARAMS:
        entry(spec.name, spec)
    lines.append("per camera C of `cameras`:")
    for spec in CAMERA_PARAMS:
        entry(camera_param("C", spec.name), spec)
    return "\n".join(lines) + "\n"


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name`` (None when it is). Ranges and types are checked by
    rclpy from the descriptors; this adds what descriptors cannot express."""
    spec = spec_for(name)
    if spec is None:
        return None
    if spec.choices:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in values if v not in spec.choices]
        if bad:
            return f"{name}: {bad} not in {list(spec.choices)}"
        if isinstance(value, (list, tuple)) and (not values or len(set(values)) != len(values)):
            return f"{name}: must be a non-empty list without repetitions, got {values}"
    if name == "anomaly_threshold" and isinstance(value, float) and not math.isnan(value) \
            and not abs(value) <= ANOMALY_THRESHOLD_LIMIT:
        return f"anomaly_threshold: must be NaN (unset) or within +-{ANOMALY_THRESHOLD_LIMIT:g}, got {value}"
    if isinstance(value, float) and not math.isfinite(value) and not (name == "anomaly_threshold" and math.isnan(value)):
        return f"{name}: must be finite, got {value}"
    if name == "cameras":
        bad = [c for c in value if not CAMERA_NAME.match(c)]
        if bad or not value or len(set(value)) != len(value):
            return f"cameras: need unique names matching {CAMERA_NAME.pattern}, got {list(value)}"
    if name == "drivable_classes":
        ids = list(value)
        if not ids or any(not 0 <= int(c) <= 254 for c in ids):
            return f"drivable_classes: need a non-empty list of train ids 0..254, got {ids}"
    if name == "device" and not DEVICE.match(value):
        return f"device: expected cpu, cuda or cuda:N, got {value!r}"
    return None
