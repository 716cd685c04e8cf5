"""``softphone setup``: create an account in the terminal, test it, save it.

Asks for the SIP URI, registrar/proxy, password, the KMS URL and token (or KMS XML files to
import), and a keystore passphrase (strength-checked); then registers once and fetches the keys
as a test, and saves the accounts file (0600) with its secrets files beside it (0600). The same
checks and the same file as the GUI's first-run wizard (:mod:`softphone.setup`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from softphone.cli import CliError
from softphone.config import DEFAULT_CONFIG, ConfigError
from softphone.setup import AccountCheckError, NewAccount, check_account, validate_account, write_accounts_file

ATTEMPTS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("setup", help="create an account interactively, test it and save it")
    p.add_argument("--config", type=Path, help=f"accounts file to write (default {DEFAULT_CONFIG})")
    p.add_argument("--no-check", action="store_true", help="save without the test registration and key fetch")
    p.set_defaults(func=cmd_setup)


class Prompter:
    """Questions on stderr, answers from stdin (hidden for secrets on a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty()

    def ask(self, question: str, default: str | None = None, secret: bool = False) -> str:
        shown = f"{question} [{default}]: " if default else f"{question}: "
        if secret and self.tty:
            answer = getpass.getpass(shown, stream=sys.stderr)
        else:
            sys.stderr.write(shown)
            sys.stderr.flush()
            answer = sys.stdin.readline()
            if not answer:
                raise CliError("setup: input ended before the account was complete; nothing was saved", 2)
            if not self.tty:
                sys.stderr.write("\n")
        answer = answer.strip()
        return answer or (default or "")


def _field(prompter: Prompter, new: NewAccount, name: str, question: str, convert: Callable[[str], object] = str,
           default: str | None = None, secret: bool = False, optional: bool = False) -> None:
    """Ask until ``validate_account`` has nothing against field ``name`` (at most ATTEMPTS times)."""
    for _ in range(ATTEMPTS):
        answer = prompter.ask(question, default, secret)
        setattr(new, name, convert(answer) if answer else (None if optional else ""))
        problem = validate_account(new).get(name)
        if problem is None:
            return
        print(f"  {problem}", file=sys.stderr)
    raise CliError(f"setup: {name}: {problem}; nothing was saved", 2)


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _token(text: str) -> str:
    if text.startswith("@"):  # @FILE: read the token from a file
        try:
            return Path(text[1:]).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"setup: cannot read {text[1:]}: {exc.strerror}", 2) from None
    return text


def cmd_setup(args: argparse.Namespace) -> int:
    target = (args.config or DEFAULT_CONFIG).expanduser()
    p = Prompter()
    print(f"Setting up an account in {target}. Secrets go to 0600 files beside it.", file=sys.stderr)
    new = NewAccount(name="", uri="", registrar="", password="", keystore_passphrase="")
    _field(p, new, "uri", "Your SIP URI (e.g. sip:alice@example.org)")
    _field(p, new, "name", "Short name for this account", default=new.uri.split(":", 1)[-1].split("@", 1)[0])
    _field(p, new, "profile", "Call profile", default="securechorus")
    _field(p, new, "registrar", "Registrar/proxy SIP URI (e.g. sip:sip.example.org:5061;transport=tls)")
    _field(p, new, "ca_file", "CA file for the registrar's TLS certificate (empty: system trust)", _path,
           optional=True)
    if "tls_cert_file" in validate_account(new):
        _field(p, new, "tls_cert_file", "This phone's TLS certificate file (PEM, for incoming calls)", _path,
               optional=True)
        _field(p, new, "tls_key_file", "Its private key file (PEM)", _path, optional=True)
    _field(p, new, "password", "SIP password", secret=True)
    for _ in range(ATTEMPTS):
        url = p.ask("KMS URL (https://host:port; empty to import KMS XML files instead)")
        if url:
            new.kms_url = url
            if "kms_url" not in validate_account(new):
                break
            print(f"  {validate_account(new)['kms_url']}", file=sys.stderr)
            continue
        files = p.ask("KMS XML files to import (KmsInit and KmsKeyProv, separated by spaces)")
        new.kms_url, new.kms_xml_files = None, [_path(f) for f in files.split()]
        if not {"kms_url", "kms_xml_files"} & set(validate_account(new)):
            break
        print(f"  {validate_account(new).get('kms_xml_files') or validate_account(new)['kms_url']}",
              file=sys.stderr)
    else:
        raise CliError("setup: no usable KMS URL or KMS XML files; nothing was saved", 2)
    if new.kms_url:
        _field(p, new, "kms_token", "KMS token (or @FILE to read it from a file)", _token, secret=True)
        _field(p, new, "kms_ca_file", "CA file for the KMS's certificate (empty: system trust)", _path, optional=True)
    else:
        _field(p, new, "trk_file", "Transport key file for the KmsKeyProv (empty: none)", _path, optional=True)
    for _ in range(ATTEMPTS):
        _field(p, new, "keystore_passphrase", "Keystore passphrase (protects your keys on this machine)",
               secret=True)
        if not p.tty or p.ask("Again, to confirm", secret=True) == new.keystore_passphrase:
            break
        print("  the two passphrases differ", file=sys.stderr)
    else:
        raise CliError("setup: the passphrases did not match; nothing was saved", 2)
    if not args.no_check:
        print("Testing: fetching keys and registering …", file=sys.stderr)
        try:
            warning = asyncio.run(check_account(new, target))
        except AccountCheckError as exc:
            raise CliError(f"setup: {exc}; nothing was saved (fix it and run softphone setup again)", 1) from None
        if warning:
            print(f"softphone: warning: {warning}", file=sys.stderr)
        print(f"registered {new.uri} and holds its MIKEY-SAKKE keys", file=sys.stderr)
    try:
        path = write_accounts_file(target, new)
    except ConfigError as exc:
        raise CliError(f"setup: {exc}", 2) from None
    except OSError as exc:
        raise CliError(f"setup: cannot write {target}: {exc.strerror}", 2) from None
    print(f"saved {path} (account {new.name}); try: softphone register --config {path}")
    return 0
