"""Custom operators: multi-scale deformable attention (pure PyTorch reference + optional CUDA kernel)."""
from dsa_core.ops.ms_deform_attn import MSDeformAttn, ms_deform_attn, ms_deform_attn_pytorch

__all__ = ["MSDeformAttn", "ms_deform_attn", "ms_deform_attn_pytorch"]
