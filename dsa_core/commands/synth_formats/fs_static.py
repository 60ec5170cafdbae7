"""``dsa synth fs_static``: synthetic Fishyscapes Static val in the real layout (dsa_core.data.synth.anomaly_synth)."""
from dsa_core.commands.synth_formats.benchmark import benchmark_format

add_arguments, run = benchmark_format("fs_static")
