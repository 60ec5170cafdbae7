"""``dsa export --quantize dynamic-int8``: an int8 copy of fused.onnx for the ONNX Runtime CPU backend.

Dynamic quantization (onnxruntime.quantization.quantize_dynamic): MatMul/Gemm weights int8 per output channel,
activations quantized at run time, everything else fp32. It pays where the matmuls dominate (dsa_tiny/large: the
ViT and the projections; issue 16 measured 1.27x on dsa_tiny, nothing on nano). The graph is an extra file
(``fused.int8.onnx``) listed and hashed in the manifest with its accuracy change against fused.onnx on a seeded
synthetic set, so the fp32 graphs and everything that uses them are unchanged.

With ``eval_root`` (``dsa export --quantize-eval-root DIR``) the accuracy change is also measured on a labelled
anomaly set read by dsa_core.data.anomaly_sets (default format: Fishyscapes Lost & Found, as ``dsa eval`` reads it):
each frame goes through both graphs the way the runtime feeds them (dsa_core.export.resize: camera -> export size,
anomaly score back to the label's size), and the pooled AuPRC / FPR95 / AUROC of fp32 and int8 come from the same
accumulator ``dsa eval`` uses (dsa_core.eval.metrics.AnomalyMetricAccumulator), beside the argmax agreement and
anomaly |diff| on those real frames.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dsa_core.export.manifest import listed_file, read_manifest, verify_model_dir, write_manifest

log = logging.getLogger(__name__)

QUANTIZATIONS = ("dynamic-int8",)
INT8_GRAPH = "fused.int8.onnx"
SOURCE_GRAPH = "fused.onnx"


def synthetic_images(n: int, batch: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded uint8 NCHW batches: coarse colour blocks (region structure, like a scene) plus pixel noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (batch, 3, max(1, height // 16), max(1, width // 16)))
        blocks = np.repeat(np.repeat(coarse, 16, axis=2), 16, axis=3)[:, :, :height, :width]
        blocks = np.pad(blocks, ((0, 0), (0, 0), (0, height - blocks.shape[2]), (0, width - blocks.shape[3])), mode="edge")
        out.append(np.clip(blocks + rng.integers(-12, 13, blocks.shape), 0, 255).astype(np.uint8))
    return out


def agreement(reference: Any, candidate: Any, images: list[np.ndarray]) -> dict[str, float]:
    """class-id agreement and anomaly |diff| of ``candidate`` vs ``reference`` (ORT sessions of the fused graph)."""
    from dsa_core.export.graphs import IMAGE_NAME, head_output_names  # torch: not at CLI import

    same, total, diffs, worst = 0, 0, [], 0.0
    outputs = head_output_names(with_scores=False)  # class_ids, anomaly
    for image in images:
        ref_ids, ref_anomaly = reference.run(outputs, {IMAGE_NAME: image})
        ids, anomaly = candidate.run(outputs, {IMAGE_NAME: image})
        same += int((ids == ref_ids).sum())
        total += ids.size
        diff = np.abs(anomaly.astype(np.float64) - ref_anomaly)
        diffs.append(diff.mean())
        worst = max(worst, float(diff.max()))
    return {"argmax_agreement": same / total, "anomaly_mean_abs_diff": float(np.mean(diffs)),
            "anomaly_max_abs_diff": worst, "images": len(images) * images[0].shape[0]}


def labelled_evaluation(reference: Any, candidate: Any, root: str | Path, height: int, width: int, batch: int,
                        key: str = "fs_laf", max_images: int | None = None) -> dict[str, Any]:
    """fp32 (``reference``) vs int8 (``candidate``) ORT sessions of the fused graph on a labelled anomaly set:
    pooled AuPRC / FPR95 / AUROC of each, their differences, and argmax agreement / anomaly |diff| on those frames."""
    from dsa_core.data.anomaly_sets import open_benchmark
    from dsa_core.eval.metrics import AnomalyMetricAccumulator
    from dsa_core.export.graphs import IMAGE_NAME, head_output_names
    from dsa_core.export.resize import images_to_export_size, outputs_to_camera_size

    dataset = open_benchmark(key, root)
    n = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    if n < 1:
        raise ValueError(f"no frames in the {key} set under {root}")
    outputs = head_output_names(with_scores=False)  # class_ids, anomaly
    accs = {"fp32": AnomalyMetricAccumulator(), "int8": AnomalyMetricAccumulator()}
    same = total = 0
    diffs: list[float] = []
    for i in range(n):
        sample = dataset[i]
        h, w = sample.label.shape
        x = images_to_export_size(sample.image[None], height, width)
        x = np.repeat(x, batch, axis=0)  # the graphs have a fixed batch size: the frame in every slot, slot 0 read
        maps = {}
        for name, session in (("fp32", reference), ("int8", candidate)):
            ids, anomaly = session.run(outputs, {IMAGE_NAME: x})
            ids, anomaly = outputs_to_camera_size(ids[:1], anomaly[:1], h, w)
            accs[name].update(anomaly[0], sample.label)
            maps[name] = ids[0], anomaly[0]
        same += int((maps["fp32"][0] == maps["int8"][0]).sum())
        total += maps["fp32"][0].size
        diffs.append(float(np.abs(maps["fp32"][1].astype(np.float64) - maps["int8"][1]).mean()))
    result: dict[str, Any] = {"key": key, "title": dataset.title, "root": str(root), "frames": n}
    for name, acc in accs.items():
        m = acc.compute()
        result[name] = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in m.items()}
    result["delta_auprc"] = result["int8"]["auprc"] - result["fp32"]["auprc"]
    result["delta_fpr95"] = result["int8"]["fpr95"] - result["fp32"]["fpr95"]
    result["argmax_agreement"] = same / total
    result["anomaly_mean_abs_diff"] = float(np.mean(diffs))
    return result


def _session(source: bytes | str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def quantize_model_dir(model_dir: str | Path, method: str = "dynamic-int8", n_images: int = 4, seed: int = 0,
                       eval_root: str | Path | None = None, eval_key: str = "fs_laf",
                       eval_max_images: int | None = None) -> dict[str, Any]:
    """Write INT8_GRAPH next to fused.onnx, measure it against fused.onnx, list both in the manifest.

    ``eval_root``: also measure both graphs on that labelled ``eval_key`` set (``labelled_evaluation``); the result
    goes into the manifest entry as ``labelled_set``. The set is opened before anything is written, so a bad root
    leaves the model dir as it was."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if method not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {method!r}")
    model_dir = Path(model_dir)
    manifest = verify_model_dir(model_dir)
    source = listed_file(model_dir, manifest, SOURCE_GRAPH)
    if eval_root is not None:
        from dsa_core.data.anomaly_sets import open_benchmark

        open_benchmark(eval_key, eval_root)  # fail fast on a missing or malformed set
    target = model_dir / INT8_GRAPH
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        staged = Path(tmp) / INT8_GRAPH
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs one INFO line per skipped tensor on the root
        try:
            quantize_dynamic(str(source), str(staged), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                             weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        staged.replace(target)
    shape = manifest["input"]
    images = synthetic_images(n_images, shape["batch"], shape["height"], shape["width"], seed)
    reference, candidate = _session(str(source)), _session(str(target))
    metrics: dict[str, Any] = agreement(reference, candidate, images)
    log.info("%s vs %s on %d synthetic images: %s", INT8_GRAPH, SOURCE_GRAPH, metrics["images"], metrics)
    if eval_root is not None:
        metrics["labelled_set"] = labelled_evaluation(reference, candidate, eval_root, shape["height"], shape["width"],
                                                      shape["batch"], eval_key, eval_max_images)
        log.info("%s vs %s on %s: %s", INT8_GRAPH, SOURCE_GRAPH, eval_root, metrics["labelled_set"])
    files = {name: {k: v for k, v in meta.items() if k not in ("sha256", "bytes")} for name, meta in manifest["files"].items()}
    files[INT8_GRAPH] = {"kind": "onnx", "graph": "fused", "quantization": {
        "method": method, "tool": "onnxruntime.quantization.quantize_dynamic(MatMul, Gemm; per-channel QInt8 weights)",
        "reference": SOURCE_GRAPH, "synthetic_set": {"seed": seed, "kind": "colour blocks + noise"}, **metrics}}
    info = {k: v for k, v in manifest.items() if k not in ("format", "files")}
    return write_manifest(model_dir, files, info)
