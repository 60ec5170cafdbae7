"""``export_model_dir``: DSAModel -> backbone.onnx, head.onnx, fused.onnx, model.pt, manifest.json.

Static shapes (one export size H x W, one batch size): the fixed resolution turns the ViT position-embedding
resize, the MSDeformAttn spatial shapes and Mask2Former's attention-mask sizes into constants, which avoids the
shape-tensor problems listed in docs/model_reference.md §2.5. Runtime inputs of any size are resized to the export size
by the runtime (dsa_core.export.resize) and the outputs resized back.

MSDeformAttn goes through the grid_sample path (the dispatcher picks it while exporting), so the graphs hold only
standard ONNX ops (GridSample needs opset >= 16); every graph is checked with onnx.checker and against the ops
TensorRT 10 parses. The optional ``*.msda_plugin.onnx`` variants (dsa_core.export.trt_msda_plugin) are the one
exception: TensorRT-only, with MSDeformAttn as the plugin node.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import math
import platform
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from dsa_core.checkpoint import save_checkpoint
from dsa_core.export.graphs import FEATURE_NAMES, IMAGE_NAME, BackboneGraph, FusedGraph, HeadGraph, head_output_names
from dsa_core.export.manifest import write_manifest
from dsa_core.labels import CITYSCAPES_PALETTE
from dsa_core.export.trt_msda_plugin import MSDA_PLUGIN_SUFFIX, PLUGIN_OP_TYPE
from dsa_core.export.trt_onnx_ops import graph_op_types, ops_unsupported_by_tensorrt
from dsa_core.model.dsa import DSAModel
from dsa_core.model.scoring import DEFAULT_SCORE_ORDER, SCORE_ORDERS

log = logging.getLogger(__name__)

MIN_OPSET = 16  # GridSample
CHECKPOINT_FILE = "model.pt"
ALL_GRAPHS = ("backbone", "head", "fused")


ms_deform_attn = importlib.import_module("dsa_core.ops.ms_deform_attn")  # the module (the package re-exports the function)


@contextlib.contextmanager
def _msda_export_implementation(implementation: str):
    """Which MSDeformAttn formulation the tracer sees (dsa_core.ops.ms_deform_attn.EXPORT_IMPLEMENTATION)."""
    previous = ms_deform_attn.EXPORT_IMPLEMENTATION
    ms_deform_attn.EXPORT_IMPLEMENTATION = implementation
    try:
        yield
    finally:
        ms_deform_attn.EXPORT_IMPLEMENTATION = previous


def _export_one(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                output_names: list[str], opset: int, msda_plugin: bool = False) -> onnx.ModelProto:
    """TorchScript-based exporter (dynamo=False): it traces the grid_sample MSDeformAttn path reliably.
    ``msda_plugin``: every MSDeformAttn becomes one TensorRT plugin node (a TensorRT-only graph)."""
    with warnings.catch_warnings(), _msda_export_implementation("trt_plugin" if msda_plugin else ms_deform_attn.EXPORT_IMPLEMENTATION):
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, do_constant_folding=True, external_data=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    unsupported = ops_unsupported_by_tensorrt(proto, frozenset({PLUGIN_OP_TYPE}) if msda_plugin else frozenset())
    if unsupported:
        raise RuntimeError(f"{path.name} contains ops TensorRT 10 cannot parse: {unsupported}")
    log.info("wrote %s (%.1f MB, %d nodes)", path, path.stat().st_size / 1e6, len(proto.graph.node))
    return proto


def _io_spec(proto: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    def spec(values) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                        "shape": [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]})
        return out
    return {"inputs": spec(proto.graph.input), "outputs": spec(proto.graph.output)}


#: Export size (H, W) of a model without a training scale (``DSAConfig.test_short_side``: the paper presets):
#: half of Cityscapes' 1024x2048, the size the vehicle runs.
DEFAULT_EXPORT_SIZE = (512, 1024)


def default_export_size(cfg: Any) -> tuple[int, int]:
    """The export size a model gets when none is asked for: its training scale on a 2:1 camera frame (dsa_nano:
    256x512; the node resizes every camera image to it, so any other size runs the model out of scale), else
    DEFAULT_EXPORT_SIZE."""
    short = getattr(cfg, "test_short_side", None)
    return (int(short), 2 * int(short)) if short else DEFAULT_EXPORT_SIZE


def export_model_dir(model: DSAModel, out_dir: str | Path, height: int, width: int, batch: int = 1, opset: int = 17,
                     with_scores: bool = False, anomaly_threshold: float | None = None,
                     source_checkpoint: str | None = None, graphs: tuple[str, ...] = ALL_GRAPHS,
                     score_order: str = DEFAULT_SCORE_ORDER, msda_plugin: bool = False) -> dict[str, Any]:
    """Write the graphs (default all three), the checkpoint (for the torch backend) and the manifest.

    No operating point is written unless ``anomaly_threshold`` is given by hand: ``dsa calibrate`` measures one
    (dsa_core.runtime.operating_point says what runtimes use meanwhile). ``score_order``: where the head combines
    classes (dsa_core.model.scoring.SCORE_ORDERS), recorded in the manifest for the torch backend. ``msda_plugin``:
    also write ``<graph>.msda_plugin.onnx`` for the head/fused graphs (MSDeformAttn as TensorRT's plugin node; the
    TensorRT backend's ``msda`` option picks it)."""
    unknown = set(graphs) - set(ALL_GRAPHS)
    if unknown or not graphs:
        raise ValueError(f"graphs must be a non-empty subset of {ALL_GRAPHS}, got {graphs}")
    if ("backbone" in graphs) != ("head" in graphs):
        raise ValueError("backbone and head graphs are only useful together; export both or neither")
    if score_order not in SCORE_ORDERS:
        raise ValueError(f"score_order must be one of {SCORE_ORDERS}, got {score_order!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}: GridSample (MSDeformAttn) needs opset >= {MIN_OPSET}")
    if height <= 0 or width <= 0 or batch <= 0:
        raise ValueError(f"export size and batch must be positive, got {height}x{width} batch {batch}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().cpu()
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=gen)
    outs = head_output_names(with_scores)
    files: dict[str, dict[str, Any]] = {}
    protos: dict[str, onnx.ModelProto] = {}
    with torch.no_grad():
        if "head" in graphs and not cfg.adapter.injector:
            backbone = BackboneGraph(model).eval()
            feats = backbone(image)
            protos["backbone.onnx"] = _export_one(backbone, (image,), out / "backbone.onnx", [IMAGE_NAME], list(FEATURE_NAMES), opset)
            head = HeadGraph(model, with_scores, score_order).eval()
            for variant in ((False, True) if msda_plugin else (False,)):
                name = "head" + (MSDA_PLUGIN_SUFFIX if variant else ".onnx")
                protos[name] = _export_one(head, (image, *feats), out / name, [IMAGE_NAME, *FEATURE_NAMES], outs, opset, variant)
        elif "head" in graphs:
            log.warning("injector baseline: the ViT runs inside the adapter, no shareable backbone; exporting fused.onnx only")
        if "fused" in graphs or cfg.adapter.injector:
            fused = FusedGraph(model, with_scores, score_order).eval()
            for variant in ((False, True) if msda_plugin else (False,)):
                name = "fused" + (MSDA_PLUGIN_SUFFIX if variant else ".onnx")
                protos[name] = _export_one(fused, (image,), out / name, [IMAGE_NAME], outs, opset, variant)
    for name, proto in protos.items():
        plugin = name.endswith(MSDA_PLUGIN_SUFFIX)
        files[name] = {"kind": "onnx", "graph": name.removesuffix(MSDA_PLUGIN_SUFFIX if plugin else ".onnx"), **_io_spec(proto),
                       "op_types": dict(sorted(graph_op_types(proto).items()))}
        if plugin:
            files[name]["variant"] = "msda_plugin: TensorRT only (MultiscaleDeformableAttnPlugin_TRT); not for ONNX Runtime"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "source_checkpoint": source_checkpoint},
                    out / CHECKPOINT_FILE)
    files[CHECKPOINT_FILE] = {"kind": "checkpoint", "note": "config + state dict for the torch backend (weights_only load)"}
    info = {
        "model_name": cfg.name,
        "input": {"height": height, "width": width, "batch": batch, "layout": "NCHW", "dtype": "uint8", "color": "RGB",
                  "runtime_resize": "camera image -> export size: 2x2 box halvings, then bilinear; outputs back: "
                                    "nearest for class ids, bilinear for scores (dsa_core.export.resize)"},
        "normalization": {"scale": 1.0 / 255.0, "mean": list(cfg.pixel_mean), "std": list(cfg.pixel_std),
                          "pad_to_multiple": cfg.size_divisor, "inside_graph": True},
        "classes": [{"id": i, "name": n, "color": list(CITYSCAPES_PALETTE[i]) if i < len(CITYSCAPES_PALETTE) else None}
                    for i, n in enumerate(cfg.class_names)],
        "outputs": {"class_ids": "uint8 [B,H,W]: argmax_k semantic[k]",
                    "anomaly": f"float32 [B,H,W]: score '{cfg.score}' "
                               + ("= 1 - max_k semantic[k] (paper Eq. 2)" if cfg.score == "msp" else "= -sum_k tanh(semantic[k]) (RbA)"),
                    "semantic_scores": "float32 [B,K,H,W]: sum_q softmax(C_q)[k] sigmoid(M_q)" if with_scores else None},
        "score": cfg.score,
        "score_order": score_order,
        "opset": opset,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "exporter": "torch.onnx.export(dynamo=False)",
                     "python": platform.python_version()},
        "source_checkpoint": source_checkpoint,
        "config": cfg.to_dict(),
    }
    if anomaly_threshold is not None:
        if not math.isfinite(anomaly_threshold):
            raise ValueError(f"anomaly_threshold must be finite, got {anomaly_threshold}")
        info["operating_point"] = {"score": cfg.score, "anomaly_threshold": float(anomaly_threshold),
                                   "calibration": {"method": "dsa export --anomaly-threshold (set by hand, not measured)"}}
    return write_manifest(out, files, info)
