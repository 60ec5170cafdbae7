"""dsa_core: the Dual-Stream Adapter (DSA) anomaly segmentation model, training, evaluation, export and runtime.

Pure Python + PyTorch; never imports ROS.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from dsa_core.model.dsa import DSAModel


def build_model(name_or_config: Any, backbone_weights: str | None = None) -> "DSAModel":
    """Build a DSAModel from a preset name (``dsa_nano``/``dsa_tiny``/``dsa_large``), a dict or a DSAConfig.

    ``backbone_weights``: a local timm checkpoint or safetensors file for the frozen ViT; nothing is downloaded.
    """
    from dsa_core.model.dsa import build_model as _build

    return _build(name_or_config, backbone_weights=backbone_weights)


__all__ = ["build_model", "__version__"]
