"""``softphone keys fetch|trust|import|list``: the phone's MIKEY-SAKKE keys (TS 33.180 KMS interface).

``fetch`` asks the account's KMS (HTTPS, bearer token) for the current and next period; the first
fetch pins the KMS's TLS key and community keys, and a later KMS presenting others is refused.
``trust`` is the user accepting such a change: it fetches anyway and pins what the KMS presents now.
``import`` takes KMS XML files from anywhere (KmsInit, KmsKeyProv, a KMS certificate, other
vendors' samples; a certificate replaces the community keys trusted for its KMS URI); ``list``
shows what the keystore holds (never the keys). Every key set is validated before it is stored.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kmsinterface.xml import KmsXmlError, document_kind, parse_key_prov, parse_kms_certificate
from softphone.cli import CliError, configured_account, user_errors
from softphone.config import Account
from softphone.keys.keystore import Keystore, KeystoreError
from softphone.keys.kms_client import KmsClient, read_transport_key, refresh

PASSPHRASE_ENV = "SOFTPHONE_KEYSTORE_PASSPHRASE"


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml)")
    common.add_argument("--account", help="account name or URI")
    common.add_argument("--keystore", type=Path, help="keystore file (default: the account's)")
    common.add_argument("--passphrase-file", type=Path,
                        help=f"keystore passphrase file, 0600 (default: the account's, or ${PASSPHRASE_ENV})")
    common.add_argument("--trk-file", type=Path, help="transport key file 'KEY_ID HEX' from the KMS operator")

    keys = subparsers.add_parser("keys", help="MIKEY-SAKKE keys: fetch from the KMS, import, list")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    fetch_args = argparse.ArgumentParser(add_help=False, parents=[common])
    fetch_args.add_argument("--kms", help="KMS base URL https://HOST:PORT (default: the account's kms_url)")
    fetch_args.add_argument("--token-file", type=Path, help="bearer token file, 0600 (default: the account's)")
    fetch_args.add_argument("--ca", type=Path, help="CA file for the KMS TLS certificate (default: the account's)")
    fetch_args.add_argument("--user", help="identity to fetch keys for (default: the account's uri)")
    p = sub.add_parser("fetch", parents=[fetch_args], help="fetch the current and next key periods from the KMS")
    p.add_argument("--force", action="store_true", help="fetch even if the next period is already held")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("trust", parents=[fetch_args],
                       help="accept a KMS whose TLS key or community keys changed (pin them), then fetch")
    p.set_defaults(func=cmd_trust)
    p = sub.add_parser("import", parents=[common], help="import KMS XML files (KmsInit, KmsKeyProv, certificate)")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("list", parents=[common], help="list KMS certificates and key sets held")
    p.set_defaults(func=cmd_list)


def _account(args: argparse.Namespace, needed: bool) -> Account | None:
    if not needed and args.config is None and args.account is None:
        return None
    return configured_account(args.config, args.account, code=2)


def _read_secret_file(path: Path, what: str) -> str:
    try:
        if path.stat().st_mode & 0o077:
            raise CliError(f"{what} file {path} must not be readable by others (chmod 600)", 2)
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"cannot read {what} file {path}: {exc.strerror}", 2) from None
    if not value:
        raise CliError(f"{what} file {path} is empty", 2)
    return value


def _keystore(args: argparse.Namespace, account: Account | None, create: bool) -> Keystore:
    path = args.keystore or (account.keystore if account else None)
    if path is None:
        raise CliError("no keystore: give --keystore or configure the account's keystore", 2)
    passphrase: str | None
    if args.passphrase_file:
        passphrase = _read_secret_file(args.passphrase_file, "keystore passphrase")
    else:
        with user_errors(2):
            passphrase = (account.keystore_passphrase() if account else None) or os.environ.get(PASSPHRASE_ENV)
    if not passphrase:
        raise CliError(f"no keystore passphrase: give --passphrase-file, configure the account or set {PASSPHRASE_ENV}",
                       2)
    with user_errors(2):  # a missing keystore or a wrong passphrase is configuration, as in `softphone call`
        if create:
            return Keystore.open_or_create(path, passphrase.encode())
        return Keystore.open(path, passphrase.encode())


def cmd_fetch(args: argparse.Namespace, trust: bool = False) -> int:
    account = _account(args, needed=not (args.kms and args.token_file and args.keystore and args.user))
    url = args.kms or (account.kms_url if account else None)
    if not url:
        raise CliError("no KMS URL: give --kms or set kms_url in the account", 2)
    token: str | None
    if args.token_file:
        token = _read_secret_file(args.token_file, "KMS token")
    else:
        with user_errors(2):
            token = account.kms_token() if account else None
    if not token:
        raise CliError("no KMS token: give --token-file or set kms_token_file in the account", 2)
    user: str | None = args.user or (account.uri if account else None)
    if user is None:  # an account is required when --user is not given
        raise CliError("no identity: give --user or configure the account", 2)
    ca = args.ca or (account.kms_ca_file or account.ca_file if account else None)
    store = _keystore(args, account, create=True)
    with user_errors():
        trk = read_transport_key(args.trk_file) if args.trk_file else None
        result = refresh(store, KmsClient(url, token, cafile=ca, transport_key=trk), user,
                         force=trust or args.force, trust=trust)
    if result.pinned is not None:
        cert = store.certificate(result.pinned.kms_uri)
        print(f"{'trusted' if trust else 'pinned'} KMS {result.pinned.origin}: community {cert.kms_uri}, TLS key "
              f"sha256 {result.pinned.tls_spki_sha256}, KPAK {cert.pub_auth_key[:8].hex()}…")
    elif trust:
        print(f"KMS at {url} presents the keys already trusted")
    if result.warning:
        if args.force:  # asked for fresh keys and got none: a failure, whatever the cache holds
            raise CliError(f"fetch failed: {result.warning}")
        print(f"softphone: warning: {result.warning}", file=sys.stderr)
    elif result.fetched:
        print(f"fetched and validated key periods {', '.join(map(str, result.fetched))} for {user}")
    else:
        print(f"keys for {user} are current (next period already held)")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    """Accept the KMS as it presents itself now (the user confirmed the change out of band)."""
    return cmd_fetch(args, trust=True)


def cmd_import(args: argparse.Namespace) -> int:
    account = _account(args, needed=args.keystore is None)
    store = _keystore(args, account, create=True)
    with user_errors():
        trk = read_transport_key(args.trk_file) if args.trk_file else None
    docs: list[tuple[Path, str, bytes]] = []
    failures = 0
    for path in args.files:
        try:
            data = path.read_bytes()
            docs.append((path, document_kind(data), data))
        except OSError as exc:
            print(f"softphone: {path}: {exc.strerror}", file=sys.stderr)
            failures += 1
        except KmsXmlError as exc:
            print(f"softphone: {path}: {exc}", file=sys.stderr)
            failures += 1
    order = {"init": 0, "certificate": 0, "keyprov": 1}
    for path, kind, data in sorted(docs, key=lambda d: order.get(d[1], 2)):
        try:
            if kind in ("init", "certificate"):
                cert = parse_kms_certificate(data)
                store.add_certificate(cert)
                print(f"{path}: trusted KMS {cert.kms_uri} (period {cert.user_key_period} s)")
            elif kind == "keyprov":
                done = store.import_key_prov(parse_key_prov(data, trk))
                for s in done:
                    print(f"{path}: stored keys of {s.user_uri} for period {s.key_period_no}")
            else:
                raise KmsXmlError(f"a {kind} document carries no keys or certificate")
        except (KmsXmlError, KeystoreError) as exc:
            print(f"softphone: {path}: refused: {exc}", file=sys.stderr)
            failures += 1
    if failures:
        raise CliError(f"{failures} of {len(args.files)} file(s) refused; nothing from them was stored")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    account = _account(args, needed=args.keystore is None)
    store = _keystore(args, account, create=False)
    for pin in store.kms_pins():
        print(f"pin {pin.origin} kms={pin.kms_uri} tls-spki-sha256={pin.tls_spki_sha256}")
    for cert in store.certificates():
        print(f"kms {cert.kms_uri} role={cert.role or '-'} period={cert.user_key_period}s "
              f"offset={cert.user_key_offset}s kpak={cert.pub_auth_key[:8].hex()}…")
    for s in store.list():
        valid = f" {s.valid_from:%Y-%m-%d}..{s.valid_to:%Y-%m-%d}" if s.valid_from and s.valid_to else ""
        print(f"keys {s.user_uri} period={s.key_period_no} uid={s.user_id.hex()[:16]}… kms={s.kms_uri}{valid}")
    return 0
