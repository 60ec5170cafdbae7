"""Subcommands of the ``dsa`` CLI; see ``dsa_core.cli.COMMANDS``."""
