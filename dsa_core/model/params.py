"""Parameter accounting: total, frozen backbone, adapter, decoder, trainable (the paper's A.1 numbers)."""
from __future__ import annotations

from torch import nn

# Paper Appendix A.1 (millions): total, frozen backbone, adapter, trainable.
PAPER_COUNTS_M: dict[str, dict[str, float]] = {
    "dsa_tiny": {"total": 28.5, "backbone": 5.5, "adapter": 2.4, "trainable": 23.0},
    "dsa_large": {"total": 435.9, "backbone": 303.3, "adapter": 27.7, "trainable": 133.0},
}


def _count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(model: nn.Module) -> dict[str, int]:
    """Counts for a DSAModel (works on meta-device models)."""
    return {
        "total": _count(model),
        "backbone": _count(model.backbone),
        "adapter": _count(model.adapter),
        "decoder": _count(model.decoder),
        "trainable": _count(model, trainable_only=True),
    }


def format_parameter_table(name: str, counts: dict[str, int]) -> str:
    paper = PAPER_COUNTS_M.get(name, {})
    lines = [f"{'part':<12}{'params (M)':>12}{'paper (M)':>12}{'diff':>9}"]
    for key in ("total", "backbone", "adapter", "decoder", "trainable"):
        value = counts[key] / 1e6
        ref = paper.get(key)
        ref_s = f"{ref:>12.1f}" if ref else f"{'-':>12}"
        diff_s = f"{100.0 * (value - ref) / ref:>+8.1f}%" if ref else f"{'':>9}"
        lines.append(f"{key:<12}{value:>12.3f}{ref_s}{diff_s}")
    return "\n".join(lines)
