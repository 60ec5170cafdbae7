"""Score order on a trained model dir (results/bench_score_order.md): the checkpoint exported once per order
(dsa_core.model.scoring.SCORE_ORDERS) at the model dir's export size, both graphs run in turn on synthetic 720p
drive frames (ONNX Runtime CPU, 1 thread): argmax agreement, anomaly difference, mIoU / AuPRC / FPR95 against the
drive's ground truth, and the paired CPU-time ratio.

``python -m dsa_core.bench.score_order_study [MODEL_DIR] [FRAMES]`` prints the JSON (default models/dsa_nano, 30).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def study(model_dir: Path, n_frames: int) -> dict[str, Any]:
    from dsa_core.bench.pipeline_bench import _drive_frames
    from dsa_core.checkpoint import model_from_checkpoint
    from dsa_core.eval.metrics import AnomalyMetricAccumulator, ConfusionMatrix
    from dsa_core.export.manifest import verify_model_dir
    from dsa_core.export.onnx_export import CHECKPOINT_FILE, export_model_dir
    from dsa_core.export.resize import images_to_export_size, outputs_to_camera_size
    from dsa_core.model.scoring import SCORE_ORDERS
    from dsa_core.runtime import create_backend

    spec = verify_model_dir(model_dir)["input"]
    height, width = int(spec["height"]), int(spec["width"])
    model, _ = model_from_checkpoint(model_dir / CHECKPOINT_FILE, map_location="cpu")
    backends = {}
    for order in SCORE_ORDERS:
        out = Path(tempfile.mkdtemp(prefix=f"order_{order}_"))
        export_model_dir(model.eval(), out, height, width, graphs=("fused",), score_order=order)
        backends[order] = create_backend("onnxruntime", out, intra_op_threads=1, inter_op_threads=1)
    frames: list[Any] = []
    for s in range(-(-n_frames // 10)):
        frames += _drive_frames(10, 720, 1280, 100 + s)
    frames = frames[:n_frames]
    stats = {o: {"conf": ConfusionMatrix(), "anom": AnomalyMetricAccumulator(), "cpu": []} for o in backends}
    agree, diff_mean, diff_max = [], [], []
    for f in frames:
        x = images_to_export_size(f.rgb[None], height, width)
        outs = {}
        for order, backend in backends.items():
            c0 = time.process_time()
            ids, score, _ = backend._run(x)
            stats[order]["cpu"].append((time.process_time() - c0) * 1e3)
            outs[order] = (ids, score)
            big_ids, big_score = outputs_to_camera_size(ids, score, 720, 1280)
            stats[order]["conf"].update(big_ids[0], f.semantic)
            stats[order]["anom"].update(big_score[0], f.anomaly)
        a, b = outs["mask2former"], outs["classes_first"]
        agree.append(float((a[0] == b[0]).mean()))
        diff = np.abs(a[1] - b[1])
        diff_mean.append(float(diff.mean()))
        diff_max.append(float(diff.max()))
    res: dict[str, Any] = {"frames": len(frames), "argmax_agreement_mean": float(np.mean(agree)),
                           "argmax_agreement_min": float(np.min(agree)), "anomaly_abs_diff_mean": float(np.mean(diff_mean)),
                           "anomaly_abs_diff_max": float(np.max(diff_max)), "load": [round(v, 2) for v in os.getloadavg()]}
    for order, s in stats.items():
        m = s["anom"].compute()
        res[order] = {"miou": s["conf"].compute()["miou"], "auprc": m["auprc"], "fpr95": m["fpr95"],
                      "ort_cpu_ms_median": float(np.median(s["cpu"]))}
    res["cpu_ratio_mask2former_over_classes_first"] = (res["mask2former"]["ort_cpu_ms_median"]
                                                       / res["classes_first"]["ort_cpu_ms_median"])
    return res


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(study(Path(args[0]) if args else Path("models/dsa_nano"), int(args[1]) if len(args) > 1 else 30),
                     indent=1))
