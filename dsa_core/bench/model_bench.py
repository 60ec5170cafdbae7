"""``dsa bench model``: every available backend on the same exported model, in one run.

Backends are timed round-robin (one call each per round) so load swings on a shared machine hit all alike.
Per backend and batch size: median / p90 / p99 latency of ``backend.infer`` (camera image already at the export
size, so the runtime resize is a no-op and the numbers are the model's) and its process CPU time, throughput,
per-stage medians and the speed-up over PyTorch eager as paired per-round ratios (min / median / max). Model FLOPs
are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the fused graph module (matmul/conv/attention
flops, 2 per multiply-add; elementwise ops and grid_sample are not counted) and compared with this machine's fp32
matmul peak: the best of ``torch.mm`` and numpy's sgemm (OpenBLAS here was faster than torch's), sampled once per
round between the model runs, so the peak is taken under the same load. The 1-minute load average is recorded
every round; a run whose load exceeded the core count is flagged (its numbers measure the other jobs too).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.bench import write_results

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="dsa_tiny", help="model preset (random init) when --model-dir is not given")
    p.add_argument("--checkpoint", help="benchmark this checkpoint instead of a random-init preset")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--batch", type=int, action="append", help="batch size(s); repeat for several (default 1)")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "openvino", "tensorrt"],
                   help="backends to time; torch-compiled (torch.compile with inductor, compiled before timing) on "
                        "request")
    p.add_argument("--device", default="cpu", help="cpu or cuda (tensorrt always uses cuda)")
    p.add_argument("--torch-fp16", action="store_true", help="also time torch eager with CUDA fp16 autocast (GPU only)")
    p.add_argument("--trt-precision", default="fp16", choices=["fp32", "fp16", "int8"],
                   help="TensorRT engine precision (int8 needs a calibration cache in the engine dir)")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for torch, ORT and OpenVINO (default: all cores)")
    p.add_argument("--work-dir", type=Path, default=None, help="where exported model dirs go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=Path("results/bench_model.json"),
                   help="JSON output; a Markdown summary is written next to it with suffix .md")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")


def matmul_peaks_gflops(n: int = 2048, repeats: int = 3, threads: int | None = None) -> dict[str, float]:
    """Best-of-``repeats`` fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 flops) with torch.mm and with numpy's
    sgemm (its BLAS), alternating."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    calls = {"torch_mm": lambda: torch.mm(ta, tb), "numpy_sgemm": lambda: a @ b}
    best = {k: float("inf") for k in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {k: 2.0 * n ** 3 / v / 1e9 for k, v in best.items()}


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


def _ratio_stats(ratios: list[float]) -> dict[str, float] | None:
    if not ratios:
        return None
    arr = np.asarray(ratios)
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max()), "n": int(arr.size)}


def count_flops(model: Any, batch: int, height: int, width: int) -> dict[str, Any]:
    """FLOPs of one fused forward (FlopCounterMode), total and the top operators."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dsa_core.export.graphs import FusedGraph

    graph = FusedGraph(model).eval()
    image = torch.zeros(batch, 3, height, width, dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    # FlopCounterMode's module tracker hooks autograd on parameters that require grad, which fails under no_grad
    # (parameters used as direct inputs, e.g. query embeddings): count with all parameters frozen, then restore.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.no_grad(), counter:
            graph(image)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    # the fused module reaches the one DSAModel through backbone.model / head.model: name parts by the model path
    by_module: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        short = "model." + name.split(".model.", 1)[1] if ".model." in name else None
        if short and short.count(".") <= 2:
            by_module[short] = by_module.get(short, 0) + int(sum(ops.values()))
    return {"total": int(counter.get_total_flops()), "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "by_module": dict(sorted(by_module.items(), key=lambda kv: -kv[1])[:20])}


def profile_torch(backend: Any, batch: int, top: int = 12) -> list[dict[str, Any]]:
    """Where the time goes: one eager forward under torch.profiler, top ops by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    images = np.random.default_rng(1).integers(0, 256, (batch, backend.height, backend.width, 3), dtype=np.uint8)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        backend.infer(images)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1.0
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events]


