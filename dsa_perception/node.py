"""`dsa_perception_node`: cameras in; segmentation, anomaly score/mask, overlay, obstacle alerts, markers out.

Per camera C (all outputs copy the input image header; images have the input size):
  ~/C/semantic (mono8 train ids), ~/C/semantic_color (rgb8), ~/C/anomaly_score (32FC1), ~/C/anomaly_mask
  (mono8 0/255), ~/C/overlay (rgb8), ~/C/obstacles (dsa_perception/ObstacleAlert, every processed frame),
  ~/C/markers (visualization_msgs/MarkerArray); plus /diagnostics at diagnostics_period_s.
Image outputs without subscribers are not filled (lazy); alerts and markers are always published.
Parameters: dsa_perception/params.py (defaults in config/dsa.yaml).

Threading: subscription callbacks (executor thread) only decode and keep the newest frame per camera, counting
overwritten frames as dropped; one worker thread runs the engine on the newest frames of all cameras (batched) and
publishes. Decoding in the callback means a malformed message is rejected and counted on arrival and never displaces
a good frame that is waiting for the worker.
"""
from __future__ import annotations

import collections
import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from dsa_perception.image_codec import ImageDecodeError, compressed_msg_to_rgb, fill_image_msg, image_msg_to_rgb
from dsa_perception.msg import Obstacle, ObstacleAlert
from dsa_perception.obstacles import GroundCamera, ObstacleSettings, TrackedObstacle
from dsa_perception.params import CAMERA_PARAMS, NODE_PARAMS, camera_param, check_value
from dsa_perception.pipeline import CameraResult, Frame, InferenceBackend, PerceptionPipeline, PipelineSettings

BackendFactory = Callable[[str], InferenceBackend]
LATENCY_WINDOW = 300  # samples kept per latency series for the diagnostics percentiles
INTERNAL_ERROR = "internal_error"


@dataclass
class _Pending:
    rgb: np.ndarray
    header: Any
    received: float  # time.monotonic() at arrival
    decode_ms: float


@dataclass
class _CameraState:
    name: str
    pending: _Pending | None = None
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    arrivals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=1000))
    latencies: dict[str, collections.deque] = field(default_factory=dict)
    info: tuple[list[float], int, int] | None = None  # CameraInfo K, width, height
    last_log: dict[str, tuple[float, int]] = field(default_factory=dict)  # reason -> (time, suppressed count)
    publishers: dict[str, Any] = field(default_factory=dict)

    def record(self, stage: str, ms: float) -> None:
        self.latencies.setdefault(stage, collections.deque(maxlen=LATENCY_WINDOW)).append(ms)


