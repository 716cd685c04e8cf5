"""``softphone gui``: the desktop app (PySide6 + qasync) over the same call core as the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

from softphone.cli import CliError, configured_account, user_errors
from softphone.config import DEFAULT_CONFIG
from softphone.gui.app import needs_setup


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="start the desktop softphone window")
    p.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml); "
                                   "without one a first-run wizard creates it")
    p.add_argument("--account", help="account name or URI")
    p.add_argument("--profile", help="profile name or .toml path (default: the account's)")
    p.add_argument("--data-dir", type=Path, help="contacts, call history and settings "
                                                 "(default ~/.local/share/softphone)")
    p.add_argument("--play", type=Path, help="send this WAV file instead of the microphone")
    p.add_argument("--record", type=Path, help="write received audio to this WAV file instead of the speaker")
    p.set_defaults(func=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> int:
    config = Path(args.config).expanduser() if args.config else DEFAULT_CONFIG
    first_run = needs_setup(config)  # no accounts file (or an empty one): the first-run wizard
    account = None if first_run else configured_account(args.config, args.account, code=2)
    try:
        import qasync  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except ImportError as exc:
        raise CliError(f"the desktop app needs PySide6 and qasync (pip install -e '.[gui]'): {exc}", 2) from None
    from softphone.gui.app import run
    from softphone.gui.controller import default_data_dir

    with user_errors(2):
        return run(account, args.data_dir or default_data_dir(), profile=args.profile, play=args.play,
                   record=args.record, config=config)