def profile_onnxruntime(model_dir: Path, batch: int, height: int, width: int, threads: int | None, top: int = 12) -> list[dict[str, Any]]:
    """Where ORT spends its time: one fused run with ORT's profiler, node time summed per op type."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort_prof_")) / "ort")
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_dir / "fused.onnx"), sess_options=opts, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).integers(0, 256, (batch, 3, height, width), dtype=np.uint8)
    sess.run(None, {"image": image})  # warm-up (also profiled; dropped below by keeping only the last run)
    sess.run(None, {"image": image})
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last_start = runs[-1]["ts"] if runs else 0
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= last_start:
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1e3
    total = sum(per_op.values()) or 1.0
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": op, "ms": ms, "share": ms / total} for op, ms in ranked]


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)),
            "mean": float(arr.mean()), "min": float(arr.min()), "n": int(arr.size)}


def bench_backends(backends: dict[str, Any], batch: int, iterations: int, warmup: int, seed: int = 0,
                   peaks: dict[str, list[float]] | None = None, loads: list[float] | None = None,
                   threads: int | None = None) -> dict[str, dict[str, Any]]:
    """Time every backend on the same images, round-robin (one call of each per round), so that load swings on a
    shared machine hit all backends alike and the ratios stay meaningful. Each round also samples the matmul peaks
    into ``peaks`` and the 1-minute load average into ``loads`` when given."""
    rng = np.random.default_rng(seed)
    any_backend = next(iter(backends.values()))
    images = rng.integers(0, 256, (batch, any_backend.height, any_backend.width, 3), dtype=np.uint8)
    for backend in backends.values():
        for _ in range(warmup):
            backend.infer(images)
    totals: dict[str, list[float]] = {k: [] for k in backends}
    cpu: dict[str, list[float]] = {k: [] for k in backends}
    stages: dict[str, dict[str, list[float]]] = {k: {} for k in backends}
    for i in range(iterations):
        if loads is not None:
            loads.append(_load1())
        if peaks is not None:
            for name, value in matmul_peaks_gflops(repeats=1, threads=threads).items():
                peaks.setdefault(name, []).append(value)
        for kind, backend in backends.items():
            c0, t0 = time.process_time(), time.perf_counter()
            result = backend.infer(images)
            totals[kind].append((time.perf_counter() - t0) * 1e3)
            cpu[kind].append((time.process_time() - c0) * 1e3)
            for key, ms in result.timings.items():
                stages[kind].setdefault(key, []).append(ms)
        log.info("round %d/%d: %s", i + 1, iterations, {k: round(v[-1]) for k, v in totals.items()})
    out = {}
    for kind, backend in backends.items():
        lat = _stats(totals[kind])
        out[kind] = {"latency_ms": lat, "latency_all_ms": totals[kind], "process_cpu_ms": _stats(cpu[kind]),
                     "throughput_img_s": batch * 1e3 / lat["median"],
                     "stages_median_ms": {k: float(np.median(v)) for k, v in stages[kind].items()},
                     "describe": backend.describe()}
    return out


def _backend_variants(args: argparse.Namespace) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(label, kind, device, precision, options) for every backend to time; labels key the report."""
    variants = []
    for kind in args.backends:
        if kind == "onnxruntime":
            variants.append(("onnxruntime", kind, args.device, "fp32", {"graph": "fused", "intra_op_threads": args.threads}))
        elif kind == "openvino":
            variants.append(("openvino", kind, "cpu", "fp32", {"num_threads": args.threads}))
        elif kind == "torch":
            variants.append(("torch", kind, args.device, "fp32", {"num_threads": args.threads}))
            if args.torch_fp16:
                variants.append(("torch_fp16", kind, args.device, "fp16", {"num_threads": args.threads}))
        elif kind == "torch-compiled":  # opt-in: inductor compiles at construction (minutes), outside the timings
            variants.append(("torch_compiled", "torch", args.device, "fp32",
                             {"num_threads": args.threads, "compile": "inductor"}))
        elif kind == "tensorrt":
            variants.append((f"tensorrt_{args.trt_precision}", kind, "cuda", args.trt_precision, {}))
        else:
            raise ValueError(f"unknown backend {kind!r}; expected torch, torch-compiled, onnxruntime, openvino or tensorrt")
    return variants


def _cli_args(args: argparse.Namespace) -> list[str]:
    """The options of this run as command-line text (lists as repeated / space-separated values)."""
    parts = []
    for key, value in vars(args).items():
        if key in ("func", "benchmark", "note") or value in (None, "", False):
            continue
        flag = f"--{key.replace('_', '-')}"
        if key == "batch":
            parts += [f"{flag} {v}" for v in value]
        elif isinstance(value, list):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return parts


