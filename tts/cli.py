"""The `timbre` command. Each area of the studio registers its own subcommands.

A module listed in `COMMAND_MODULES` exposes ``register(subparsers) -> None``; each parser it adds sets
``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from tts import __version__
from tts.errors import TimbreError

COMMAND_MODULES: tuple[str, ...] = (
    "tts.doctor",
    "tts.say",
    "tts.checkpoints",
    "app.cli",
    "vocoder.cli",
    "tts.evaluation.cli",
    "tts.tokenizer.cli",
    "tts.data.cli",
    "tts.watermark",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="timbre", description="Timbre Studio: expressive zero-shot TTS and voice cloning")
    parser.add_argument("--version", action="version", version=f"timbre-studio {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `timbre` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if os.environ.get("TIMBRE_THREADS"):  # e.g. 1 on a machine busy with other work: fewer threads, less contention
        from tts.device import configure_threads

        configure_threads()
    try:
        return int(args.func(args) or 0)
    except TimbreError as error:
        print(f"timbre {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
