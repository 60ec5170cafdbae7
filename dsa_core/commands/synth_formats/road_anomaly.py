"""``dsa synth road_anomaly``: synthetic Road Anomaly in the real layout (dsa_core.data.synth.anomaly_synth)."""
from dsa_core.commands.synth_formats.benchmark import benchmark_format

add_arguments, run = benchmark_format("road_anomaly")
