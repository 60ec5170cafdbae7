"""Where ONNX Runtime spends a model dir's fused-graph time, as shares (results/perf_status.md).

    python -m dsa_core.bench.ort_profile MODEL_DIR [--runs 3] [--threads 1] [--out FILE.json]

Runs ``fused.onnx`` (one warm-up, then RUNS profiled runs) with ORT's profiler and sums node kernel time over the
profiled runs: per op type, per part of the model (from the exported node names: frozen ViT, adapter, pixel decoder,
masked-attention decoder, the scoring/post-processing at the head's top level), the deformable-attention "glue"
(nodes inside MSDeformAttn scopes outside their four Linear projections, the definition of
dsa_core/bench/msda_profile.py) and the most expensive single nodes. Shares are of the summed node time, so they
move less with machine load than absolute times do; the 1-minute load average before and after is recorded.
Prints one JSON line (and writes it to --out).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from dsa_core.bench.msda_profile import PROJECTIONS, profiled_runs

# (label, node-name prefix); the first match wins, so the longer prefixes come first
PARTS = (
    ("pixel decoder (MSDA encoder + FPN)", "/head/decoder/pixel_decoder/"),
    ("masked-attention decoder", "/head/decoder/"),
    ("adapter (prior, dual streams)", "/head/adapter/"),
    ("frozen ViT + input normalisation", "/backbone/"),
    ("scoring / post-processing (class combination, upsampling, argmax)", "/head/"),
)


def _part(node: str) -> str:
    return next((label for label, prefix in PARTS if node.startswith(prefix)), "other (nodes ORT renamed when fusing)")


def _shares(times: dict[str, float], total: float, top: int | None = None) -> dict[str, float]:
    ranked = sorted(times.items(), key=lambda kv: -kv[1])
    return {k: round(v / total, 4) for k, v in (ranked[:top] if top else ranked)}


def profile_model_dir(model_dir: str | Path, runs: int = 3, threads: int = 1, top: int = 15) -> dict:
    import onnx
    import onnxruntime as ort

    model_dir = Path(model_dir)
    graph = onnx.load(str(model_dir / "fused.onnx"), load_external_data=False).graph
    scopes = sorted({n.name[: n.name.index("sampling_offsets/")] for n in graph.node if "sampling_offsets/" in n.name})
    manifest = json.loads((model_dir / "manifest.json").read_text())
    shape = manifest["input"]
    b, h, w = int(shape["batch"]), int(shape["height"]), int(shape["width"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tempfile.mkdtemp(prefix="ort_prof_")) / "ort")
    load_before = [round(v, 2) for v in os.getloadavg()]
    sess = ort.InferenceSession(str(model_dir / "fused.onnx"), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).integers(0, 256, (b, 3, h, w), dtype=np.uint8)}
    walls, cpus, events = profiled_runs(sess, feed, runs)  # the warm-up's events are dropped below
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    first_measured = starts[1] if len(starts) > 1 else 0
    by_op: dict[str, float] = {}
    by_part: dict[str, float] = {}
    by_node: dict[str, float] = {}
    glue_by_op: dict[str, float] = {}
    total = glue = projections = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < first_measured:
            continue
        node, dur = e["name"][: -len("_kernel_time")], float(e["dur"])
        op = e.get("args", {}).get("op_name", "?")
        total += dur
        by_op[op] = by_op.get(op, 0.0) + dur
        by_part[_part(node)] = by_part.get(_part(node), 0.0) + dur
        by_node[f"{node} ({op})"] = by_node.get(f"{node} ({op})", 0.0) + dur
        scope = next((s for s in scopes if node.startswith(s)), None)
        if scope is not None:
            if node[len(scope):].startswith(PROJECTIONS):
                projections += dur
            else:
                glue += dur
                glue_by_op[op] = glue_by_op.get(op, 0.0) + dur
    return {"model_dir": str(model_dir), "model": manifest.get("model_name"),
            "size": [h, w], "batch": b, "threads": threads, "runs": runs, "onnxruntime": ort.__version__,
            "wall_ms_median": 1e3 * float(np.median(walls)), "cpu_ms_median": 1e3 * float(np.median(cpus)),
            "node_ms_per_run": total / 1e3 / runs, "msda_modules": len(scopes),
            "msda_glue_share": round(glue / total, 4), "msda_projection_share": round(projections / total, 4),
            "msda_glue_by_op_share": _shares(glue_by_op, total, 10),
            "op_type_share": _shares(by_op, total, top), "part_share": _shares(by_part, total),
            "top_nodes_share": _shares(by_node, total, top),
            "load1_before_after": [load_before[0], round(os.getloadavg()[0], 2)], "cores": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="also write the JSON here")
    a = parser.parse_args()
    result = profile_model_dir(a.model_dir, a.runs, a.threads)
    text = json.dumps(result)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(text)
