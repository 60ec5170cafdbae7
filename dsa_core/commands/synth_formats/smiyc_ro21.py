"""``dsa synth smiyc_ro21``: synthetic SMIYC RoadObstacle21 validation in the real layout (dsa_core.data.anomaly_synth)."""
from dsa_core.data.anomaly_synth import cli_hooks

add_arguments, generate = cli_hooks("smiyc_ro21")
