"""Compiled torch (inductor) vs eager vs ONNX Runtime, 1 thread each, interleaved rounds (results/bench_compile.md).

    python -m dsa_core.bench.compile_compare                                   # random-init dsa_nano at 64x128
    python -m dsa_core.bench.compile_compare --model-dir /tmp/nano --rounds 12 # an existing model dir (its export size)

Prints one JSON line. The compile (torch backend ``compile="inductor"``) happens at construction and is reported
apart (compile_s). Each round runs the three backends once; the order alternates (forward on even rounds, reversed on
odd ones) so a backend is not always the one that runs after the same neighbour. Per round: wall and process CPU ms,
the 1-minute load average; paired per-round ratios (min / median / max) are the figures to read on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def _paired(num: list[float], den: list[float]) -> dict[str, float]:
    r = [a / b for a, b in zip(num, den)]
    return {"min": float(min(r)), "median": float(np.median(r)), "max": float(max(r))}


def main(model_dir: str | None = None, height: int = 64, width: int = 128, rounds: int = 30) -> dict:
    """Export (unless ``model_dir``), build the three backends (the compiled one compiles here), time the rounds."""
    import torch

    from dsa_core.runtime import create_backend

    if model_dir is None:
        from dsa_core import build_model
        from dsa_core.export.onnx_export import export_model_dir

        torch.manual_seed(0)
        model_dir = tempfile.mkdtemp(prefix="cmp_")
        export_model_dir(build_model("dsa_nano").eval(), model_dir, height, width, graphs=("fused",))
    load_start = os.getloadavg()
    backends = {"torch_eager": create_backend("torch", model_dir, num_threads=1),
                "torch_inductor": create_backend("torch", model_dir, num_threads=1, compile="inductor"),
                "onnxruntime": create_backend("onnxruntime", model_dir, intra_op_threads=1, inter_op_threads=1)}
    compile_s = backends["torch_inductor"].compile_s
    h, w = backends["onnxruntime"].height, backends["onnxruntime"].width
    img = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    for b in backends.values():
        b.infer(img)
    wall: dict[str, list[float]] = {k: [] for k in backends}
    cpu: dict[str, list[float]] = {k: [] for k in backends}
    loads: list[float] = []
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        for k in (list(backends) if r % 2 == 0 else list(backends)[::-1]):
            c0, t1 = time.process_time(), time.perf_counter()
            backends[k].infer(img)
            wall[k].append((time.perf_counter() - t1) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    res = {"model_dir": str(model_dir), "size": [h, w], "rounds": rounds, "threads": 1, "compile_s": compile_s,
           "load_at_start": list(load_start),
           "wall_ms_median": {k: float(np.median(v)) for k, v in wall.items()},
           "cpu_ms_median": {k: float(np.median(v)) for k, v in cpu.items()},
           "paired_eager_over_inductor": _paired(wall["torch_eager"], wall["torch_inductor"]),
           "paired_inductor_over_ort": _paired(wall["torch_inductor"], wall["onnxruntime"]),
           "paired_eager_over_ort": _paired(wall["torch_eager"], wall["onnxruntime"]),
           "paired_cpu_inductor_over_ort": _paired(cpu["torch_inductor"], cpu["onnxruntime"]),
           "load1_per_round": loads, "load1_min_max": [min(loads), max(loads)],
           "wall_ms": wall, "cpu_ms": cpu}
    eager, compiled = backends["torch_eager"].infer(img), backends["torch_inductor"].infer(img)
    res["argmax_agreement"] = float((eager.class_ids == compiled.class_ids).mean())
    res["anomaly_max_abs_diff"] = float(np.abs(eager.anomaly - compiled.anomaly).max())
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="an existing model dir (fused.onnx + model.pt); default: export a "
                        "random-init dsa_nano at --height x --width")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=30)
    a = parser.parse_args()
    print(json.dumps(main(a.model_dir, a.height, a.width, a.rounds)))
