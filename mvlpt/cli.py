"""``mvlpt <verb>``: the command-line interface every workflow rule calls.

Every verb's parser and handler live in a module of :mod:`mvlpt.commands` (:data:`COMMAND_MODULES`, in
the order ``mvlpt --help`` lists them); this module builds the parser from them and dispatches.

Errors a user can cause end in one sentence on stderr (``mvlpt: error: ...``) and exit status 2;
outputs are written atomically, so a failed command leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mvlpt import __version__
from mvlpt.errors import MvlptError

# Modules under mvlpt.commands that add verbs (each has add_parser(subparsers)), in help order.
COMMAND_MODULES = (
    "tasks",
    "train",
    "info",
    "data",
    "analysis",
    "preflight",
    "predict",
    "groundtruth",
    "multitask",
    "reference",
    "budget",
    "budgeted",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvlpt", description="Multitask vision-language prompt tuning: the task-transferability study."
    )
    parser.add_argument("--version", action="version", version=f"mvlpt {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mvlpt.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("mvlpt.commands"):
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from mvlpt.study.domains import check_statistics_args

        check_statistics_args(args)  # --level, --n-boot, --n-perm of any command (issue 24, class 4)
        return int(args.func(args) or 0)
    except MvlptError as e:
        from mvlpt.errors import one_line

        msg = one_line(e)  # a path or name with a newline in it stays on the one line
        print(f"mvlpt: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mvlpt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
