"""``dsa synth road_anomaly``: synthetic Road Anomaly in the real layout (dsa_core.data.anomaly_synth)."""
from dsa_core.data.anomaly_synth import cli_hooks

add_arguments, generate = cli_hooks("road_anomaly")
