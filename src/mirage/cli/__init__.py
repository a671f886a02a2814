"""The `mirage` command line: one sub-module per command group, each with ``add_parser``."""

from __future__ import annotations

import argparse
import importlib
import sys

from mirage.errors import MirageError

# Command groups, imported lazily so `mirage --help` stays fast.
COMMANDS = {
    "bench": "mirage.cli.bench",
    "world": "mirage.cli.world",
    "generate": "mirage.cli.generate",
    "train": "mirage.cli.train",
    "eval": "mirage.cli.eval",
    "data": "mirage.cli.data",
    "wan": "mirage.cli.wan",
    "explore": "mirage.cli.explore",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirage", description="Latent spatial memory for video world models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MirageError as err:
        # User errors: one clear line, no traceback.
        print(f"mirage: error: {err}", file=sys.stderr)
        return 2
