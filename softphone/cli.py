"""``softphone`` command line entry point.

Errors a user can cause end in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from softphone import __version__
from softphone.commands import COMMAND_MODULES
from softphone.errors import CliError  # re-exported: command modules raise softphone.cli.CliError

__all__ = ["CliError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (usage)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softphone", description="Secure Chorus softphone (MIKEY-SAKKE over SIP/SRTP)")
    parser.add_argument("--version", action="version", version=f"softphone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"softphone.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"softphone.commands.{name}":
                continue  # that command group has not been written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"softphone: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("softphone: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
