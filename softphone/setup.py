"""First-run setup shared by ``softphone setup`` (terminal) and the GUI's first-run wizard.

    new = NewAccount(name="alice", uri="sip:alice@example.org", registrar="sip:sip.example.org;transport=tls",
                     password="…", kms_url="https://kms.example.org:8443", kms_token="…",
                     keystore_passphrase="…", …)
    problems = validate_account(new)          # {field: one-line reason}; empty when usable
    warning = await check_account(new, path)  # test REGISTER + key fetch (or XML import); AccountCheckError
    write_accounts_file(path, new)            # the accounts TOML (0600) and its secrets files (0600) beside it

The accounts file never holds a secret: the password, KMS token and keystore passphrase go to
``NAME.pw``, ``NAME.token`` and ``NAME.pass`` beside it, each 0600 (see :mod:`softphone.config`).
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from softphone.config import DEFAULT_CONFIG, Account, ConfigError, _parse_account, load_accounts
from softphone.errors import SoftphoneError

__all__ = ["AccountCheckError", "NewAccount", "check_account", "passphrase_problem", "validate_account",
           "write_accounts_file"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_URI = re.compile(r"^sips?:[^@\s:;<>\"]+@[^@\s;<>\"]+$")
MIN_PASSPHRASE = 12
MIN_DISTINCT = 6


class AccountCheckError(SoftphoneError):
    """The test registration or key fetch failed (one line)."""


@dataclass
class NewAccount:
    """What the user typed; secrets in clear, only ever written to 0600 files."""

    name: str
    uri: str
    registrar: str
    password: str
    keystore_passphrase: str
    profile: str = "securechorus"
    display_name: str | None = None
    kms_url: str | None = None
    kms_token: str | None = field(default=None, repr=False)
    kms_ca_file: Path | None = None
    kms_xml_files: Sequence[Path] = ()      # instead of (or besides) kms_url: KmsInit/KmsKeyProv to import
    trk_file: Path | None = None            # transport key for the imported KeyProv
    ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    keystore: Path | None = None            # default: DIR/NAME.keystore beside the accounts file
    local_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for name in ("password", "keystore_passphrase"):
            setattr(self, name, getattr(self, name) or "")


def passphrase_problem(passphrase: str) -> str | None:
    """Why ``passphrase`` is too weak for a keystore (None: strong enough)."""
    if len(passphrase) < MIN_PASSPHRASE:
        return f"at least {MIN_PASSPHRASE} characters, please (a few words make a good passphrase)"
    if len(set(passphrase)) < MIN_DISTINCT:
        return f"use at least {MIN_DISTINCT} different characters"
    if passphrase.isdigit():
        return "not only digits"
    return None


def _file_problem(path: Path | None) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    return None if p.is_file() and os.access(p, os.R_OK) else f"{p}: no such readable file"


def validate_account(new: NewAccount) -> dict[str, str]:
    """Problems with ``new``, by field name (``uri``, ``registrar``, …); empty when it can be saved."""
    problems: dict[str, str] = {}
    if not _NAME.match(new.name or ""):
        problems["name"] = "a short name: letters, digits, '.', '_' or '-'"
    if not _URI.match(new.uri or ""):
        problems["uri"] = "a SIP URI such as sip:alice@example.org"
    registrar = (new.registrar or "").strip()
    if not re.match(r"^sips?:[^\s@]+$|^sips?:[^\s]+@[^\s]+$", registrar):
        problems["registrar"] = "a SIP URI such as sip:sip.example.org:5061;transport=tls"
    else:
        from softphone.calls.profile import ProfileError, load_profile  # profiles are package data

        try:
            profile = load_profile(new.profile)
        except ProfileError as exc:
            problems["profile"] = str(exc)
        else:
            secure = registrar.startswith("sips:") or re.search(r";transport=tls\b", registrar, re.I)
            via = "tls" if secure else (m.group(1).lower() if (m := re.search(r";transport=(\w+)", registrar, re.I))
                                        else "udp")
            if via != profile.transport:
                problems["registrar"] = (f"profile {profile.name} uses {profile.transport.upper()}: "
                                         "use sips:… or add ;transport=tls" if profile.transport == "tls" else
                                         f"profile {profile.name} uses {profile.transport.upper()}")
            if profile.transport == "tls" and new.tls_cert_file is None:
                problems["tls_cert_file"] = "a certificate (PEM) for receiving calls over TLS"
            elif profile.transport == "tls" and new.tls_key_file is None:
                problems["tls_key_file"] = "the private key (PEM) of tls_cert_file"
    if not new.password:
        problems["password"] = "the SIP password your provider gave you"
    weak = passphrase_problem(new.keystore_passphrase or "")
    if weak:
        problems["keystore_passphrase"] = weak
    if not new.kms_url and not new.kms_xml_files:
        problems["kms_url"] = "a KMS URL (https://host:port) with a token, or KMS XML files to import"
    if new.kms_url:
        if not re.match(r"^https://[^\s/]+(:\d+)?/?$", new.kms_url):
            problems["kms_url"] = "https://host:port"
        if not new.kms_token:
            problems["kms_token"] = "the bearer token your KMS administrator gave you"
    for name in ("kms_ca_file", "ca_file", "tls_cert_file", "tls_key_file", "trk_file"):
        problem = _file_problem(getattr(new, name))
        if problem:
            problems[name] = problem
    for path in new.kms_xml_files:
        problem = _file_problem(path)
        if problem:
            problems["kms_xml_files"] = problem
    return problems


def _private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def keystore_path(path: Path, new: NewAccount) -> Path:
    return Path(new.keystore).expanduser() if new.keystore else Path(path).expanduser().parent / f"{new.name}.keystore"


def accounts_text(path: Path, new: NewAccount) -> str:
    """The ``[[account]]`` table for ``new`` (secrets named by file, beside ``path``)."""
    lines = [f"name = {_toml(new.name)}", f"uri = {_toml(new.uri)}"]
    if new.display_name:
        lines.append(f"display_name = {_toml(new.display_name)}")
    lines += [f"registrar = {_toml(new.registrar.strip())}", f'password_file = "{new.name}.pw"',
              f"profile = {_toml(new.profile)}"]
    for key in ("ca_file", "tls_cert_file", "tls_key_file"):
        value = getattr(new, key)
        if value is not None:
            lines.append(f"{key} = {_toml(str(Path(value).expanduser().resolve()))}")
    lines += [f"keystore = {_toml(str(keystore_path(path, new)))}", f'keystore_passphrase_file = "{new.name}.pass"']
    if new.kms_url:
        lines += [f"kms_url = {_toml(new.kms_url.rstrip('/'))}", f'kms_token_file = "{new.name}.token"']
        if new.kms_ca_file is not None:
            lines.append(f"kms_ca_file = {_toml(str(Path(new.kms_ca_file).expanduser().resolve()))}")
    if new.local_host != "127.0.0.1":
        lines.append(f"local_host = {_toml(new.local_host)}")
    return "[[account]]\n" + "\n".join(lines) + "\n"


def write_accounts_file(path: Path | str | None, new: NewAccount) -> Path:
    """Save ``new`` as the accounts file ``path`` (default location if None), 0600, with its secrets
    files beside it (0600). An existing file keeps its other accounts; one of the same name is replaced.
    Returns the path. :class:`ConfigError` if the result would not load back."""
    target = Path(path).expanduser() if path else DEFAULT_CONFIG
    problems = validate_account(new)
    if problems:
        field_name, reason = next(iter(problems.items()))
        raise ConfigError(f"{field_name}: {reason}")
    kept = ""
    if target.exists():
        try:
            old = load_accounts(target)
        except ConfigError:
            raise ConfigError(f"{target} exists and is not a valid accounts file; move it away first") from None
        if any(a.name != new.name for a in old):
            kept = _without_account(target.read_text(encoding="utf-8"), new.name)
    secrets = {"pw": new.password, "pass": new.keystore_passphrase}
    if new.kms_url and new.kms_token:
        secrets["token"] = new.kms_token
    for suffix, value in secrets.items():
        _private(target.parent / f"{new.name}.{suffix}", value + "\n")
    _private(target, (kept.rstrip() + "\n\n" if kept.strip() else "") + accounts_text(target, new))
    load_accounts(target)  # what we wrote must read back
    return target


def _without_account(text: str, name: str) -> str:
    """``text`` minus the ``[[account]]`` table whose ``name`` is ``name``."""
    parts = re.split(r"(?m)^(?=\[\[account\]\])", text)
    keep = [p for p in parts if not re.search(rf'(?m)^name\s*=\s*"{re.escape(name)}"\s*$', p)]
    return "".join(keep)


def as_account(path: Path, new: NewAccount) -> Account:
    """The :class:`Account` ``new`` will be once saved at ``path`` (for the test registration)."""
    raw = tomllib.loads(accounts_text(path, new))["account"][0]
    raw.pop("password_file", None)
    raw.pop("keystore_passphrase_file", None)
    raw.pop("kms_token_file", None)
    return _parse_account(raw, 0, Path(path).expanduser().parent)


async def check_account(new: NewAccount, path: Path | str | None = None, *, timeout: float = 10.0) -> str | None:
    """Test the account before it is saved: import the KMS XML files and/or fetch keys from the KMS
    into the keystore (created with the passphrase), then REGISTER and unregister. Returns a warning
    (e.g. KMS unreachable but keys imported) or None; :class:`AccountCheckError` (one line) on failure."""
    import asyncio
    import dataclasses

    from kmsinterface.xml import KmsXmlError, document_kind, parse_key_prov, parse_kms_certificate
    from softphone.calls.errors import CallError
    from softphone.calls.phone import Phone, check_transport, settings_from_account
    from softphone.calls.profile import ProfileError, load_profile
    from softphone.keys.errors import KeysError
    from softphone.keys.keystore import Keystore
    from softphone.keys.kms_client import KmsClient, read_transport_key, refresh
    from softphone.sip.errors import SipError

    target = Path(path).expanduser() if path else DEFAULT_CONFIG
    account = as_account(target, new)
    warning = None
    try:
        check_transport(account, load_profile(new.profile))
        store = Keystore.open_or_create(keystore_path(target, new), new.keystore_passphrase.encode())
        trk = read_transport_key(new.trk_file) if new.trk_file else None
        docs = [Path(p).expanduser().read_bytes() for p in new.kms_xml_files]
        for data in sorted(docs, key=lambda d: document_kind(d) == "keyprov"):
            if document_kind(data) == "keyprov":
                store.import_key_prov(parse_key_prov(data, trk))
            else:
                store.add_certificate(parse_kms_certificate(data))
        if new.kms_url:
            client = KmsClient(new.kms_url, new.kms_token or "", cafile=account.kms_ca_file)
            result = await asyncio.to_thread(refresh, store, client, new.uri)
            warning = result.warning
        store.current(new.uri)
    except (KeysError, KmsXmlError, ProfileError, CallError, ConfigError) as exc:
        raise AccountCheckError(f"keys: {exc}") from None
    except OSError as exc:
        raise AccountCheckError(f"keys: {exc.strerror or exc}") from None
    try:
        settings = settings_from_account(account, passphrase=new.keystore_passphrase, fetch_keys=False)
        settings.ua = dataclasses.replace(settings.ua, password=new.password)
        async with Phone(settings) as phone:
            await phone.register(timeout=timeout)
    except (CallError, SipError) as exc:
        raise AccountCheckError(f"registration: {exc}") from None
    except OSError as exc:
        raise AccountCheckError(f"registration: {exc.strerror or exc}") from None
    return warning
