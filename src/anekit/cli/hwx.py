"""``anekit hwx dump FILE [--json] [--all]`` and ``anekit hwx diff A B [--json]``."""
from __future__ import annotations

import argparse
import os

from ._table import format_table, to_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hwx",
        help="inspect compiled ANE programs (.hwx)",
        description="Disassemble or compare compiled ANE programs (.hwx files).",
    )
    commands = parser.add_subparsers(dest="hwx_command", metavar="{dump,diff}")
    commands.required = True

    dump = commands.add_parser("dump", help="print buffers and every task descriptor's fields")
    dump.add_argument("file", help="a .hwx file")
    dump.add_argument("--json", action="store_true", help="print the decoded program as JSON")
    dump.add_argument("--all", action="store_true", help="list zero-valued fields one per line too")
    dump.set_defaults(func=run_dump)

    diff = commands.add_parser("diff", help="field-level differences between two programs (exit 1 if any)")
    diff.add_argument("a", help="first .hwx file")
    diff.add_argument("b", help="second .hwx file")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")
    diff.set_defaults(func=run_diff)


def run_dump(args: argparse.Namespace) -> int:
    from anekit.hwx import read
    from anekit.hwx.disasm import render_dump

    program = read(args.file)
    if args.json:
        document = {"file": os.fspath(args.file), **program.to_dict()}
        print(to_json(document))
    else:
        title = os.path.basename(os.fspath(args.file))
        print(render_dump(program, title, format_table, all_fields=args.all), end="")
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from anekit.hwx import read
    from anekit.hwx.diff import diff_files, render_diff

    first, second = read(args.a), read(args.b)
    differences = diff_files(first, second)
    if args.json:
        listed = [d.to_dict() for d in differences]
        print(to_json({"a": os.fspath(args.a), "b": os.fspath(args.b), "differences": listed}))
    else:
        compared = min(len(first.tds), len(second.tds))
        print(render_diff(differences, os.fspath(args.a), os.fspath(args.b), compared), end="")
    return 1 if differences else 0
