"""``dsa synth fs_static``: synthetic Fishyscapes Static val in the real layout (dsa_core.data.anomaly_synth)."""
from dsa_core.data.anomaly_synth import cli_hooks

add_arguments, generate = cli_hooks("fs_static")
