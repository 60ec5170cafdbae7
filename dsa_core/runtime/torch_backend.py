"""PyTorch eager backend: the checkpoint stored in the model dir, run through the same graph modules as the export."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsa_core.checkpoint import model_from_checkpoint
from dsa_core.export.graphs import BackboneGraph, HeadGraph
from dsa_core.export.manifest import listed_file
from dsa_core.export.onnx_export import CHECKPOINT_FILE
from dsa_core.ops.ms_deform_attn import prepare_cpu_kernel
from dsa_core.runtime.base import BackendUnavailable, InferenceBackend


class TorchBackend(InferenceBackend):
    """``device`` cpu | cuda[:N]; ``precision`` fp32 | fp16 (fp16 = CUDA autocast; refused on CPU).

    ``compile``: a ``torch.compile`` backend name ("inductor"; "aot_eager" traces without code generation) or None
    for eager. The whole pass (backbone + head) is compiled once, at construction, for the export size and batch
    (static shapes: the deformable attention carries its level shapes as Python ints, so it is one graph; on CPU
    the graph calls the C++ deformable-attention kernel as a custom op); the
    first, compiling call runs there too, so ``infer`` latencies never include it (``compile_s`` in describe()).
    Inductor keeps its compiled kernels in its on-disk cache, so a later process with the same model and shapes
    skips most of the compile.
    """

    name = "torch"
    provides_class_scores = True

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32", num_threads: int | None = None,
                 compile: str | None = None):
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"torch backend precision must be fp32 or fp16, got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend: device {device!r} requested but torch.cuda.is_available() is False")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("torch backend: fp16 is only supported on CUDA (CPU half kernels are slow/missing)")
        super().__init__(model_dir, device, precision)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        model, _ = model_from_checkpoint(listed_file(self.model_dir, self.manifest, CHECKPOINT_FILE), map_location="cpu")
        self.model = model.eval().to(device)
        self.split = not model.cfg.adapter.injector
        self.backbone_graph = BackboneGraph(self.model).eval()
        # the scores exist anyway (argmax input); combined where the export combined them (older dirs: Mask2Former's)
        self.head_graph = HeadGraph(self.model, with_scores=True,
                                    score_order=self.manifest.get("score_order", "mask2former")).eval()
        self._torch_device = torch.device(device)
        self.compile_backend, self.compile_s = compile, None
        self._compiled = None
        if compile is not None:
            t0 = time.perf_counter()
            if self._torch_device.type == "cpu":
                prepare_cpu_kernel()  # so the compiled graph calls the one-pass deformable-attention kernel
            self._compiled = torch.compile(self._eager_pass, backend=compile, dynamic=False, fullgraph=True)
            self._run(np.zeros((self.batch, 3, self.height, self.width), np.uint8))  # compiles: outside every statistic
            self.compile_s = time.perf_counter() - t0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "compile": self.compile_backend, "compile_s": self.compile_s}

    def _sync(self) -> None:
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        ids, score, _, stages = self._forward(images, with_scores=False)
        return ids, score, stages

    def _run_scores(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        return self._forward(images, with_scores=True)

    @torch.inference_mode()
    def _forward(self, images: np.ndarray, with_scores: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, float]]:
        """One pass; the class scores leave the device only when asked for (they are [B, K, H, W])."""
        x = torch.from_numpy(images).to(self._torch_device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
            t0 = time.perf_counter()
            if self._compiled is None:
                # injector baseline: the ViT runs inside the adapter, so there is no separate backbone stage
                feats = self.backbone_graph(x) if self.split else (None, None, None, None)
                self._sync()
                t1 = time.perf_counter()
                ids, score, semantic = self.head_graph(x, *feats)
                self._sync()
                t2 = time.perf_counter()
                stages = {"backbone": (t1 - t0) * 1e3, "head": (t2 - t1) * 1e3}
            else:  # one compiled graph: no stage boundary to time
                ids, score, semantic = self._compiled(x)
                self._sync()
                stages = {"compiled": (time.perf_counter() - t0) * 1e3}
        return (ids.cpu().numpy(), score.float().cpu().numpy(), semantic.float().cpu().numpy() if with_scores else None,
                stages)

    def _eager_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone + head in one function (what ``compile`` compiles)."""
        feats = self.backbone_graph(x) if self.split else (None, None, None, None)
        return self.head_graph(x, *feats)
