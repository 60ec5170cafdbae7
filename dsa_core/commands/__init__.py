"""Subcommands of the ``dsa`` CLI, all registered in one shape.

A registry maps a name to ``(module, help line)``; the module defines ``add_arguments(parser)`` and
``run(args) -> int`` and holds no logic beyond turning arguments into one library call. The top-level commands
(``dsa_core.cli.COMMANDS``), the benchmarks (``dsa bench``) and the synthetic formats (``dsa synth``) are such
registries, dispatched by ``run_entry``. Modules are imported only when their command runs, so ``--help`` is fast.

Mistakes in a command (a bad path, a bad value, a refused checkpoint or model dir, a bad plan) are ``UserError``s or
one of ``user_errors()``: ``dsa_core.cli.main`` prints them as one line and returns exit status 2. So are the
command line's own refusals (``CommandParser``: a bad choice, a missing argument).
"""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn

Registry = dict[str, tuple[str, str]]  # name -> (module path, help line)


class UserError(Exception):
    """A mistake in the command line (not a bug): reported as one line, exit status 2."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Library exceptions that mean the command asked for something that is not there or not usable."""
    from dsa_core.bags.reader import BagTopicError
    from dsa_core.bags.source import BagOpenError
    from dsa_core.checkpoint import CheckpointError
    from dsa_core.config import ConfigError
    from dsa_core.eval.evaluate import DatasetRootError
    from dsa_core.export.manifest import ModelIntegrityError
    from dsa_core.runtime.base import BackendUnavailable
    from dsa_core.study.plan import PlanError

    return (UserError, BagOpenError, BagTopicError, CheckpointError, ConfigError, DatasetRootError, ModelIntegrityError,
            BackendUnavailable, PlanError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError)


class CommandParser(argparse.ArgumentParser):
    """argparse whose refusals (a bad choice or type, a missing or unknown argument) are UserErrors of one line,
    ``<prog>: error: <what>``, so they take the same path as every other user mistake (one line, exit status 2)
    instead of printing the usage block; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: error: {' '.join(message.split())}")


def mount_pitch_deg(text: str) -> float:
    """argparse type of ``--mount-pitch-deg`` (bag-eval, calibrate): the node's mount_pitch_deg range."""
    from dsa_core.perception.obstacles import MOUNT_PITCH_RANGE_DEG

    lo, hi = MOUNT_PITCH_RANGE_DEG
    value = float(text)
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}] degrees, got {text!r}")
    return value


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Every (sub)command's parser: defaults shown in --help, one-line refusals."""
    return CommandParser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def load(registry: Registry, name: str, prog: str) -> ModuleType:
    module_name = registry[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"{prog}: not available in this build ({module_name} missing)") from None
        raise


def run_entry(registry: Registry, name: str, prog: str, argv: list[str],
              common: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Parse ``argv`` with the parser of ``registry[name]`` (plus ``common`` arguments) and run it; a user mistake
    comes out as one UserError naming ``prog``."""
    module = load(registry, name, prog)
    parser = command_parser(prog, registry[name][1])
    if common is not None:
        common(parser)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except Exception as exc:  # noqa: BLE001 - a user mistake gets the command's name; anything else propagates
        if not isinstance(exc, user_errors()):
            raise
        text = " ".join(str(exc).split())  # one line, whatever the exception's own layout
        if isinstance(exc, UserError) and text.startswith("dsa "):
            raise  # already named by a nested command
        raise UserError(f"{prog}: {text}") from exc


def add_choice(parser: argparse.ArgumentParser, registry: Registry, dest: str, extra: tuple[str, ...] = ()) -> None:
    """A nested registry (``dsa bench BENCHMARK ...``): the name, then everything else for that entry's parser."""
    listing = "; ".join(f"{name}: {help_text}" for name, (_, help_text) in registry.items())
    parser.add_argument(dest, choices=list(registry) + list(extra), help=listing.replace("%", "%%"))
    parser.add_argument("options", nargs=argparse.REMAINDER, help=f"the {dest}'s own options (see its --help)")
