"""``softphone`` command line entry point.

Errors a user can cause end in one line on stderr and a non-zero exit, never a traceback. The
boundary is :func:`user_errors`: every command runs the phone's code inside it, so each package's
root error (``SoftphoneError``, ``SipError``) becomes one :class:`CliError` with the command's exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

from softphone import __version__
from softphone.config import Account, load_accounts, select_account
from softphone.errors import SoftphoneError
from softphone.sip.errors import SipError

__all__ = ["CliError", "build_parser", "configured_account", "main", "read_file", "user_errors"]

T = TypeVar("T")

#: Exit codes shared by every command (the table in docs/USER-GUIDE.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141

#: Subcommand modules of this package; each defines ``register(subparsers)`` adding its parser(s)
#: with ``set_defaults(func=handler)``. A handler takes the parsed namespace and returns an exit code:
#: 0 ok; 1 the operation failed or was refused (call, registration, KMS, verification); 2 usage or
#: configuration (arguments, accounts file, profile, keystore or passphrase, audio files or devices).
COMMAND_MODULES = (
    "mikey",    # softphone mikey inspect|create
    "keys",     # softphone keys fetch|import|list
    "groups",   # softphone groups list
    "devices",  # softphone devices
    "call",     # softphone register|call|answer|interactive
    "message",  # softphone message send|listen|list|read|delete
    "voicemail",  # softphone voicemail record|list|play
    "gui",      # softphone gui
    "setup",    # softphone setup
    "analyze",  # softphone analyze CAPTURE
)


class CliError(SoftphoneError):
    """A user-facing failure: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def user_errors(code: int = 1) -> Iterator[None]:
    """Translate the errors a user can cause, raised inside, into one :class:`CliError` exiting ``code``.

    SIP failures read ``SIP: …``; every other root error (config, profile, keys, calls) is its own
    one-line message. Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except CliError:
        raise
    except SipError as exc:  # checked first: SIP's root may also be a SoftphoneError
        raise CliError(f"SIP: {exc}", code) from None
    except SoftphoneError as exc:
        raise CliError(str(exc), code) from None


def configured_account(config: str | None, name: str | None, code: int = 1) -> Account:
    """The account ``name`` (or the only one) of the accounts file ``config`` (default location if None)."""
    with user_errors(code):
        return select_account(load_accounts(config), name)


def read_file(path: Path, parse: Callable[[bytes], T], errors: type[Exception] | tuple[type[Exception], ...],
              code: int = 2) -> T:
    """``parse`` the bytes of ``path``; an unreadable file or an ``errors`` refusal is a one-line CliError."""
    try:
        return parse(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", code) from None
    except errors as exc:
        raise CliError(f"{path}: {exc}", code) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (usage)
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
                continue  # a command group left out of this install (e.g. a trimmed wheel)
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
    except BrokenPipeError:  # e.g. `softphone mikey inspect … | head`: the reader is gone, stop quietly
        _silence_stdout()
        return EXIT_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
