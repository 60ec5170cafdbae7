"""``dsa synth smiyc_ra21``: synthetic SMIYC RoadAnomaly21 validation in the real layout (dsa_core.data.anomaly_synth)."""
from dsa_core.data.anomaly_synth import cli_hooks

add_arguments, generate = cli_hooks("smiyc_ra21")
