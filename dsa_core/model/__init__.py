"""DSA model parts: frozen ViT backbone, dual-stream adapter, Mask2Former decoder, full model."""
