"""Benchmark implementations behind ``dsa bench``."""
