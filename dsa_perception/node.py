"""`dsa_perception_node`: cameras in; segmentation, anomaly score/mask, overlay, obstacle alerts, markers out.

Per camera C (all outputs copy the input image header; images have the input size):
  ~/C/semantic (mono8 train ids), ~/C/semantic_color (rgb8), ~/C/anomaly_score (32FC1), ~/C/anomaly_mask
  (mono8 0/255), ~/C/overlay (rgb8), ~/C/obstacles (dsa_perception/ObstacleAlert, every processed frame),
  ~/C/markers (visualization_msgs/MarkerArray), ~/C/detections (vision_msgs/Detection2DArray, when vision_msgs is
  installed); plus ~/class_map (dsa_perception/ClassMap, latched) and /diagnostics at diagnostics_period_s.
Image outputs without subscribers are not filled (lazy); alerts and markers are always published.
Parameters: dsa_core/perception/params.py (defaults in config/dsa.yaml).

Threading: subscription callbacks (executor thread) only decode and keep the newest frame per camera, counting
overwritten frames as dropped; one worker thread runs the engine on the newest frames of all cameras (batched) and
publishes. Decoding in the callback means a malformed message is rejected and counted on arrival and never displaces
a good frame that is waiting for the worker.

Failure handling (the worker must never die silently): every per-frame stage after the backend (post-processing and
obstacles, message building, publishing) is guarded per camera and frame: an error is counted under
``<stage>.<exception type>``, logged (throttled) and the next frame goes on. Only an exception from the backend's
``infer`` is a backend failure: the node falls back along ``backends`` and, every ``backend_retry_period_s``, tries
to bring back the preferred backend that failed (in a helper thread, so a slow engine build does not stall
inference). /diagnostics has a worker status that is ERROR when the worker thread is not alive, and each camera is
ERROR when decoded input has waited ``watchdog_timeout_s`` without any output.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from dsa_core.perception.camera_state import CameraState, PendingFrame, take_batch
from dsa_core.perception.health import Health, Level, backend_health, camera_health, worker_health
from dsa_core.perception.image_codec import ImageDecodeError, compressed_msg_to_rgb, fill_image_msg, image_msg_to_rgb
from dsa_core.perception.interop import class_map_layout, detection2d_layout, detection_layout_problem, fill_message
from dsa_core.perception.messages import IMAGE_TOPICS, image_outputs, marker_layouts, obstacle_alert_layout
from dsa_perception.model_location import DEFAULT_MODEL, default_model_dir
from dsa_perception.msg import ClassMap, ObstacleAlert
from dsa_core.perception.obstacles import GroundCamera, camera_info_values, ground_camera_for_image
from dsa_core.perception.params import (NODE_PARAMS, ParamSpec, backend_options, camera_param, check_value,
                                        camera_parameters, help_text, model_dir_problem, override_problem,
                                        pipeline_settings, same_value, threshold_problem, wants_help)
from dsa_core.perception.pipeline import CameraResult, Frame, InferenceBackend, PerceptionPipeline, PipelineSettings
from dsa_core.runtime.chain import BackendChain, BackendFactory

INTERNAL_ERROR = "internal_error"
BAD_CAMERA_INFO = "bad_camera_info"
LEVELS = {Level.OK: DiagnosticStatus.OK, Level.WARN: DiagnosticStatus.WARN, Level.ERROR: DiagnosticStatus.ERROR}


def _descriptor(spec: ParamSpec, full_name: str) -> ParameterDescriptor:
    """The ROS descriptor of one table entry: rclpy then refuses out-of-range and read-only sets itself."""
    d = ParameterDescriptor(name=full_name, description=spec.description, read_only=spec.read_only)
    if spec.float_range:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                     to_value=float(spec.float_range[1]), step=0.0)]
    if spec.int_range:
        d.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    return d


class _ContextGone(Exception):
    """The rclpy context was shut down (Ctrl-C, external shutdown) while the worker was publishing."""


class DsaPerceptionNode(Node):
    """The perception node; ``backend_factory(kind)`` replaces dsa_core.runtime.create_backend (tests, tools)."""

    MANAGED = False  # True: a lifecycle node (dsa_perception/lifecycle_node.py) loads and starts on transitions

    def __init__(self, node_name: str = "dsa_perception", *, backend_factory: BackendFactory | None = None,
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Condition()
        try:
            self._declare()
            self.cameras: list[str] = list(self.get_parameter("cameras").value)
            self._stored_check: tuple[Any, list[Any], float] | None = None  # Humble: (timer, params, deadline)
            self._stored_lock = threading.Lock()
            if hasattr(self, "add_post_set_parameters_callback"):  # rclpy >= 4 (Iron and newer)
                self.add_on_set_parameters_callback(self._validate_parameters)
                self.add_post_set_parameters_callback(self._apply_parameters)
            else:  # Humble (rclpy 3.3) has only the validating callback
                self.add_on_set_parameters_callback(self._validate_then_apply_when_stored)
            self._factory = backend_factory or self._runtime_backend
            self._custom_factory = backend_factory
            self.pipeline: PerceptionPipeline | None = None
            self._entities: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy, entity) of the active interfaces
            self._cams = {name: CameraState(name) for name in self.cameras}
            self._outputs: dict[str, dict[str, Any]] = {name: {} for name in self.cameras}  # camera -> output -> pub
            if not self.MANAGED:  # the lifecycle variant: on_configure loads, on_activate starts (lifecycle_node.py)
                self._load()
                if not self.get_parameter("build_only").value:
                    self._start()
        except BaseException:
            self.destroy_node()  # a refused start releases its backend and ROS handles now, not whenever GC runs
            raise

    def _load(self) -> None:
        """Model check, backend chain, pipeline and operating point (lifecycle: configure)."""
        if self._custom_factory is None:  # a missing model: one clear error now, not one per backend
            problem = model_dir_problem(self.get_parameter("model_dir").value)
            if problem:
                raise ValueError(problem)
            if not self.get_parameter("model_dir").value:
                self._default_model()
        self.backends = BackendChain(  # start, fallback, integrity and retry: dsa_core/runtime/chain.py
            self.get_parameter("backends").value, self._factory, logger=self.get_logger(), on_ready=self._wake_worker,
            retry_period_s=lambda: float(self.get_parameter("backend_retry_period_s").value))
        self.failed_batches = 0
        self.worker_error: str | None = None
        self._worker_beat = time.monotonic()
        backend = self.backends.start()
        self.pipeline = PerceptionPipeline(backend, self._pipeline_settings(backend))
        self.get_logger().info(f"operating point: {self.operating_point.summary()}")
        problem = self._threshold_problem(float(self.pipeline.settings.anomaly_threshold))  # the value in force
        if problem:
            raise ValueError(f"invalid parameter {problem}")

    def _start(self) -> None:
        """Subscriptions, publishers, diagnostics and the worker thread (lifecycle: activate)."""
        self._stop.clear()
        self._create_interfaces()
        self._worker = threading.Thread(target=self._work_guarded, name="dsa_inference", daemon=True)
        self._worker.start()

    def _halt(self) -> None:
        """Stop the worker, then remove subscriptions, publishers and the diagnostics timer; the backend stays
        loaded (lifecycle: deactivate)."""
        self._stop_worker()
        self._worker = None
        for destroy, entity in reversed(self._entities):
            destroy(entity)
        self._entities.clear()
        with self._lock:
            for st in self._cams.values():
                st.clear()
            for pubs in self._outputs.values():
                pubs.clear()

    # --- parameters ----------------------------------------------------------------------------------------------

    def _declare_one(self, full: str, spec: Any) -> None:
        """Declare; a start-up value rclpy refuses (type, range) becomes one line naming the parameter and a fix."""
        try:
            self.declare_parameter(full, spec.default, _descriptor(spec, full))
        except (InvalidParameterTypeException, InvalidParameterValueException):
            given = getattr(self, "_parameter_overrides", {}).get(full)
            raise ValueError("invalid parameter " + override_problem(
                full, given.value if given is not None else "?")) from None

    def _declare(self) -> None:
        """The node's parameters, then each camera's (``cameras`` is a node parameter); each checked when declared."""
        for group in ("node", "cameras"):
            specs = ([(s.name, s) for s in NODE_PARAMS] if group == "node"
                     else camera_parameters(self.get_parameter("cameras").value))
            for full, spec in specs:
                self._declare_one(full, spec)
                reason = check_value(full, self.get_parameter(full).value)
                if reason:
                    raise ValueError(f"invalid parameter {reason}")
        # rclpy silently ignores overrides (params file, -p) that name no declared parameter: typos, or cameras
        # missing from `cameras`. Say so. (rclpy has no public accessor for the overrides.)
        ignored = sorted(set(getattr(self, "_parameter_overrides", {})) - set(self._parameters))
        if ignored:
            self.get_logger().warning(f"ignoring parameters this node does not declare: {', '.join(ignored)}")

    def _validate_parameters(self, params: list[Any]) -> SetParametersResult:
        """Refuse invalid values with the reason; no side effects here (rclpy may still reject the set)."""
        for p in params:
            reason = check_value(p.name, p.value)
            if reason is None and p.name == "anomaly_threshold" and isinstance(p.value, float):
                reason = self._threshold_problem(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _threshold_problem(self, value: float) -> str | None:
        return threshold_problem(value, getattr(getattr(self, "pipeline", None) and self.pipeline.backend,
                                                "manifest", None))

    def _validate_then_apply_when_stored(self, params: list[Any]) -> SetParametersResult:
        """Humble has no post-set callback: apply the proposed values here, so the change is in force when the
        set_parameters call returns (as on Iron+). rclpy checks descriptors before this callback; should anything
        after it refuse the set, a timer sees the old values still stored and re-applies them."""
        result = self._validate_parameters(params)
        if result.successful:
            self._apply_parameters(params, pending={p.name: p.value for p in params})
            with self._stored_lock:
                if self._stored_check is not None:
                    self.destroy_timer(self._stored_check[0])
                timer = self.create_timer(0.01, self._confirm_stored)
                self._stored_check = (timer, list(params), time.monotonic() + 1.0)
        return result

    def _confirm_stored(self) -> None:
        with self._stored_lock:
            if self._stored_check is None:
                return
            timer, params, deadline = self._stored_check
            stored = all(same_value(self.get_parameter(p.name).value, p.value) for p in params)
            if not stored and time.monotonic() <= deadline:
                return
            self.destroy_timer(timer)
            self._stored_check = None
        if not stored:
            self.get_logger().warning("parameter change refused after validation; the stored values are in force")
            self._apply_parameters([])

    def _apply_parameters(self, params: list[Any], pending: dict[str, Any] | None = None) -> None:
        if self.pipeline is None:
            return  # lifecycle node not configured yet: configure reads the parameters
        self.pipeline.reconfigure(self._pipeline_settings(pending=pending))
        self.get_logger().info("parameters changed: " + ", ".join(f"{p.name}={p.value!r}" for p in params)
                               + f"; operating point: {self.operating_point.summary()}")

    def _pipeline_settings(self, backend: InferenceBackend | None = None,
                           pending: dict[str, Any] | None = None) -> PipelineSettings:
        """Settings from the parameters (``pending``: values being set, not yet stored); the operating point in
        force is kept in ``self.operating_point``."""
        pending = pending or {}
        backend = backend if backend is not None else self.pipeline.backend
        settings, self.operating_point = pipeline_settings(
            getattr(backend, "manifest", None),
            lambda name: pending[name] if name in pending else self.get_parameter(name).value)
        return settings

    # --- backends ------------------------------------------------------------------------------------------------

    def _runtime_backend(self, kind: str) -> InferenceBackend:
        from dsa_core.runtime import create_backend

        model_dir = self.get_parameter("model_dir").value or self._default_model()
        return create_backend(kind, model_dir, device=self.get_parameter("device").value,
                              precision=self.get_parameter("precision").value,
                              **backend_options(kind, lambda name: self.get_parameter(name).value))

    def _default_model(self) -> str:
        """model_dir left empty: the default model installed with the package (looked up and logged once)."""
        if getattr(self, "_default_model_dir", None) is None:
            found = default_model_dir()
            if found is None:
                raise ValueError(f"parameter model_dir is empty and no default model is installed (share/"
                                 f"dsa_perception/models/{DEFAULT_MODEL}): set model_dir:=<a dsa export directory>")
            self._default_model_dir = str(found)
            self.get_logger().info(f"model_dir is empty: using the default model {found}")
        return self._default_model_dir

    def _wake_worker(self) -> None:
        """A retried backend is ready (called from the chain's retry thread): the worker swaps it in now."""
        with self._lock:
            self._lock.notify_all()

    # --- ROS interfaces ------------------------------------------------------------------------------------------

    def _create_interfaces(self) -> None:
        try:  # vision_msgs is optional (no wheel; apt installs have it)
            from vision_msgs.msg import Detection2DArray as detections_cls
        except ImportError:
            detections_cls = None
        self._detections_cls = detections_cls
        problem = detection_layout_problem(self._detections_cls) if self._detections_cls is not None else None
        if problem:
            self.get_logger().warning(f"vision_msgs is installed but its Detection2D layout is not the 4.x one "
                                      f"({problem}): no ~/<camera>/detections")
            self._detections_cls = None
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        class_map_pub = self.create_publisher(ClassMap, "~/class_map", latched)
        self._entities.append((self.destroy_publisher, class_map_pub))
        class_map = fill_message(ClassMap(), class_map_layout(getattr(self.pipeline.backend, "manifest", None)))
        class_map.header.stamp = self.get_clock().now().to_msg()
        class_map_pub.publish(class_map)
        reliability = (ReliabilityPolicy.BEST_EFFORT if self.get_parameter("qos_reliability").value == "best_effort"
                       else ReliabilityPolicy.RELIABLE)
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.get_parameter("qos_depth").value),
                            reliability=reliability)
        qos_images = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        qos_alerts = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for cam in self.cameras:
            p = lambda suffix: self.get_parameter(camera_param(cam, suffix)).value  # noqa: E731
            compressed = p("transport") == "compressed"
            topic = p("image_topic") or (f"/{cam}/image_raw/compressed" if compressed else f"/{cam}/image_raw")
            sub = self.create_subscription(CompressedImage if compressed else Image, topic,
                                           lambda msg, c=cam, z=compressed: self._on_image(c, msg, z), qos_in)
            self._entities.append((self.destroy_subscription, sub))
            info_sub = None
            if p("camera_info_topic"):
                info_sub = self.create_subscription(CameraInfo, p("camera_info_topic"),
                                                    lambda msg, c=cam: self._on_camera_info(c, msg), qos_in)
                self._entities.append((self.destroy_subscription, info_sub))
            pubs = self._outputs[cam]
            for out in IMAGE_TOPICS:
                pubs[out] = self.create_publisher(Image, f"~/{cam}/{out}", qos_images)
            pubs["obstacles"] = self.create_publisher(ObstacleAlert, f"~/{cam}/obstacles", qos_alerts)
            pubs["markers"] = self.create_publisher(MarkerArray, f"~/{cam}/markers", qos_alerts)
            if self._detections_cls is not None:
                pubs["detections"] = self.create_publisher(self._detections_cls, f"~/{cam}/detections", qos_alerts)
            self._entities += [(self.destroy_publisher, pub) for pub in pubs.values()]
            # the names in force, after namespace and remapping (--ros-args -r, launch remappings)
            out_base = pubs["obstacles"].topic_name.rsplit("/", 1)[0]
            self.get_logger().info(
                f"camera {cam}: {'CompressedImage' if compressed else 'Image'} on {sub.topic_name}"
                + (f", CameraInfo on {info_sub.topic_name}" if info_sub is not None else ", no CameraInfo")
                + f"; outputs {out_base}/{{semantic,semantic_color,anomaly_score,anomaly_mask,overlay,obstacles,"
                  f"markers}}")
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos_alerts)
        self._diag_period = float(self.get_parameter("diagnostics_period_s").value)
        self._diag_last = time.monotonic()
        self._entities += [(self.destroy_publisher, self._diag_pub),
                           (self.destroy_timer, self.create_timer(self._diag_period, self._publish_diagnostics))]

    def _on_camera_info(self, cam: str, msg: CameraInfo) -> None:
        """Validated like an image: an implausible CameraInfo is rejected and counted (bad_camera_info) and the last
        good one stays in force; an all-zero K (uncalibrated, by convention) means no distances."""
        st = self._cams[cam]
        try:
            info, problem = camera_info_values(msg.k, msg.width, msg.height,
                                               int(self.get_parameter("max_image_side").value))
        except Exception as exc:  # noqa: BLE001 - a malformed message is rejected, not a crash of the callback
            info, problem = None, f"{type(exc).__name__}: {exc}"
        if problem:
            self._reject(st, BAD_CAMERA_INFO, f"CameraInfo refused, {problem}", what="CameraInfo")
            return
        if info is None and st.info is not None:
            self.get_logger().warning(f"camera {cam}: CameraInfo without calibration (K = 0): no distances")
        st.info = info

    def _on_image(self, cam: str, msg: Any, compressed: bool) -> None:
        st = self._cams[cam]
        now = time.monotonic()
        with self._lock:  # counters are read by the diagnostics timer, possibly on another executor thread
            st.arrived(now)
        max_pixels = int(self.get_parameter("max_image_pixels").value)
        max_side = int(self.get_parameter("max_image_side").value)
        try:
            rgb = (compressed_msg_to_rgb(msg, max_pixels, max_side) if compressed
                   else image_msg_to_rgb(msg, max_pixels, max_side))
        except ImageDecodeError as exc:
            self._reject(st, exc.reason.value, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the node; counted and logged in full
            self._reject(st, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return
        frame = PendingFrame(rgb, msg.header, now, (time.monotonic() - now) * 1e3)
        with self._lock:
            st.offer(frame)
            self._lock.notify()

    def _reject(self, st: CameraState, reason: str, text: str, what: str = "image") -> None:
        """Count the rejected message; log at most once per (camera, reason) and period, with the suppressed count."""
        with self._lock:
            st.rejected[reason] += 1
        self._log_throttled(st, reason, f"camera {st.name}: rejected {what}, {text}")

    def _frame_error(self, cam: str, stage: str, exc: BaseException, consequence: str = "frame dropped") -> None:
        """A frame failed in a stage after the backend: counted per (stage, exception type), logged (throttled,
        with the traceback the first time), and the worker goes on with the next frame."""
        st = self._cams[cam]
        key = f"{stage}.{type(exc).__name__}"
        with self._lock:
            first = st.count_error(key)
        detail = "\n" + "".join(traceback.format_exception(exc)) if first else ""
        self._log_throttled(st, "error:" + key, f"camera {st.name}: {consequence}, {stage} failed: "
                                                f"{type(exc).__name__}: {exc}{detail}")

    def _log_throttled(self, st: CameraState, key: str, text: str) -> None:
        with self._lock:
            more = st.log_due(key, time.monotonic(), float(self.get_parameter("reject_log_period_s").value))
        if more is not None:
            self.get_logger().error(f"{text}{more}")

    # --- worker --------------------------------------------------------------------------------------------------

    def _work_guarded(self) -> None:
        """The worker thread's body; if it ever ends for another reason than shutdown, say so loudly (the watchdog
        in /diagnostics reports it too)."""
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - recorded and logged; nothing may end this thread silently
            self.worker_error = f"{type(exc).__name__}: {exc}"
            if self.context.ok() and not self._stop.is_set():
                self.get_logger().fatal("inference worker stopped: " + "".join(traceback.format_exception(exc)))
            raise

    def _work(self) -> None:
        while not self._stop.is_set():
            self._worker_beat = time.monotonic()
            retried = self.backends.poll()
            if retried is not None:
                self.pipeline.backend = retried
            with self._lock:
                self._lock.wait_for(lambda: self._stop.is_set() or any(s.pending for s in self._cams.values())
                                    or self.backends.retry_ready, timeout=0.5)
                batch = take_batch(self._cams)
            if batch and not self._stop.is_set():
                try:
                    self._process(batch)
                except _ContextGone:
                    return  # Ctrl-C / external shutdown while publishing: the end of the node, not an error
                except Exception as exc:  # noqa: BLE001 - outside every per-stage guard: a bug; counted, go on
                    for cam in batch:
                        self._frame_error(cam, "worker", exc)

    def _process(self, batch: dict[str, PendingFrame]) -> None:
        picked = time.monotonic()
        frames = {}
        for c, p in batch.items():
            try:
                frames[c] = Frame(p.rgb, p.header.stamp, self._ground_camera(c, p.rgb.shape),
                                  want_color=self._listened(c, "semantic_color"),
                                  want_overlay=self._listened(c, "overlay"))
            except Exception as exc:  # noqa: BLE001
                self._frame_error(c, "prepare", exc)
        raw = self._infer(frames)
        settings = self.pipeline.settings
        for cam, out in raw.items():
            pending = batch[cam]
            cpu0 = time.thread_time()  # the worker's CPU time for this frame's own work: robust to a loaded machine
            try:
                res = self.pipeline.postprocess(cam, frames[cam], out, settings)
            except Exception as exc:  # noqa: BLE001 - mask / obstacles / visualisation of this frame only
                self._frame_error(cam, "postprocess", exc)
                continue
            m0 = time.monotonic()
            try:
                messages = self._messages(cam, res, pending.header)
            except Exception as exc:  # noqa: BLE001 - e.g. a value a message field refuses
                self._frame_error(cam, "message", exc)
                continue
            t0 = time.monotonic()
            try:
                for publisher, msg in messages:
                    publisher.publish(msg)
            except Exception as exc:  # noqa: BLE001
                if not self.context.ok():
                    raise _ContextGone() from exc
                self._frame_error(cam, "publish", exc)
                continue
            done = time.monotonic()
            own_cpu = (time.thread_time() - cpu0) * 1e3
            st = self._cams[cam]
            stamp = pending.header.stamp.sec + pending.header.stamp.nanosec * 1e-9
            end_to_end = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3
            stage_ms = {stage: res.timings[stage] for stage in ("inference", "mask", "obstacles", "visualization")}
            with self._lock:
                st.delivered(pending, picked, done, {**stage_ms, "message": (t0 - m0) * 1e3, "publish": (done - t0) * 1e3,
                                                     "own_cpu": own_cpu}, end_to_end)
                st.road_top.add(res.road_top_deg, frames[cam].camera)

    def _infer(self, frames: dict[str, Frame]) -> dict[str, Any]:
        """The backend call; its exceptions (and only these) move along the backend chain. {} when none worked."""
        while frames:
            try:
                raw = self.pipeline.infer(frames)
            except Exception as exc:  # noqa: BLE001 - backend failure: fall back and run the same frames again
                backend = self.backends.fail(exc)
                if backend is None:
                    self.failed_batches += 1
                    return {}
                self.pipeline.backend = backend
                continue
            self.backends.answered()
            return raw
        return {}

    def _listened(self, cam: str, topic: str) -> bool:
        return self._outputs[cam][topic].get_subscription_count() > 0

    def _ground_camera(self, cam: str, shape: tuple[int, ...]) -> GroundCamera | None:
        """The flat-ground camera for this image size (the horizon gate; distances when the mount height is known);
        None without CameraInfo, and when the CameraInfo, scaled to this image, is no longer plausible (counted as
        camera_info.ValueError)."""
        camera, problem = ground_camera_for_image(
            self._cams[cam].info, int(shape[1]), int(shape[0]),
            float(self.get_parameter(camera_param(cam, "mount_height_m")).value),
            math.radians(float(self.get_parameter(camera_param(cam, "mount_pitch_deg")).value)))
        if problem:
            self._frame_error(cam, "camera_info", ValueError(problem),
                              consequence="frame kept without distances or horizon gate")
        return camera

    def _messages(self, cam: str, res: CameraResult, header: Any) -> list[tuple[Any, Any]]:
        """Every output message of one frame, built before any is published (a frame goes out whole or not at all);
        what each holds: dsa_core/perception/messages.py."""
        pubs = self._outputs[cam]
        out: list[tuple[Any, Any]] = []
        for topic, array, encoding in image_outputs(res):
            if pubs[topic].get_subscription_count() == 0:
                continue  # nobody listens: skip the copy into a message (~1-3 ms per 720p image)
            out.append((pubs[topic], fill_image_msg(Image(header=header), array, encoding)))
        alert = obstacle_alert_layout(cam, res, self.pipeline.settings)
        out.append((pubs["obstacles"], fill_message(ObstacleAlert(header=header), alert)))
        if "detections" in pubs:
            layout = [{**d, "header": header} for d in detection2d_layout(res.obstacles.obstacles)]
            out.append((pubs["detections"], fill_message(self._detections_cls(header=header), {"detections": layout})))
        if self.get_parameter("publish_markers").value:
            markers = marker_layouts(cam, res.obstacles.obstacles, header, res.mask.shape[1], res.mask.shape[0],
                                     self._cams[cam].info)
            out.append((pubs["markers"], fill_message(MarkerArray(), {"markers": markers})))
        return out

    # --- diagnostics ---------------------------------------------------------------------------------------------

    def diagnostics(self) -> DiagnosticArray:
        """One status for the backend, one for the worker and one per camera (rates over the last period, delivered
        rate against camera.C.rate_hz, latency percentiles, rejected messages and failed frames, watchdog)."""
        now = time.monotonic()
        period = max(1e-3, now - self._diag_last)
        self._diag_last = now
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        name = self.get_name()
        arr.status.append(self._status(f"{name}: backend", backend_health(
            self.backends.status(now), self.failed_batches, getattr(self.pipeline.backend, "describe", None))))
        started = self._worker is not None
        alive = started and self._worker.is_alive()
        arr.status.append(self._status(f"{name}: worker", worker_health(started, alive, now - self._worker_beat,
                                                                        self.worker_error)))
        timeout = float(self.get_parameter("watchdog_timeout_s").value)
        for cam, st in self._cams.items():
            with self._lock:
                counters, arrivals, latencies, awaiting = st.snapshot()
                road_top = (st.road_top.median_deg(), st.road_top.frames()) if st.info is not None else None
            health = camera_health(counters, arrivals, latencies, awaiting, now=now, period_s=period,
                                   expected_hz=float(self.get_parameter(camera_param(cam, "rate_hz")).value),
                                   watchdog_timeout_s=timeout, worker_dead=started and not alive,
                                   backend_failed=self.backends.state == "failed", road_top=road_top,
                                   horizon_margin_deg=self.pipeline.settings.obstacles.horizon_margin_deg)
            arr.status.append(self._status(f"{name}: camera {cam}", health))
        return arr

    def _status(self, name: str, health: Health) -> DiagnosticStatus:
        return DiagnosticStatus(level=LEVELS[health.level], name=name, hardware_id=self.get_name(),
                                message=health.message,
                                values=[KeyValue(key=k, value=str(v)) for k, v in health.values.items()])

    def _publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diagnostics())

    def counters(self, cam: str) -> dict[str, Any]:
        """Thread-safe snapshot of one camera's counters (tests, tools)."""
        with self._lock:
            return self._cams[cam].counters()

    def _stop_worker(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)

    def destroy_node(self) -> None:
        self._stop_worker()
        backends = getattr(self, "backends", None)  # absent when __init__ stopped early (rclpy still cleans up)
        if backends is not None:
            backends.close()
        super().destroy_node()


def _guard_sigint() -> threading.Event:
    """Why: under `ros2 launch`, Ctrl-C reaches the node twice (the terminal's process group and launch's own
    SIGINT). The first ends spin; a second one used to land as KeyboardInterrupt inside destroy_node (a traceback,
    "process has died (exit -2)"). Installed before rclpy.init, so rclpy's handler chains to it.

    Returns the "cleaning up" event main() sets when shutdown starts: rclpy's own handler may end spin (external
    shutdown) before this Python handler runs, so the first SIGINT can also arrive during clean-up, where it must
    not interrupt anything either."""
    seen, cleaning_up = threading.Event(), threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if seen.is_set() or cleaning_up.is_set():
            return  # shutting down already
        seen.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return cleaning_up


def main(args: list[str] | None = None, node_class: type[DsaPerceptionNode] = DsaPerceptionNode) -> int:
    """Console script / `ros2 run dsa_perception dsa_perception_node [--ros-args ...]`."""
    argv = list(sys.argv if args is None else args)
    if wants_help(argv):
        print(help_text(Path(argv[0]).name if argv else "dsa_perception_node"), end="")
        return 0
    cleaning_up = _guard_sigint() if threading.current_thread() is threading.main_thread() else threading.Event()
    node, started = None, False
    try:
        rclpy.init(args=args)  # inside the try: a Ctrl-C can land while rclpy starts, too
        started = True
        node = node_class()
        if node.get_parameter("build_only").value and not node.MANAGED:
            node.get_logger().info(f"build_only: backend {node.backends.name} is ready; exiting")
            return 0
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError) as exc:
        if not started:
            raise  # rclpy's own error (bad --ros-args): its message as before
        if not rclpy.ok():  # Ctrl-C shut the context down while the node was being built: an interrupt, not a fault
            return 0
        rclpy.logging.get_logger("dsa_perception").fatal(f"cannot start: {exc}")
        return 1
    finally:
        cleaning_up.set()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        if threading.current_thread() is threading.main_thread():
            # Python's exit restores SIGINT's default action; a second Ctrl-C arriving then would end the process
            # with -2 after a clean shutdown. Nothing is left to interrupt.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0
