"""``dsa synth smiyc_ra21``: synthetic SMIYC RoadAnomaly21 validation in the real layout (dsa_core.data.synth.anomaly_synth)."""
from dsa_core.commands.synth_formats.benchmark import benchmark_format

add_arguments, run = benchmark_format("smiyc_ra21")
