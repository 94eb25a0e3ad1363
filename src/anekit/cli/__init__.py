"""The `anekit` command line (argparse, so `--help` works on every command).

Each subcommand module exposes `register(subparsers)`; handlers return an exit code and raise
AnekitError for bad input, which main() prints as one line (exit 2), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import AnekitError

# Subcommand modules, in the order `anekit --help` lists them.
COMMAND_MODULES = ("run", "check", "devices", "hwx", "train", "generate")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog="anekit",
        description="Build, check, estimate, simulate and run Apple Neural Engine programs.",
        epilog="Run `anekit COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"anekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:              # output piped into `head`: stop quietly
        sys.stderr.close()
        return 141
    except (AnekitError, OSError) as e:  # bad input, unreadable or unwritable files: one line
        print(f"anekit: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anekit: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def entry() -> None:
    sys.exit(main())
