"""The GMS's own account: the same accounts-file format as a phone's (``softphone.config``), since the GMS
is a SIP user and a KMS client like a user. Its group state lives beside its keystore
(``KEYSTORE.groups``, sealed with the keystore passphrase)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from gms.errors import GmsError
from softphone.config import Account, ConfigError, load_accounts, select_account
from softphone.keys.errors import KeysError
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient, refresh
from softphone.sip.ua import UAConfig


@dataclass
class GmsConfig:
    account: Account
    keystore: Keystore
    passphrase: bytes = field(repr=False)
    state_path: Path

    @property
    def uri(self) -> str:
        return self.account.uri

    def ua_config(self) -> UAConfig:
        a = self.account
        try:
            tls = None
            if a.registrar and "transport=tls" in a.registrar:
                tls = ssl.create_default_context(cafile=str(a.ca_file) if a.ca_file else None)
            return UAConfig(aor=a.uri, username=a.username, password=a.password(), proxy=a.registrar,
                            transport="tls" if tls else "udp", host=a.local_host, tls_client=tls,
                            nameserver=a.nameserver, expires=300)
        except (ConfigError, OSError, ssl.SSLError) as exc:
            raise GmsError(f"GMS account {a.name}: {exc}") from None


def load_gms(path: str | Path, name: str | None = None, *, fetch_keys: bool = True) -> GmsConfig:
    """Open the GMS account ``name`` of accounts file ``path``: its keystore (keys fetched from its KMS when
    ``kms_url`` is set and the current period is not held)."""
    try:
        account = select_account(load_accounts(path), name)
        if account.keystore is None:
            raise GmsError(f"GMS account {account.name}: needs a keystore (its ECCSI/SAKKE keys from the KMS)")
        passphrase = account.keystore_passphrase()
        if not passphrase:
            raise GmsError(f"GMS account {account.name}: no keystore passphrase configured")
        keystore = Keystore.open_or_create(account.keystore, passphrase.encode())
        if fetch_keys and account.kms_url:
            refresh(keystore, KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file),
                    account.uri)
    except (ConfigError, KeysError) as exc:
        raise GmsError(str(exc)) from None
    state = account.keystore.with_name(account.keystore.name + ".groups")
    return GmsConfig(account, keystore, passphrase.encode(), state)
