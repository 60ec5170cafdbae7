"""``dsa synth fs_laf``: synthetic Fishyscapes Lost & Found val in the real layout (dsa_core.data.anomaly_synth)."""
from dsa_core.data.anomaly_synth import cli_hooks

add_arguments, generate = cli_hooks("fs_laf")
