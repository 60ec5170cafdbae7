"""Ablation / baseline study: one plan, every variant x seed trained on the same budget, data and backbone."""
