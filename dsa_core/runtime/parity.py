"""The parity gate: a runtime whose numbers we do not trust by default is accepted only if it reproduces ONNX
Runtime's CPU output on the model dir's own graph.

Why: OpenVINO's CPU plugin computed a different head for the trained dsa_nano (argmax 59 % against ORT,
results/openvino_bisect.md) while loading and running without any error. A backend that can be silently wrong is
checked at load time, every time, against the reference the project's numbers were measured with (ORT CPU, the
backend of ``dsa calibrate`` and the demo). The thresholds live here and nowhere else.
"""
from __future__ import annotations

from typing import Any

from dsa_core.export.quantize import agreement, synthetic_images
from dsa_core.runtime.base import BackendUnavailable

#: class-id agreement (share of pixels) the candidate must reach: 0.1 % of pixels may flip at near-ties.
MIN_ARGMAX_AGREEMENT = 0.999
#: largest per-pixel |anomaly difference| allowed: the OpenVINO workaround measured 2.7e-6, the divergence 0.8.
MAX_ANOMALY_ABS_DIFF = 1e-3
#: seeded synthetic images the probe runs (dsa_core.export.quantize.synthetic_images): one pass of each runtime.
PROBE_IMAGES = 1
PROBE_SEED = 0


class ParityRefused(BackendUnavailable):
    """The candidate runs but disagrees with the reference beyond the thresholds; the text gives the numbers."""


def reference_session(graph: bytes | str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session of ``graph`` (the reference); BackendUnavailable without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"parity probe needs onnxruntime (the CPU reference), not importable: {exc}") from exc
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(reference: Any, candidate: Any, batch: int, height: int, width: int, what: str,
                 n_images: int = PROBE_IMAGES, seed: int = PROBE_SEED,
                 min_agreement: float = MIN_ARGMAX_AGREEMENT, max_anomaly_diff: float = MAX_ANOMALY_ABS_DIFF) -> dict[str, Any]:
    """Run ``reference`` and ``candidate`` (``.run(output_names, {"image": uint8 NCHW})``, ORT's call) on seeded
    synthetic images; the measured agreement when it meets the thresholds, else ParityRefused naming ``what``."""
    images = synthetic_images(n_images, batch, height, width, seed=seed)
    result = agreement(reference, candidate, images)
    report = {**result, "min_argmax_agreement": min_agreement, "max_anomaly_abs_diff": max_anomaly_diff, "seed": seed}
    problems = []
    if not result["argmax_agreement"] >= min_agreement:  # also refuses NaN
        problems.append(f"class-id agreement {result['argmax_agreement']:.4%} < {min_agreement:.4%}")
    if not result["anomaly_max_abs_diff"] <= max_anomaly_diff:
        problems.append(f"max |anomaly diff| {result['anomaly_max_abs_diff']:.3g} > {max_anomaly_diff:.3g}")
    if problems:
        raise ParityRefused(f"{what} disagrees with the ONNX Runtime CPU reference on {report['images']} seeded "
                            f"synthetic image(s): " + "; ".join(problems)
                            + f" (mean |anomaly diff| {result['anomaly_mean_abs_diff']:.3g})")
    return report

