"""One module per ``dsa synth`` format: ``add_arguments(parser)`` and ``generate(args)`` (see commands/synth.py)."""
