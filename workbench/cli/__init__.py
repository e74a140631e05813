"""`sinkbench`: the command line of Sink Workbench.

    >>> from workbench.cli import main
    >>> main(["probe", "sinks", "--model", "tiny-llama", "--json", "out/sinks.json"])     # = the shell command

One module per subcommand, listed in `COMMANDS`. Each holds NAME, SUMMARY (its line in `sinkbench --help`),
EXAMPLE (the end of its own --help), `add_arguments(parser)`, which also sets `func` (the function that runs
the command), and optionally `listing()`: what a registry holds (the probes, the catalogue), appended to its
--help. Errors the user can fix are printed as one line (`sinkbench: error: ...`, exit status 2), never as a
traceback: a bad argument (`OneLineParser`), a WorkbenchError, and an OSError of the file system (a full disk,
a permission) that no check could foresee. Outputs and devices are checked before any model is loaded.

Start-up: a subcommand's arguments are added only when it is the one parsed, its listing only when its help
is printed, and torch, transformers and pandas are imported only inside the functions that run a command.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from workbench.cli import data, eval, explore, figures, models, probe, run, stream, train, train_vit
from workbench.cli.common import OneLineParser, attention_policy
from workbench.core.errors import WorkbenchError

COMMANDS: list[ModuleType] = [models, data, eval, probe, run, figures, explore, stream, train, train_vit]


class CommandParser(OneLineParser):
    """A subcommand's parser that adds its arguments when first used and its listing when help is printed."""

    def __init__(self, *args, command: ModuleType | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._command = command
        self._has_arguments = self._has_listing = command is None

    def _add_arguments(self) -> None:
        if not self._has_arguments:
            self._has_arguments = True
            self._command.add_arguments(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_arguments()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_arguments()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_arguments()
        if not self._has_listing:
            self._has_listing = True
            if hasattr(self._command, "listing"):
                self.epilog += self._command.listing()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The `sinkbench` parser; each subcommand's options are added when that subcommand is parsed."""
    parser = OneLineParser(
        prog="sinkbench",
        description="Sink Workbench: measure attention sinks, intervene on them through TransformerLens hooks, "
                    "and turn every result into a figure.",
        epilog="example:\n  sinkbench models fetch --all && sinkbench eval --model smollm2-135m\n\n"
               "Run `sinkbench COMMAND --help` for each command's options and a worked example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for command in COMMANDS:
        sub.add_parser(command.NAME, command=command, help=command.SUMMARY, description=command.SUMMARY,
                       epilog="example:\n" + command.EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `sinkbench` with `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with attention_policy(args):  # --attention-block: every pass of the command (workbench.attention)
            return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"sinkbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (a full disk, a permission changed mid-run): the user's to fix
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"sinkbench: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sinkbench: interrupted (finished units of a sweep are kept; rerun to resume)", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
