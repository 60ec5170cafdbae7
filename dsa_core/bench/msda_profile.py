"""The deformable attention's share of ONNX Runtime time, per formulation (results/bench_msda.md).

``python -m dsa_core.bench.msda_profile IMPL PRESET HEIGHT WIDTH RUNS`` exports a random-init PRESET with
``EXPORT_IMPLEMENTATION = IMPL`` (grid_sample | gather), runs the fused graph RUNS times with ORT's profiler
(1 thread) and prints one JSON line: process CPU / wall medians, and the share of ORT node time spent inside
MSDeformAttn scopes outside their four Linear projections ("glue"), per op type. Run the formulations alternately
(A/B/A/B) on a shared machine. ``python -m dsa_core.bench.msda_profile --torch`` times the two formulations in eager
PyTorch (1 thread) at dsa_nano's and dsa_tiny's pixel-decoder shapes.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECTIONS = ("sampling_offsets/", "attention_weights/", "value_proj/", "output_proj/")


def profiled_runs(sess, feed: dict, runs: int) -> tuple[list[float], list[float], list[dict]]:
    """One warm-up run, then ``runs`` timed runs of a profiling ORT session: wall and process-CPU seconds per timed
    run, and the session's profile events (the warm-up's included; callers drop them by the model_run marks)."""
    sess.run(None, feed)
    walls, cpus = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        sess.run(None, feed)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, json.loads(Path(sess.end_profiling()).read_text())


def profile(impl: str, preset: str, height: int, width: int, runs: int) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    from dsa_core import build_model
    from dsa_core.export.onnx_export import export_model_dir

    msda = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the package re-exports a function of this name
    msda.EXPORT_IMPLEMENTATION = impl
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix=f"msda_{impl}_"))
    export_model_dir(build_model(preset).eval(), out, height, width, batch=1, opset=17, graphs=("fused",))
    graph = onnx.load(str(out / "fused.onnx")).graph
    scopes = sorted({n.name[: n.name.index("sampling_offsets/")] for n in graph.node if "sampling_offsets/" in n.name})
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.enable_profiling, opts.profile_file_prefix = True, str(out / "prof")
    sess = ort.InferenceSession(str(out / "fused.onnx"), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).integers(0, 256, (1, 3, height, width), dtype=np.uint8)}
    walls, cpus, events = profiled_runs(sess, feed, runs)
    total = glue = 0.0
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        total += e["dur"]
        scope = next((s for s in scopes if node.startswith(s)), None)
        if scope is not None and not node[len(scope):].startswith(PROJECTIONS):
            glue += e["dur"]
            op = e["args"].get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + e["dur"]
    return {"impl": impl, "preset": preset, "size": [height, width], "runs": runs, "msda_modules": len(scopes),
            "cpu_ms_median": 1e3 * float(np.median(cpus)), "wall_ms_median": 1e3 * float(np.median(walls)),
            "glue_share": glue / total,
            "glue_by_op_share": {k: v / total for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "load": [round(v, 2) for v in os.getloadavg()]}


def torch_times(rounds: int = 8) -> dict:
    import torch

    from dsa_core.ops.ms_deform_attn import ms_deform_attn_gather, ms_deform_attn_pytorch

    torch.set_num_threads(1)
    res: dict = {}
    for name, shapes, m, d, p in (("nano decoder 256x512", ((8, 16), (16, 32), (32, 64)), 3, 32, 4),
                                  ("tiny decoder 512x1024", ((16, 32), (32, 64), (64, 128)), 8, 32, 4)):
        s = sum(h * w for h, w in shapes)
        g = torch.Generator().manual_seed(0)
        v, loc = torch.randn(1, s, m, d, generator=g), torch.rand(1, s, m, len(shapes), p, 2, generator=g)
        w = torch.rand(1, s, m, len(shapes), p, generator=g).softmax(-1)
        times: dict[str, list[float]] = {"grid_sample": [], "gather": []}
        with torch.inference_mode():
            for r in range(rounds):
                for key, fn in (("grid_sample", ms_deform_attn_pytorch), ("gather", ms_deform_attn_gather)):
                    t0 = time.perf_counter()
                    fn(v, shapes, loc, w)
                    if r:
                        times[key].append((time.perf_counter() - t0) * 1e3)
        res[name] = {k: round(float(np.median(x)), 2) for k, x in times.items()}
    res["load"] = [round(v, 2) for v in os.getloadavg()]
    return res


if __name__ == "__main__":
    if sys.argv[1:] == ["--torch"]:
        print(json.dumps(torch_times()))
    else:
        impl, preset, height, width, runs = sys.argv[1:6]
        print(json.dumps(profile(impl, preset, int(height), int(width), int(runs))))
