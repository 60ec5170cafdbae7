"""``dsa synth smiyc_ro21``: synthetic SMIYC RoadObstacle21 validation in the real layout (dsa_core.data.synth.anomaly_synth)."""
from dsa_core.commands.synth_formats.benchmark import benchmark_format

add_arguments, run = benchmark_format("smiyc_ro21")