def run_model_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from dsa_core import build_model
    from dsa_core.export.onnx_export import export_model_dir
    from dsa_core.runtime import create_backend

    batches = args.batch or [1]
    load_start = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        from dsa_core.checkpoint import model_from_checkpoint

        model, _ = model_from_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = build_model(args.preset)
    model.eval()
    peaks: dict[str, list[float]] = {}
    for name, value in matmul_peaks_gflops(threads=args.threads).items():
        peaks.setdefault(name, []).append(value)
    loads: list[float] = [_load1()]
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="dsa_bench_"))
    runs = []
    for batch in batches:
        model_dir = work / f"{model.cfg.name}_{args.height}x{args.width}_b{batch}"
        t0 = time.perf_counter()
        export_model_dir(model, model_dir, args.height, args.width, batch=batch, graphs=("backbone", "head", "fused"),
                         source_checkpoint=args.checkpoint)
        export_s = time.perf_counter() - t0
        flops = count_flops(model, batch, args.height, args.width)
        entry: dict[str, Any] = {"batch": batch, "export_seconds": export_s, "flops": flops, "backends": {}, "unavailable": {}}
        backends: dict[str, Any] = {}
        for label, kind, device, precision, opts in _backend_variants(args):
            try:
                backends[label] = create_backend(kind, model_dir, device=device, precision=precision, **opts)
            except Exception as exc:  # recorded in the report: which backend did not run and why
                entry["unavailable"][label] = f"{type(exc).__name__}: {exc}"
                log.warning("%s unavailable: %s", label, entry["unavailable"][label])
        log.info("benchmarking %s, batch %d", list(backends), batch)
        entry["backends"] = bench_backends(backends, batch, args.iterations, args.warmup, peaks=peaks, loads=loads,
                                           threads=args.threads)
        for kind, res in entry["backends"].items():
            if kind == "torch":
                res["profile_top_ops"] = profile_torch(backends[kind], batch)
            elif kind == "onnxruntime":
                res["profile_top_ops"] = profile_onnxruntime(model_dir, batch, args.height, args.width, args.threads)
        backends.clear()
        torch_all = entry["backends"].get("torch", {}).get("latency_all_ms")
        for res in entry["backends"].values():  # paired: the same round's torch call over this backend's
            res["speedup_vs_torch_eager"] = _ratio_stats(
                [t / b for t, b in zip(torch_all, res["latency_all_ms"])] if torch_all else [])
        runs.append(entry)
    loads.append(_load1())
    peak_by = {name: max(values) for name, values in peaks.items()}
    peak = max(peak_by.values())
    cores = os.cpu_count() or 1
    for entry in runs:  # against the best peak seen during the whole run
        for res in entry["backends"].values():
            res["gflops_achieved"] = entry["flops"]["total"] / (res["latency_ms"]["median"] / 1e3) / 1e9
            res["fraction_of_matmul_peak"] = res["gflops_achieved"] / peak
    return {
        "command": "dsa bench model " + " ".join(_cli_args(args)),
        "model": model.cfg.name, "export_size": [args.height, args.width],
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "processor": platform.processor(), "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
                    "matmul_peak_gflops_fp32": peak, "matmul_peak_by_kernel": peak_by, "matmul_peak_samples": peaks,
                    "load1_per_round": loads, "overloaded": max(loads) > cores},
        "note": args.note, "iterations": args.iterations, "warmup": args.warmup, "runs": runs,
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# `dsa bench model`: {report['model']} at {report['export_size'][0]}x{report['export_size'][1]}", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {m['cpu_count']} CPUs, torch threads {m['torch_threads']}, torch {m['torch']}; load average at start "
             f"{m['load_average_start']}, at end {m['load_average_end']} (shared with other jobs: absolute numbers are noisy).  ",
             f"Measured fp32 matmul peak (2048^3, best of torch.mm and numpy sgemm, sampled every round between the model "
             f"runs): **{m['matmul_peak_gflops_fp32']:.1f} GFLOP/s** ("
             + ", ".join(f"{k} {v:.1f}" for k, v in m["matmul_peak_by_kernel"].items()) + ").  ",
             f"1-minute load average per round: min {min(m['load1_per_round']):.2f}, max {max(m['load1_per_round']):.2f} "
             f"on {m['cpu_count']} cores"
             + (" — **OVERLOADED: the load exceeded the core count; these numbers measure the other jobs too**.  "
                if m["overloaded"] else ".  "),
             f"Iterations {report['iterations']} (+{report['warmup']} warm-up). {report['note']}", ""]
    for run in report["runs"]:
        lines += [f"## batch {run['batch']}", "",
                  f"Model FLOPs per forward (FlopCounterMode, matmul/conv/attention only): {run['flops']['total'] / 1e9:.1f} GFLOP.", "",
                  "| backend | median ms | p90 ms | p99 ms | process CPU ms | img/s | speed-up vs torch eager (paired, min / median) | GFLOP/s | % of matmul peak | stages (median ms) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for kind, res in run["backends"].items():
            lat = res["latency_ms"]
            stages = ", ".join(f"{k} {v:.1f}" for k, v in res["stages_median_ms"].items() if k != "total")
            ratio = res["speedup_vs_torch_eager"]
            sp = f"{ratio['min']:.2f}x / {ratio['median']:.2f}x" if ratio else "-"
            lines.append(f"| {kind} | {lat['median']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | "
                         f"{res['process_cpu_ms']['median']:.1f} | {res['throughput_img_s']:.2f} | "
                         f"{sp} | {res['gflops_achieved']:.1f} | {100 * res['fraction_of_matmul_peak']:.1f} % | {stages} |")
        for kind, why in run["unavailable"].items():
            lines.append(f"| {kind} | unavailable: {why} | | | | | | | | |")
        top = list(run["flops"]["by_module"].items())[:8]
        lines += ["", "FLOPs by module: " + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in top), ""]
        for kind, how in (("torch", "torch.profiler, self CPU"), ("onnxruntime", "ORT profiler, kernel time per op type")):
            prof = run["backends"].get(kind, {}).get("profile_top_ops")
            if prof:
                lines += [f"Where {kind} spends its time (one forward, {how}): "
                          + ", ".join(f"{p['op']} {100 * p['share']:.0f} %" for p in prof[:8]), ""]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    report = run_model_bench(args)
    write_results(args.out, report, markdown(report))
    return 0
