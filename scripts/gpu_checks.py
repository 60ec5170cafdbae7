#!/usr/bin/env python3
"""One-shot checks for a machine with a CUDA GPU (budget: a few minutes, run once per device session).

1. Builds/loads the multi-scale deformable attention CUDA extension (timed).
2. Parity of the CUDA kernel with the grid_sample reference (float32, forward and backward) at the deformable
   attention shapes dsa_tiny meets on a 512x1024 input: adapter extractor/refinement (1 level), ViT-Adapter
   injector (3 levels) and the Mask2Former pixel-decoder encoder (3 levels, self-attention).
3. Median time of both paths, forward and forward+backward.
4. The pytest GPU tests (test/test_ms_deform_attn_cuda.py, test/test_ms_deform_attn.py).

Prints one JSON document and writes it to --out (default: $OUT/gpu_checks.json when $OUT is set). Exit status
1 when any parity check or the pytest run fails.

    python scripts/gpu_checks.py [--out FILE] [--height 512 --width 1024 --batch 2] [--skip-pytest]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # last: the venv's dsa_perception (with its generated msg module) wins
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.7;9.0")

import torch  # noqa: E402

from dsa_core.config import get_config  # noqa: E402
from dsa_core.ops import cuda_ext, ms_deform_attn_pytorch  # noqa: E402

# Max |cuda - reference| over max |reference|, per tensor. fp32: grid_sample rounds the pixel coordinate
# differently ((2x - 1 + 1) W - 1) / 2 vs x W - 0.5) and both backward passes accumulate with atomics.
FORWARD_TOLERANCE = 1e-4
BACKWARD_TOLERANCE = 1e-3


def attention_cases(model: str, height: int, width: int) -> dict[str, dict]:
    """Deformable-attention call shapes of `model` at an input of height x width."""
    cfg = get_config(model)
    adapter_heads = cfg.adapter.deform_num_heads
    adapter_dim = int(cfg.backbone.embed_dim * cfg.adapter.deform_ratio) // adapter_heads
    pyramid = [(height // s, width // s) for s in (8, 16, 32)]
    tokens = sum(h * w for h, w in pyramid)
    vit_grid = [(height // 16, width // 16)]
    return {
        "adapter_extractor": dict(shapes=vit_grid, lq=tokens, m=adapter_heads, d=adapter_dim, p=cfg.adapter.n_points),
        "adapter_injector": dict(shapes=pyramid, lq=vit_grid[0][0] * vit_grid[0][1], m=adapter_heads, d=adapter_dim,
                                 p=cfg.adapter.n_points),
        "pixel_decoder_encoder": dict(shapes=pyramid, lq=tokens, m=cfg.decoder.enc_heads,
                                      d=cfg.decoder.conv_dim // cfg.decoder.enc_heads, p=cfg.decoder.enc_n_points),
    }


def make_inputs(case: dict, batch: int, seed: int, device: str = "cuda") -> tuple[torch.Tensor, ...]:
    """Reference points in [0, 1] plus offsets of a few pixels (some points land outside), softmax weights."""
    g = torch.Generator(device=device).manual_seed(seed)
    shapes = torch.tensor(case["shapes"], dtype=torch.int64, device=device)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    n_levels, lq, m, d, p = len(case["shapes"]), case["lq"], case["m"], case["d"], case["p"]
    value = torch.randn(batch, int(areas.sum()), m, d, device=device, generator=g)
    reference = torch.rand(batch, lq, 1, 1, 1, 2, device=device, generator=g)
    pixels = torch.stack([shapes[:, 1], shapes[:, 0]], -1).float().view(1, 1, 1, n_levels, 1, 2)
    offsets = torch.randn(batch, lq, m, n_levels, p, 2, device=device, generator=g) * 4.0 / pixels
    locations = (reference + offsets).contiguous()
    weights = torch.randn(batch, lq, m, n_levels * p, device=device, generator=g).softmax(-1)
    return value, shapes, starts, locations, weights.view(batch, lq, m, n_levels, p).contiguous()


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def check_parity(fn, inputs) -> dict:
    value, shapes, starts, locations, weights = inputs
    ref_leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    cuda_leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    ref = ms_deform_attn_pytorch(ref_leaves[0], shapes, ref_leaves[1], ref_leaves[2])
    out = fn(cuda_leaves[0], shapes, starts, cuda_leaves[1], cuda_leaves[2], 64)
    grad_output = torch.randn_like(ref)
    ref.backward(grad_output)
    out.backward(grad_output)
    result = {
        "forward_max_abs": (out - ref).abs().max().item(),
        "forward_rel": relative_error(out, ref),
    }
    for name, a, b in zip(("value", "sampling_locations", "attention_weights"), cuda_leaves, ref_leaves):
        result[f"grad_{name}_max_abs"] = (a.grad - b.grad).abs().max().item()
        result[f"grad_{name}_rel"] = relative_error(a.grad, b.grad)
    result["ok"] = result["forward_rel"] < FORWARD_TOLERANCE and all(
        result[f"grad_{n}_rel"] < BACKWARD_TOLERANCE for n in ("value", "sampling_locations", "attention_weights")
    )
    return result


def median_ms(step, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_paths(fn, inputs, repeats: int) -> dict:
    value, shapes, starts, locations, weights = inputs
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    grad_output = torch.randn(value.shape[0], locations.shape[1], value.shape[2] * value.shape[3], device=value.device)
    paths = {
        "cuda": lambda v, loc, w: fn(v, shapes, starts, loc, w, 64),
        "grid_sample": lambda v, loc, w: ms_deform_attn_pytorch(v, shapes, loc, w),
    }
    timings = {}
    for name, path in paths.items():
        def forward(path=path):
            with torch.no_grad():
                path(value, locations, weights)

        def forward_backward(path=path):
            for leaf in leaves:
                leaf.grad = None
            path(*leaves).backward(grad_output)

        timings[f"{name}_forward_ms"] = median_ms(forward, repeats)
        timings[f"{name}_forward_backward_ms"] = median_ms(forward_backward, repeats)
    timings["speedup_forward"] = timings["grid_sample_forward_ms"] / timings["cuda_forward_ms"]
    timings["speedup_forward_backward"] = timings["grid_sample_forward_backward_ms"] / timings["cuda_forward_backward_ms"]
    return timings


def run_pytest(timeout_s: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "test/test_ms_deform_attn_cuda.py", "test/test_ms_deform_attn.py", "-q",
           "-rs", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = -1, f"pytest timed out after {timeout_s} s\n{exc.stdout or ''}"
    return {"returncode": rc, "seconds": round(time.perf_counter() - start, 1), "tail": output[-3000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = Path(os.environ["OUT"]) / "gpu_checks.json" if os.environ.get("OUT") else Path("gpu_checks.json")
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--model", default="dsa_tiny")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-pytest", action="store_true")
    parser.add_argument("--pytest-timeout", type=int, default=240)
    args = parser.parse_args()

    report: dict = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "arch_list": os.environ["TORCH_CUDA_ARCH_LIST"],
    }
    ok = True
    if not torch.cuda.is_available():
        report["error"] = "no CUDA device visible to torch"
        ok = False
    else:
        report["device"] = torch.cuda.get_device_name()
        report["capability"] = list(torch.cuda.get_device_capability())
        start = time.perf_counter()
        try:
            cuda_ext.load_extension(verbose=False)
            report["extension_load_s"] = round(time.perf_counter() - start, 1)
        except Exception as exc:  # noqa: BLE001 - reported in the JSON, the remaining checks need the extension
            report["extension_error"] = f"{type(exc).__name__}: {exc}"
            ok = False
        fn = cuda_ext.cuda_function() if ok else None
        if fn is not None:
            report["cases"] = {}
            for i, (name, case) in enumerate(attention_cases(args.model, args.height, args.width).items()):
                inputs = make_inputs(case, args.batch, seed=i)
                entry = {"shape": {k: v for k, v in case.items()}, "batch": args.batch}
                entry["parity_fp32"] = check_parity(fn, inputs)
                entry["timing"] = time_paths(fn, inputs, args.repeats)
                ok &= entry["parity_fp32"]["ok"]
                report["cases"][name] = entry
                print(f"{name}: parity ok={entry['parity_fp32']['ok']} "
                      f"fwd cuda {entry['timing']['cuda_forward_ms']:.3f} ms vs grid_sample "
                      f"{entry['timing']['grid_sample_forward_ms']:.3f} ms", file=sys.stderr)
                del inputs
                torch.cuda.empty_cache()
    if not args.skip_pytest:
        report["pytest"] = run_pytest(args.pytest_timeout)
        ok &= report["pytest"]["returncode"] == 0
    report["ok"] = bool(ok)
    text = json.dumps(report, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
