"""Compiled torch (inductor) vs eager vs ONNX Runtime on a random-init dsa_nano export at 64x128, 1 thread,
interleaved rounds (results/bench_compile.md). ``python -m dsa_core.bench.compile_compare`` prints one JSON line.
The compile (torch backend ``compile="inductor"``) happens at construction and is reported apart (compile_s)."""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np


def main() -> dict:
    """Export, build the three backends (the compiled one compiles here), time 30 interleaved rounds."""
    import torch

    from dsa_core import build_model
    from dsa_core.export.onnx_export import export_model_dir
    from dsa_core.runtime import create_backend

    torch.manual_seed(0)
    d = tempfile.mkdtemp(prefix="cmp_")
    export_model_dir(build_model("dsa_nano").eval(), d, 64, 128, graphs=("fused",))
    backends = {"torch_eager": create_backend("torch", d, num_threads=1),
                "torch_inductor": create_backend("torch", d, num_threads=1, compile="inductor"),
                "onnxruntime": create_backend("onnxruntime", d, intra_op_threads=1, inter_op_threads=1)}
    compile_s = backends["torch_inductor"].compile_s
    img = np.random.default_rng(0).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)
    for b in backends.values():
        b.infer(img)
    wall: dict[str, list[float]] = {k: [] for k in backends}
    cpu: dict[str, list[float]] = {k: [] for k in backends}
    loads: list[float] = []
    for _ in range(30):
        loads.append(os.getloadavg()[0])
        for k, b in backends.items():
            c0, t1 = time.process_time(), time.perf_counter()
            b.infer(img)
            wall[k].append((time.perf_counter() - t1) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    res = {"compile_s": compile_s, "wall_ms_median": {k: float(np.median(v)) for k, v in wall.items()},
           "cpu_ms_median": {k: float(np.median(v)) for k, v in cpu.items()},
           "paired_eager_over_inductor": {"min": float(min(e / c for e, c in zip(wall["torch_eager"], wall["torch_inductor"]))),
                                          "median": float(np.median([e / c for e, c in zip(wall["torch_eager"], wall["torch_inductor"])]))},
           "paired_inductor_over_ort": float(np.median([c / o for c, o in zip(wall["torch_inductor"], wall["onnxruntime"])])),
           "load1_min_max": [min(loads), max(loads)]}
    eager, compiled = backends["torch_eager"].infer(img), backends["torch_inductor"].infer(img)
    res["argmax_agreement"] = float((eager.class_ids == compiled.class_ids).mean())
    res["anomaly_max_abs_diff"] = float(np.abs(eager.anomaly - compiled.anomaly).max())
    return res


if __name__ == "__main__":
    print(json.dumps(main()))