class DsaPerceptionNode(Node):
    """The perception node; ``backend_factory(kind)`` replaces dsa_core.runtime.create_backend (tests, tools)."""

    def __init__(self, node_name: str = "dsa_perception", *, backend_factory: BackendFactory | None = None,
                 **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Condition()
        self._declare()
        self.cameras: list[str] = list(self.get_parameter("cameras").value)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._factory = backend_factory or self._runtime_backend
        self._chain: list[str] = list(self.get_parameter("backends").value)
        self.backend_state = "starting"
        self.backend_events: list[str] = []
        self.failed_batches = 0
        backend, self._chain_index = self._first_backend()
        self.pipeline = PerceptionPipeline(backend, self._pipeline_settings(backend))
        self.get_logger().info(f"operating point: {self.operating_point.summary()}")
        self._cams = {name: _CameraState(name) for name in self.cameras}
        if self.get_parameter("build_only").value:
            return
        self._create_interfaces()
        self._worker = threading.Thread(target=self._work, name="dsa_inference", daemon=True)
        self._worker.start()

    # --- parameters ----------------------------------------------------------------------------------------------

    def _declare(self) -> None:
        for spec in NODE_PARAMS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor(spec.name))
        for spec in NODE_PARAMS:
            reason = check_value(spec.name, self.get_parameter(spec.name).value)
            if reason:
                raise ValueError(f"invalid parameter {reason}")
        for cam in self.get_parameter("cameras").value:
            for spec in CAMERA_PARAMS:
                full = camera_param(cam, spec.name)
                self.declare_parameter(full, spec.default, spec.descriptor(full))
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
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Any]) -> None:
        self.pipeline.reconfigure(self._pipeline_settings())
        self.get_logger().info("parameters changed: " + ", ".join(f"{p.name}={p.value!r}" for p in params)
                               + f"; operating point: {self.operating_point.summary()}")

    def _pipeline_settings(self, backend: InferenceBackend | None = None) -> PipelineSettings:
        """Settings from the parameters. Threshold and minimum area: parameter if set, else the model's manifest,
        else the per-score fallback (dsa_core.runtime.operating_point); kept in ``self.operating_point``."""
        from dsa_core.runtime.operating_point import resolve_operating_point

        g = lambda name: self.get_parameter(name).value  # noqa: E731
        backend = backend if backend is not None else self.pipeline.backend
        op = resolve_operating_point(getattr(backend, "manifest", None), float(g("anomaly_threshold")),
                                     int(g("min_obstacle_area")))
        self.operating_point = op
        obstacles = ObstacleSettings(min_area=op.min_area_px, min_area_fraction=op.min_area_fraction,
                                     debounce_frames=int(g("debounce_frames")),
                                     drivable_classes=tuple(int(c) for c in g("drivable_classes")),
                                     touch_margin_px=int(g("touch_margin_px")))
        return PipelineSettings(anomaly_threshold=op.anomaly_threshold, obstacles=obstacles,
                                make_color=bool(g("publish_color")), make_overlay=bool(g("publish_overlay")),
                                overlay_alpha=float(g("overlay_alpha")))

    # --- backends ------------------------------------------------------------------------------------------------

    def _runtime_backend(self, kind: str) -> InferenceBackend:
        from dsa_core.runtime import create_backend

        model_dir = self.get_parameter("model_dir").value
        if not model_dir:
            raise ValueError("parameter model_dir is empty: set it to a `dsa export` model directory")
        threads = int(self.get_parameter("inference_threads").value) or None
        opts = {"onnxruntime": {"intra_op_threads": threads}, "torch": {"num_threads": threads}}.get(kind, {})
        return create_backend(kind, model_dir, device=self.get_parameter("device").value,
                              precision=self.get_parameter("precision").value, **opts)

    def _first_backend(self, start: int = 0) -> tuple[InferenceBackend, int]:
        """The first backend of the chain from ``start`` that can be created; the failures are logged and kept."""
        failures = []
        for i in range(start, len(self._chain)):
            kind = self._chain[i]
            try:
                backend = self._factory(kind)
            except Exception as exc:  # noqa: BLE001 - every init failure moves on to the next kind, loudly
                failures.append(f"{kind}: {type(exc).__name__}: {exc}")
                self.get_logger().warning(f"backend {kind} unavailable: {type(exc).__name__}: {exc}")
                continue
            self.backend_state = "ok" if i == 0 else "fallback"
            note = f"running backend {kind}" + (f" (not used: {'; '.join(failures)})" if failures else "")
            self.backend_events.append(note)
            self.get_logger().info(note)
            return backend, i
        raise RuntimeError("no inference backend could be created from " + ", ".join(self._chain[start:]) + ":\n  "
                           + "\n  ".join(failures))

    def _fall_back(self, exc: BaseException) -> bool:
        """After a run-time failure of the current backend: switch to the next one of the chain. True if switched."""
        current = self._chain[self._chain_index]
        self.get_logger().error(f"backend {current} failed at run time: {type(exc).__name__}: {exc}")
        self.backend_events.append(f"{current} failed: {type(exc).__name__}: {exc}")
        try:
            backend, index = self._first_backend(self._chain_index + 1)
        except RuntimeError as none_left:
            self.backend_state = "failed"
            self.get_logger().error(f"no fallback backend after {current}: {none_left}")
            return False
        self.pipeline.backend, self._chain_index = backend, index
        self.backend_state = "fallback"
        self.get_logger().warning(f"fell back from {current} to {self._chain[index]}")
        return True

    @property
    def backend_name(self) -> str:
        return self._chain[self._chain_index]

    # --- ROS interfaces ------------------------------------------------------------------------------------------

    def _create_interfaces(self) -> None:
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
            self.create_subscription(CompressedImage if compressed else Image, topic,
                                     lambda msg, c=cam, z=compressed: self._on_image(c, msg, z), qos_in)
            if p("camera_info_topic"):
                self.create_subscription(CameraInfo, p("camera_info_topic"),
                                         lambda msg, c=cam: self._on_camera_info(c, msg), qos_in)
            pubs = self._cams[cam].publishers
            for out, msg_type in (("semantic", Image), ("semantic_color", Image), ("anomaly_score", Image),
                                  ("anomaly_mask", Image), ("overlay", Image)):
                pubs[out] = self.create_publisher(msg_type, f"~/{cam}/{out}", qos_images)
            pubs["obstacles"] = self.create_publisher(ObstacleAlert, f"~/{cam}/obstacles", qos_alerts)
            pubs["markers"] = self.create_publisher(MarkerArray, f"~/{cam}/markers", qos_alerts)
            self.get_logger().info(f"camera {cam}: {'CompressedImage' if compressed else 'Image'} on {topic}")
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos_alerts)
        self._diag_period = float(self.get_parameter("diagnostics_period_s").value)
        self._diag_last = time.monotonic()
        self.create_timer(self._diag_period, self._publish_diagnostics)

    def _on_camera_info(self, cam: str, msg: CameraInfo) -> None:
        self._cams[cam].info = (list(msg.k), int(msg.width), int(msg.height))

    def _on_image(self, cam: str, msg: Any, compressed: bool) -> None:
        st = self._cams[cam]
        now = time.monotonic()
        with self._lock:  # counters are read by the diagnostics timer, possibly on another executor thread
            st.received += 1
            st.arrivals.append(now)
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
        pending = _Pending(rgb, msg.header, now, (time.monotonic() - now) * 1e3)
        with self._lock:
            if st.pending is not None:
                st.dropped += 1
            st.pending = pending
            self._lock.notify()

    def _reject(self, st: _CameraState, reason: str, text: str) -> None:
        """Count the rejected message; log at most once per (camera, reason) and period, with the suppressed count."""
        with self._lock:
            st.rejected[reason] += 1
        period = float(self.get_parameter("reject_log_period_s").value)
        now = time.monotonic()
        last, suppressed = st.last_log.get(reason, (-math.inf, 0))
        if now - last >= period:
            more = f" ({suppressed} more like it since the last report)" if suppressed else ""
            self.get_logger().error(f"camera {st.name}: rejected image, {text}{more}")
            st.last_log[reason] = (now, 0)
        else:
            st.last_log[reason] = (last, suppressed + 1)

    # --- worker --------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._lock.wait_for(lambda: self._stop.is_set() or any(s.pending for s in self._cams.values()),
                                    timeout=0.5)
                batch = {c: s.pending for c, s in self._cams.items() if s.pending is not None}
                for c in batch:
                    self._cams[c].pending = None
            if batch and not self._stop.is_set():
                try:
                    self._process(batch)
                except Exception:
                    # Ctrl-C / an external shutdown invalidates the context while this thread may be publishing:
                    # that is the end of the node, not an error. Anything else while the context is live is raised.
                    if self.context.ok():
                        raise
                    return

    def _process(self, batch: dict[str, _Pending]) -> None:
        picked = time.monotonic()
        frames = {c: Frame(p.rgb, p.header.stamp, self._ground_camera(c, p.rgb.shape),
                           want_color=self._listened(c, "semantic_color"), want_overlay=self._listened(c, "overlay"))
                  for c, p in batch.items()}
        try:
            results = self.pipeline.process(frames)
        except Exception as exc:  # noqa: BLE001 - backend failure: fall back and retry the same frames once
            if not self._fall_back(exc):
                self.failed_batches += 1
                return
            try:
                results = self.pipeline.process(frames)
            except Exception as again:  # noqa: BLE001
                self.failed_batches += 1
                self._fall_back(again)
                return
        for cam, res in results.items():
            pending = batch[cam]
            t0 = time.monotonic()
            self._publish(cam, res, pending.header)
            done = time.monotonic()
            st = self._cams[cam]
            stamp = pending.header.stamp.sec + pending.header.stamp.nanosec * 1e-9
            end_to_end = (self.get_clock().now().nanoseconds * 1e-9 - stamp) * 1e3
            with self._lock:
                st.processed += 1
                st.record("decode", pending.decode_ms)
                st.record("queue", (picked - pending.received) * 1e3)
                for stage in ("inference", "mask", "obstacles", "visualization"):
                    st.record(stage, res.timings[stage])
                st.record("publish", (done - t0) * 1e3)
                st.record("node", (done - pending.received) * 1e3)
                st.record("end_to_end", end_to_end)

    def _listened(self, cam: str, topic: str) -> bool:
        return self._cams[cam].publishers[topic].get_subscription_count() > 0

    def _ground_camera(self, cam: str, shape: tuple[int, ...]) -> GroundCamera | None:
        info = self._cams[cam].info
        height = float(self.get_parameter(camera_param(cam, "mount_height_m")).value)
        if info is None or height <= 0:
            return None
        pitch = math.radians(float(self.get_parameter(camera_param(cam, "mount_pitch_deg")).value))
        return GroundCamera.from_camera_info_k(info[0], info[1], info[2], shape[1], shape[0], height, pitch)

    def _publish(self, cam: str, res: CameraResult, header: Any) -> None:
        pubs = self._cams[cam].publishers
        outputs = [("semantic", res.class_ids, "mono8"), ("anomaly_score", res.anomaly, "32FC1"),
                   ("anomaly_mask", res.mask, "mono8")]
        if res.color is not None:
            outputs.append(("semantic_color", res.color, "rgb8"))
        if res.overlay is not None:
            outputs.append(("overlay", res.overlay, "rgb8"))
        for topic, array, encoding in outputs:
            if pubs[topic].get_subscription_count() == 0:
                continue  # nobody listens: skip the copy into a message (~1-3 ms per 720p image)
            msg = Image()
            msg.header = header
            pubs[topic].publish(fill_image_msg(msg, array, encoding))
        pubs["obstacles"].publish(self._alert(cam, res, header))
        if self.get_parameter("publish_markers").value:
            pubs["markers"].publish(self._markers(cam, res.obstacles.obstacles, header))

    def _alert(self, cam: str, res: CameraResult, header: Any) -> ObstacleAlert:
        settings = self.pipeline.settings
        found = res.obstacles
        alert = ObstacleAlert(header=header, camera_name=cam, severity=int(found.severity),
                              most_severe_track_id=found.most_severe_track_id,
                              nearest_distance_m=float(found.nearest_distance_m),
                              image_width=res.mask.shape[1], image_height=res.mask.shape[0],
                              anomaly_threshold=float(settings.anomaly_threshold),
                              min_area_pixels=settings.obstacles.min_area_for(*res.mask.shape),
                              frame_index=res.frame_index)
        alert.obstacles = [self._obstacle_msg(o) for o in found.obstacles]
        return alert

    @staticmethod
    def _obstacle_msg(o: TrackedObstacle) -> Obstacle:
        d = o.detection
        x, y, w, h = d.bbox
        m = Obstacle(track_id=o.track_id, age_frames=o.age_frames, bbox_x=x, bbox_y=y, bbox_width=w, bbox_height=h,
                     pixel_area=d.pixel_area, area_fraction=d.area_fraction, score_max=d.score_max,
                     score_mean=d.score_mean, drivable_fraction=d.drivable_fraction, distance_m=o.distance_m,
                     distance_source=int(o.distance_source), severity=int(o.severity), confirmed=o.confirmed,
                     ground_point=Point(x=o.ground_point[0], y=o.ground_point[1], z=o.ground_point[2]))
        if o.first_seen is not None:
            m.first_seen = o.first_seen
        return m

    @staticmethod
    def _markers(cam: str, obstacles: list[TrackedObstacle], header: Any) -> MarkerArray:
        """DELETEALL, then per confirmed obstacle with a ground point a cylinder and a label in the camera frame
        (obstacles without a distance have no 3-D position; they are drawn in the overlay image only)."""
        out = MarkerArray()
        clear = Marker(header=header, ns=f"{cam}/obstacles", action=Marker.DELETEALL)
        out.markers.append(clear)
        colours = {0: (0.6, 0.6, 0.6), 1: (0.0, 0.8, 1.0), 2: (1.0, 0.8, 0.0), 3: (1.0, 0.0, 0.0)}
        for o in obstacles:
            if not o.confirmed or not math.isfinite(o.distance_m):
                continue
            r, g, b = colours[int(o.severity)]
            gx, gy, gz = o.ground_point
            for kind, mid in ((Marker.CYLINDER, 2 * o.track_id), (Marker.TEXT_VIEW_FACING, 2 * o.track_id + 1)):
                mk = Marker(header=header, ns=f"{cam}/obstacles", id=mid, type=kind, action=Marker.ADD)
                mk.pose.position = Point(x=gx, y=gy - (0.5 if kind == Marker.CYLINDER else 1.3), z=gz)
                mk.pose.orientation.x = -math.sqrt(0.5)  # cylinder axis along optical -y (up)
                mk.pose.orientation.w = math.sqrt(0.5)
                mk.scale.x = mk.scale.y = 0.6
                mk.scale.z = 1.0 if kind == Marker.CYLINDER else 0.4
                mk.color.r, mk.color.g, mk.color.b, mk.color.a = r, g, b, 0.8
                mk.text = f"#{o.track_id} {o.distance_m:.1f} m" if kind == Marker.TEXT_VIEW_FACING else ""
                mk.lifetime.nanosec = 500_000_000
                out.markers.append(mk)
        return out

    # --- diagnostics ---------------------------------------------------------------------------------------------

    def diagnostics(self) -> DiagnosticArray:
        """One status for the backend and one per camera (rates over the last period, latency percentiles)."""
        now = time.monotonic()
        period = max(1e-3, now - self._diag_last)
        self._diag_last = now
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        level = {"ok": DiagnosticStatus.OK, "fallback": DiagnosticStatus.WARN}.get(self.backend_state,
                                                                                    DiagnosticStatus.ERROR)
        backend = DiagnosticStatus(level=level, name=f"{self.get_name()}: backend", hardware_id=self.get_name(),
                                   message=f"{self.backend_name} ({self.backend_state})")
        describe = getattr(self.pipeline.backend, "describe", None)
        values = {"backend": self.backend_name, "state": self.backend_state, "failed_batches": self.failed_batches,
                  "events": " | ".join(self.backend_events[-5:])}
        if callable(describe):
            values.update({f"info.{k}": v for k, v in describe().items()})
        backend.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr.status.append(backend)
        for cam, st in self._cams.items():
            with self._lock:  # snapshot; the worker and the callbacks keep appending
                arrivals = list(st.arrivals)
                series_by_stage = {stage: np.fromiter(series, float) for stage, series in st.latencies.items()}
                counts = {"received": st.received, "processed": st.processed, "dropped": st.dropped}
                rejected = dict(st.rejected)
            recent = sum(1 for t in arrivals if now - t <= period)
            values = {"input_rate_hz": f"{recent / period:.2f}", **counts, "rejected": sum(rejected.values())}
            values.update({f"rejected.{r}": n for r, n in sorted(rejected.items())})
            for stage, a in series_by_stage.items():
                values[f"latency_ms.{stage}.p50"] = f"{np.percentile(a, 50):.2f}"
                values[f"latency_ms.{stage}.p95"] = f"{np.percentile(a, 95):.2f}"
                values[f"latency_ms.{stage}.max"] = f"{a.max():.2f}"
            stale = bool(arrivals) and now - arrivals[-1] > 3 * period
            status = DiagnosticStatus(name=f"{self.get_name()}: camera {cam}", hardware_id=self.get_name())
            if self.backend_state == "failed":
                status.level, status.message = DiagnosticStatus.ERROR, "no working backend"
            elif stale or not counts["received"]:
                status.level, status.message = DiagnosticStatus.WARN, "input stale" if stale else "no input"
            elif rejected:
                status.level, status.message = DiagnosticStatus.WARN, f"{sum(rejected.values())} rejected messages"
            else:
                status.level, status.message = DiagnosticStatus.OK, "ok"
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
            arr.status.append(status)
        return arr

    def _publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diagnostics())

    def counters(self, cam: str) -> dict[str, Any]:
        """Thread-safe snapshot of one camera's counters (tests, tools)."""
        st = self._cams[cam]
        with self._lock:
            return {"received": st.received, "processed": st.processed, "dropped": st.dropped,
                    "rejected": dict(st.rejected)}

    def destroy_node(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script / `ros2 run dsa_perception dsa_perception_node [--ros-args ...]`."""
    rclpy.init(args=args)
    node = None
    try:
        node = DsaPerceptionNode()
        if node.get_parameter("build_only").value:
            node.get_logger().info(f"build_only: backend {node.backend_name} is ready; exiting")
            return 0
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError) as exc:
        rclpy.logging.get_logger("dsa_perception").fatal(f"cannot start: {exc}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
