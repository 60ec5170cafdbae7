"""Eager CPU time of one deformable-attention call per formulation, forward and forward + backward
(results/bench_msda_cpu_kernel.md).

``python -m dsa_core.bench.msda_cpu_bench [ROUNDS]`` times grid_sample, gather and the C++ kernel ("cpp") at the
shapes dsa_nano's stage-1 training step passes (crop 128x256, batch 4; read by hooking the model's calls): 12
single-level calls (ViT tokens, 8x16) and 2 three-level calls (pixel decoder) per step. One thread; the variants
run interleaved within each round (fair on a loaded machine); prints one JSON line of medians in ms, the per-step
MSDA total implied by the call counts, and the load average before and after.
``python -m dsa_core.bench.msda_cpu_bench --model [ROUNDS [H W]]`` times eager dsa_nano inference per variant.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

# (name, calls per training step, value [N, S, M, D], level shapes, Lq, P)
CASES = (
    ("vit_tokens_1level", 12, (4, 128, 3, 32), ((8, 16),), 672, 4),
    ("decoder_3levels", 2, (4, 672, 3, 32), ((4, 8), (8, 16), (16, 32)), 672, 4),
)


def _inputs(value_shape, shapes, lq, points, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, _, m, _ = value_shape
    value = torch.randn(*value_shape, generator=g)
    # reference points plus small offsets, a few percent of the samples outside the map
    locations = torch.rand(n, lq, m, len(shapes), points, 2, generator=g) * 1.1 - 0.05
    weights = torch.rand(n, lq, m, len(shapes), points, generator=g).softmax(-1)
    return value, locations, weights


def _functions():
    from dsa_core.ops import cpu_ext
    from dsa_core.ops.ms_deform_attn import ms_deform_attn_gather, ms_deform_attn_pytorch

    cpu_ext.load_extension()
    return {"grid_sample": ms_deform_attn_pytorch, "gather": ms_deform_attn_gather, "cpp": cpu_ext.ms_deform_attn_cpu}


def run(rounds: int = 15) -> dict:
    torch.set_num_threads(1)
    fns = _functions()
    load_before = [round(v, 2) for v in os.getloadavg()]
    result: dict = {"rounds": rounds, "threads": torch.get_num_threads(), "cases": {}}
    for name, calls, value_shape, shapes, lq, points in CASES:
        value, locations, weights = _inputs(value_shape, shapes, lq, points)
        grad_output = torch.randn(value_shape[0], lq, value_shape[2] * value_shape[3])
        fwd: dict[str, list[float]] = {k: [] for k in fns}
        fwd_bwd: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(rounds + 1):  # round 0 warms up
            for key, fn in fns.items():
                leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
                t0 = time.perf_counter()
                out = fn(leaves[0], shapes, leaves[1], leaves[2])
                t1 = time.perf_counter()
                out.backward(grad_output)
                t2 = time.perf_counter()
                if r:
                    fwd[key].append((t1 - t0) * 1e3)
                    fwd_bwd[key].append((t2 - t0) * 1e3)
        result["cases"][name] = {
            "calls_per_step": calls, "value": list(value_shape), "shapes": [list(s) for s in shapes], "lq": lq,
            "points": points,
            "forward_ms": {k: round(float(np.median(v)), 3) for k, v in fwd.items()},
            "forward_backward_ms": {k: round(float(np.median(v)), 3) for k, v in fwd_bwd.items()},
        }
    result["per_step_ms"] = {
        kind: {k: round(sum(c["calls_per_step"] * c[kind][k] for c in result["cases"].values()), 1) for k in fns}
        for kind in ("forward_ms", "forward_backward_ms")
    }
    result["load"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
    return result


def model_times(rounds: int = 7, height: int = 256, width: int = 512) -> dict:
    """Eager inference of a random-init dsa_nano (batch 1, inference_mode, 1 thread) with each CPU_IMPLEMENTATION,
    interleaved: median ms per forward, and the largest output difference from grid_sample."""
    import importlib

    from dsa_core import build_model

    msda = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the package re-exports a function of this name
    torch.set_num_threads(1)
    _functions()  # build / load the extension outside the timing
    torch.manual_seed(0)
    model = build_model("dsa_nano").eval()
    images = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
    impls = ("grid_sample", "gather", "cpp")
    times: dict[str, list[float]] = {k: [] for k in impls}
    outputs: dict[str, dict] = {}
    saved = msda.CPU_IMPLEMENTATION
    load_before = [round(v, 2) for v in os.getloadavg()]
    try:
        with torch.inference_mode():
            for r in range(rounds + 1):
                for impl in impls:
                    msda.CPU_IMPLEMENTATION = impl
                    t0 = time.perf_counter()
                    out = model(images)
                    if r:
                        times[impl].append((time.perf_counter() - t0) * 1e3)
                    outputs[impl] = out
    finally:
        msda.CPU_IMPLEMENTATION = saved
    diffs = {}
    for impl in ("gather", "cpp"):
        diffs[impl] = max(float((a - outputs["grid_sample"][k]).abs().max()) for k, a in outputs[impl].items()
                          if torch.is_tensor(a) and a.is_floating_point())
    return {"size": [height, width], "rounds": rounds,
            "forward_ms": {k: round(float(np.median(v)), 1) for k, v in times.items()},
            "max_abs_diff_vs_grid_sample": diffs,
            "load": {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--model"]:
        print(json.dumps(model_times(*(int(a) for a in sys.argv[2:]))))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 15)))
