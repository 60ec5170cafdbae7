"""One module per ``dsa synth`` format, registered in ``dsa_core.commands.synth.FORMATS``."""
