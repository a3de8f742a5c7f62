"""The ``poselift`` command: a thin layer over importable functions.

Each package contributes its subcommands through a ``commands`` module with a
``register(subparsers)`` function; heavy imports happen inside the handlers so that
``poselift --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from . import __version__
from .errors import PoseliftError
from .thread_pools import configure_thread_pools

configure_thread_pools()  # before any handler imports torch (they import it lazily)

# Each package's subcommands; a package whose commands module is not installed is skipped.
COMMAND_MODULES: tuple[str, ...] = (
    "poselift.model.commands", "poselift.model.export_commands", "poselift.train.commands",
    "poselift.stream.commands", "poselift.bench.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poselift",
        description="Real-time streaming 3D human pose lifting (2D keypoints in, 3D poses out).",
        epilog="Run 'poselift COMMAND --help' for each command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"poselift {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (PoseliftError, FileNotFoundError, ValueError) as exc:  # the user's input: one line
        print(f"poselift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)
