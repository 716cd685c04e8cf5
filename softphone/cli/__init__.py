"""``softphone`` command line entry point.

Errors a user can cause end in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from softphone import __version__
from softphone.errors import SoftphoneError

__all__ = ["CliError", "build_parser", "main"]

#: Subcommand modules of this package; each defines ``register(subparsers)`` adding its parser(s)
#: with ``set_defaults(func=handler)``. A handler takes the parsed namespace and returns an exit code
#: (0 ok, 1 rejected/failed, 2 usage error).
COMMAND_MODULES = (
    "mikey",    # softphone mikey inspect|create
    "keys",     # softphone keys fetch|import|list
    "devices",  # softphone devices
    "call",     # softphone register|call|answer|interactive
    "gui",      # softphone gui
    "analyze",  # softphone analyze CAPTURE
)


class CliError(SoftphoneError):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (usage)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softphone", description="Secure Chorus softphone (MIKEY-SAKKE over SIP/SRTP)")
    parser.add_argument("--version", action="version", version=f"softphone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"softphone.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"softphone.cli.{name}":
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
