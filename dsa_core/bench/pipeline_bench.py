"""``dsa bench pipeline``: the node's own per-frame work at a camera size (default 1280x720), without the model.

What is timed is ``PerceptionPipeline.process`` with every output wanted (mask, obstacles, colours, overlay) on a
backend whose graph call is replaced by the recorded outputs of the real model on the same frames (``ReplayBackend``:
the real runtime base class, so the camera->export resize and the resize back are the node's own). The graph call
itself is a dict lookup, so the pipeline's wall and process CPU time per frame are the node's post-processing plus
the two resizes. Frames are synthetic drive frames (dsa_core.bags.drive) at the camera size, run through the
shipped model once.

The camera->export resize is a quality/speed choice, measured here too: the runtime's (2x2 box halvings,
then bilinear), one area-averaging resize and bilinear alone; each one's time, and the model's mIoU / anomaly AuPRC against the
drive's ground truth with each, plus the agreement with one area resize.

The machine may be shared: rounds are interleaved (every method and the pipeline in each round), process CPU time
is recorded beside wall time, and the load average is recorded with every number.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dsa_core.bench import write_results

#: camera -> export size candidates: uint8 HxWx3 -> hxwx3.
RESIZE_METHODS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {}


def _register_resizes() -> None:
    import cv2

    from dsa_core.export.resize import images_to_export_size

    def runtime(img: np.ndarray, h: int, w: int) -> np.ndarray:
        """What the backends do (2x2 box halvings, then bilinear; dsa_core.export.resize)."""
        return images_to_export_size(img[None], h, w)[0].transpose(1, 2, 0)

    def area(img: np.ndarray, h: int, w: int) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)

    def linear(img: np.ndarray, h: int, w: int) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)

    RESIZE_METHODS.update(area=area, runtime=runtime, linear=linear)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, default=Path("models/dsa_nano"))
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--frames", type=int, default=8, help="distinct drive frames timed in turn (default 8)")
    p.add_argument("--rounds", type=int, default=25, help="timed rounds over all frames (default 25)")
    p.add_argument("--quality-frames", type=int, default=40,
                   help="drive frames scored per resize method with the model (0 = skip the quality study)")
    p.add_argument("--threads", type=int, default=1, help="OpenCV and ONNX Runtime threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/bench_pipeline.json"))


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _drive_frames(n: int, height: int, width: int, seed: int) -> list[Any]:
    from dsa_core.bags.drive import DriveSpec, generate_drive

    # one street of n frames with an obstacle (approaching), so the obstacle search has work
    spec = DriveSpec(frames=n, height=height, width=width, seed=seed, segment_frames=max(n, 1),
                     obstacle_probability=1.0, fps=10.0)
    return list(generate_drive(spec))


def _replay_backend(model_dir: Path):
    from dsa_core.runtime.base import InferenceBackend

    class ReplayBackend(InferenceBackend):
        """The runtime base class (resize in, batching, resize back) around recorded export-size outputs."""

        name = "replay"

        def __init__(self, model_dir: Path) -> None:
            super().__init__(model_dir)
            self.outputs: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

        def record(self, real: InferenceBackend, images: np.ndarray) -> None:
            from dsa_core.export.resize import images_to_export_size

            x = images_to_export_size(images, self.height, self.width)
            ids, score, _ = real._run(x)
            self.outputs[x.tobytes()] = (ids, score)

        def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
            ids, score = self.outputs[images.tobytes()]
            return ids, score, {}

    return ReplayBackend(model_dir)


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _time_pipeline(args: argparse.Namespace, frames: list[Any], real: Any) -> dict[str, Any]:
    from dsa_core.perception.obstacles import ObstacleSettings
    from dsa_core.perception.pipeline import Frame, PerceptionPipeline, PipelineSettings
    from dsa_core.runtime.operating_point import resolve_operating_point

    replay = _replay_backend(args.model_dir)
    for f in frames:
        replay.record(real, f.rgb[None])
    op = resolve_operating_point(replay.manifest, None, None)
    settings = PipelineSettings(anomaly_threshold=op.anomaly_threshold, obstacles=ObstacleSettings(
        min_area=op.min_area_px, min_area_fraction=op.min_area_fraction))
    pipeline = PerceptionPipeline(replay, settings)
    resize_times: dict[str, list[float]] = {m: [] for m in RESIZE_METHODS}
    wall, cpu, stages, loads, found = [], [], {}, [], 0
    stage_keys = ("backend_resize_in", "backend_resize_out", "mask", "obstacles", "visualization")
    for rnd in range(args.rounds + 1):  # round 0 warms up (caches, allocator) and is not counted
        loads.append(_load())
        for f in frames:
            for name, fn in RESIZE_METHODS.items():  # interleaved with the pipeline, same frame
                t0 = time.perf_counter()
                fn(f.rgb, replay.height, replay.width)
                if rnd:
                    resize_times[name].append((time.perf_counter() - t0) * 1e3)
            c0, t0 = time.process_time(), time.perf_counter()
            res = pipeline.process({"cam": Frame(f.rgb)})["cam"]
            w, c = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
            if rnd:
                wall.append(w)
                cpu.append(c)
                found += len(res.obstacles.obstacles)
                for k in stage_keys:
                    stages.setdefault(k, []).append(res.timings[k])
            assert res.color is not None and res.overlay is not None
    return {"frames": len(frames), "rounds": args.rounds, "wall_ms_median": _median(wall),
            "wall_ms_p90": float(np.percentile(wall, 90)), "cpu_ms_median": _median(cpu),
            "stage_ms_median": {k: _median(v) for k, v in stages.items()},
            "resize_in_ms_median": {k: _median(v) for k, v in resize_times.items()},
            "obstacles_per_frame": found / max(1, len(wall)), "load_per_round": loads}


def _quality(args: argparse.Namespace, real: Any) -> dict[str, Any]:
    from dsa_core.eval.metrics import AnomalyMetricAccumulator, ConfusionMatrix
    from dsa_core.export.resize import outputs_to_camera_size

    frames = []
    per_street = 10
    for s in range(max(1, -(-args.quality_frames // per_street))):
        frames += _drive_frames(per_street, args.height, args.width, args.seed + 1 + s)
    frames = frames[:args.quality_frames]
    out: dict[str, Any] = {}
    reference: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for name, fn in RESIZE_METHODS.items():
        conf, anomaly = ConfusionMatrix(), AnomalyMetricAccumulator()
        agree, diffs = [], []
        for i, f in enumerate(frames):
            x = np.ascontiguousarray(fn(f.rgb, real.height, real.width).transpose(2, 0, 1)[None])
            ids, score, _ = real._run(x)
            ids, score = outputs_to_camera_size(ids, score, args.height, args.width)
            conf.update(ids[0], f.semantic)
            anomaly.update(score[0], f.anomaly)
            if name == "area":
                reference[i] = (ids[0], score[0])
            else:
                agree.append(float((ids[0] == reference[i][0]).mean()))
                diffs.append(float(np.abs(score[0] - reference[i][1]).mean()))
        metrics = anomaly.compute()
        out[name] = {"miou": conf.compute()["miou"], "auprc": metrics.get("auprc"), "fpr95": metrics.get("fpr95"),
                     "argmax_agreement_vs_area": _median(agree) if agree else 1.0,
                     "anomaly_mean_abs_diff_vs_area": _median(diffs) if diffs else 0.0}
    return {"frames": len(frames), "methods": out}


def _markdown(report: dict[str, Any]) -> str:
    t = report["timing"]
    lines = [f"# dsa bench pipeline: the node's own work per {report['camera']} frame", "",
             f"Model `{report['model_dir']}` (export {report['export_size']}), {report['threads']} OpenCV thread(s), "
             f"{t['frames']} synthetic drive frames x {t['rounds']} rounds, every output made (mask, obstacles, "
             "colours, overlay); the graph call is replayed (recorded outputs), so this is post-processing + resizes.",
             f"Machine: {report['machine']['cpus']} cores, load average before / after "
             f"{report['machine']['load_before']} / {report['machine']['load_after']} "
             "(1/5/15 min; shared machine, interleaved rounds).", "",
             "| per frame | median |", "|---|---|",
             f"| wall | {t['wall_ms_median']:.2f} ms (p90 {t['wall_ms_p90']:.2f}) |",
             f"| process CPU | {t['cpu_ms_median']:.2f} ms |"]
    lines += [f"| stage `{k}` (wall) | {v:.2f} ms |" for k, v in t["stage_ms_median"].items()]
    lines += [f"| obstacles found per frame | {t['obstacles_per_frame']:.2f} |", "",
              "Camera->export resize candidates (wall, interleaved with the pipeline):", "",
              "| method | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in t["resize_in_ms_median"].items()]
    q = report.get("quality")
    if q:
        lines += ["", f"Quality of each resize with the model on {q['frames']} drive frames (ground truth of the "
                  "synthetic drive; outputs back at the camera size):", "",
                  "| method | mIoU | anomaly AuPRC | FPR95 | argmax agreement vs area | mean abs anomaly diff vs area |",
                  "|---|---|---|---|---|---|"]
        for k, v in q["methods"].items():
            lines.append(f"| {k} | {100 * v['miou']:.2f} | {100 * v['auprc']:.2f} | {100 * v['fpr95']:.2f} | "
                         f"{100 * v['argmax_agreement_vs_area']:.2f} % | {v['anomaly_mean_abs_diff_vs_area']:.4f} |")
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import cv2

    from dsa_core.runtime import create_backend

    cv2.setNumThreads(args.threads)
    _register_resizes()
    load_before = _load()
    real = create_backend("onnxruntime", args.model_dir, intra_op_threads=args.threads, inter_op_threads=1)
    frames = _drive_frames(args.frames, args.height, args.width, args.seed)
    report: dict[str, Any] = {
        "camera": f"{args.width}x{args.height}", "model_dir": str(args.model_dir),
        "export_size": [real.height, real.width], "threads": args.threads,
        "timing": _time_pipeline(args, frames, real)}
    if args.quality_frames:
        report["quality"] = _quality(args, real)
    report["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_before,
                         "load_after": _load(), "opencv": cv2.__version__}
    write_results(args.out, report, _markdown(report))
    return 0
