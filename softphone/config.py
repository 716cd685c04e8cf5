"""Accounts: the phone's TOML configuration file.

```toml
[[account]]
name = "alice"                                  # short name used on the command line
uri = "sip:alice@example.org"                   # the identity (MC service ID / AoR)
display_name = "Alice"
registrar = "sip:127.0.0.1:5061;transport=tls"  # where to REGISTER; calls go through it too
username = "alice"                              # digest user (default: user part of uri)
password_file = "~/.config/softphone/alice.pw"  # or password_env = "ALICE_SIP_PASSWORD"
profile = "securechorus"                        # a profile name or a path to a .toml file
ca_file = "/etc/ssl/certs/ca-certificates.crt"  # TLS trust for SIP and KMS (default: system)
keystore = "~/.local/share/softphone/alice.keystore"
keystore_passphrase_file = "..."                # or keystore_passphrase_env
kms_url = "https://kms.example.org:8443"
kms_token_file = "..."                          # or kms_token_env
local_host = "127.0.0.1"                        # address to bind SIP and RTP to
# nameserver = "127.0.0.1:5353"                 # RFC 3263 DNS server (default: the system's); leave
#                                               # registrar out and it is found from the uri's domain
rtp_ports = [40000, 40999]
# stun_server = "stun:stun.example.org:3478"    # NAT traversal (ICE, RFC 8445): server-reflexive candidates
# turn_server = "turn:turn.example.org:3478?transport=tcp"  # relay (udp|tcp; turns: = TLS over TCP)
# turn_username = "alice"
# turn_password_file = "..."                    # or turn_password_env
# ice_policy = "all"                            # "relay": only TURN-relayed candidates (restrictive networks)
tls_cert_file = "..."                           # certificate + key the phone presents when it
tls_key_file = "..."                            #   listens for SIP over TLS (calls from the proxy)
revoked_file = "..."                            # identities to refuse (one URI a line, from the operator)
trusted_gms = ["sip:gms@example.org"]           # group management servers whose group keys are accepted
```

Every key, its default and examples: docs/USER-GUIDE.md, "The accounts file". ``softphone setup``
(and the GUI's first-run wizard) write one through :mod:`softphone.setup`.

Passwords and tokens are never written in the file itself: it names a file (0600) or an
environment variable. Every problem is reported as one :class:`ConfigError` line naming the key.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from softphone.errors import SoftphoneError

DEFAULT_CONFIG = Path(os.environ.get("XDG_CONFIG_HOME", "~/.config")).expanduser() / "softphone" / "accounts.toml"


class ConfigError(SoftphoneError):
    """The configuration is missing, unreadable or invalid."""


@dataclass(frozen=True)
class Account:
    name: str
    uri: str
    registrar: str | None
    username: str
    profile: str = "securechorus"
    display_name: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    keystore: Path | None = None
    keystore_passphrase_file: Path | None = None
    keystore_passphrase_env: str | None = None
    kms_url: str | None = None
    kms_token_file: Path | None = None
    kms_token_env: str | None = None
    kms_ca_file: Path | None = None
    local_host: str = "127.0.0.1"
    rtp_ports: tuple[int, int] = (40000, 40999)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    revoked_file: Path | None = None
    audio_processing: str = "auto"  # echo cancellation, noise suppression, AGC: auto (the profile's) | on | off
    nameserver: str | None = None     # "host:port" for RFC 3263 lookups (default: the system resolver)
    trusted_gms: tuple[str, ...] = ()  # GMS URIs whose group-key messages are accepted (none: all refused)
    stun_server: str | None = None    # "stun:host[:port]"; with it or turn_server the phone offers ICE
    turn_server: str | None = None    # "turn:host[:port][?transport=udp|tcp]" or "turns:host[:port]" (TLS)
    turn_username: str | None = None
    turn_password_file: Path | None = None
    turn_password_env: str | None = None
    ice_policy: str = "all"           # all | relay
    extra: dict = field(default_factory=dict, repr=False)

    def password(self) -> str | None:
        return _secret(self.password_file, self.password_env, f"account {self.name}: SIP password")

    def keystore_passphrase(self) -> str | None:
        return _secret(
            self.keystore_passphrase_file, self.keystore_passphrase_env, f"account {self.name}: keystore passphrase"
        )

    def revoked(self) -> frozenset[str]:
        """Identities the operator revoked (``revoked_file``: one URI a line, ``#`` comments)."""
        if self.revoked_file is None:
            return frozenset()
        try:
            text = self.revoked_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"account {self.name}: cannot read revoked_file {self.revoked_file}: "
                              f"{exc.__class__.__name__}") from None
        return frozenset(ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip())

    def turn_password(self) -> str | None:
        return _secret(self.turn_password_file, self.turn_password_env, f"account {self.name}: TURN password")

    @property
    def ice(self) -> bool:
        """True when the account names a STUN or TURN server: calls then offer ICE."""
        return self.stun_server is not None or self.turn_server is not None

    def stun_address(self) -> tuple[str, int] | None:
        return None if self.stun_server is None else parse_ice_server(self.stun_server)[0]

    def turn_address(self) -> tuple[tuple[str, int], str, bool] | None:
        """(host, port), transport ("udp"/"tcp"), TLS? of the TURN server."""
        return None if self.turn_server is None else parse_ice_server(self.turn_server)

    def kms_token(self) -> str | None:
        return _secret(self.kms_token_file, self.kms_token_env, f"account {self.name}: KMS token")


def parse_ice_server(url: str) -> tuple[tuple[str, int], str, bool]:
    """``stun:``/``turn:``/``turns:`` URL (RFC 7064, RFC 7065) → ((host, port), transport, tls)."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns"):
        raise ConfigError(f"ICE server {url!r} must start with stun:, turn: or turns:")
    rest, _, query = rest.partition("?")
    transport = "tcp" if scheme in ("turns", "stuns") else "udp"
    if query:
        key, _, value = query.partition("=")
        if key != "transport" or value not in ("udp", "tcp"):
            raise ConfigError(f"ICE server {url!r}: only ?transport=udp|tcp is understood")
        transport = value
    tls = scheme in ("turns", "stuns")
    if tls and transport != "tcp":
        raise ConfigError(f"ICE server {url!r}: TLS runs over tcp")
    if rest.startswith("["):
        host, _, port_text = rest[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    default = 5349 if tls else 3478
    if not host or (port_text and not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536)):
        raise ConfigError(f"ICE server {url!r}: expected host[:port]")
    return (host, int(port_text) if port_text else default), transport, tls


def _secret(path: Path | None, env: str | None, what: str) -> str | None:
    if path is not None:
        try:
            info = path.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"{what} file {path} must not be readable by others (chmod 600)")
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"{what} file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc.__class__.__name__}") from None
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}: environment variable {env} is not set")
        return value
    return None


_KNOWN = {
    "name", "uri", "registrar", "username", "profile", "display_name", "password_file", "password_env",
    "ca_file", "keystore", "keystore_passphrase_file", "keystore_passphrase_env", "kms_url",
    "kms_token_file", "kms_token_env", "kms_ca_file", "local_host", "rtp_ports", "tls_cert_file", "tls_key_file",
    "revoked_file", "nameserver", "audio_processing", "trusted_gms", "stun_server", "turn_server", "turn_username",
    "turn_password_file", "turn_password_env", "ice_policy",
}  # fmt: skip
_PATHS = {"password_file", "ca_file", "keystore", "keystore_passphrase_file", "kms_token_file", "kms_ca_file",
          "tls_cert_file", "tls_key_file", "revoked_file", "turn_password_file"}


def _parse_account(raw: object, index: int, base: Path) -> Account:
    where = f"account #{index + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key, value in raw.items():
        if key in ("rtp_ports", "trusted_gms"):
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
    for key in ("name", "uri"):
        if not raw.get(key):
            raise ConfigError(f"{where}: missing {key}")
    where = f"account {raw['name']!r}"
    uri = raw["uri"]
    if not (uri.startswith("sip:") or uri.startswith("sips:")) or "@" not in uri:
        raise ConfigError(f"{where}: uri must look like sip:user@domain, got {uri!r}")
    if "password_file" in raw and "password_env" in raw:
        raise ConfigError(f"{where}: give password_file or password_env, not both")
    if raw.get("audio_processing", "auto") not in ("auto", "on", "off"):
        raise ConfigError(f"{where}: audio_processing must be auto, on or off")
    if raw.get("ice_policy", "all") not in ("all", "relay"):
        raise ConfigError(f"{where}: ice_policy must be all or relay")
    if "turn_password_file" in raw and "turn_password_env" in raw:
        raise ConfigError(f"{where}: give turn_password_file or turn_password_env, not both")
    for key, scheme in (("stun_server", ("stun", "stuns")), ("turn_server", ("turn", "turns"))):
        if key in raw:
            if raw[key].partition(":")[0] not in scheme:
                raise ConfigError(f"{where}: {key} must start with {scheme[0]}:")
            try:
                parse_ice_server(raw[key])
            except ConfigError as exc:
                raise ConfigError(f"{where}: {key}: {exc}") from None
    if "turn_server" in raw and not raw.get("turn_username"):
        raise ConfigError(f"{where}: turn_server needs turn_username")
    if raw.get("ice_policy") == "relay" and "turn_server" not in raw:
        raise ConfigError(f"{where}: ice_policy relay needs turn_server")
    ports = raw.get("rtp_ports", [40000, 40999])
    if (
        not isinstance(ports, list)
        or len(ports) != 2
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
        or not 1024 <= ports[0] <= ports[1] <= 65535
    ):
        raise ConfigError(f"{where}: rtp_ports must be [low, high] within 1024..65535")
    gms = raw.get("trusted_gms", [])
    gms = [gms] if isinstance(gms, str) else gms
    if not isinstance(gms, list) or not all(isinstance(g, str) and g.startswith(("sip:", "sips:")) and "@" in g
                                            for g in gms):
        raise ConfigError(f"{where}: trusted_gms must be a list of SIP URIs such as [\"sip:gms@example.org\"]")
    values: dict = {"trusted_gms": tuple(gms)}
    for key, value in raw.items():
        if key == "trusted_gms":
            continue
        if key in _PATHS:
            path = Path(value).expanduser()
            values[key] = path if path.is_absolute() else (base / path)
        elif key != "rtp_ports":
            values[key] = value
    values.setdefault("username", uri.split(":", 1)[1].split("@", 1)[0])
    values.setdefault("registrar", None)
    return Account(rtp_ports=(ports[0], ports[1]), **values)


def load_accounts(path: Path | str | None = None) -> list[Account]:
    path = Path(path).expanduser() if path else DEFAULT_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no account file at {path} (create one with 'softphone setup'; "
                          "the keys are in docs/USER-GUIDE.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    raw_accounts = data.get("account", [])
    if not isinstance(raw_accounts, list) or not raw_accounts:
        raise ConfigError(f"{path} defines no [[account]]")
    accounts = [_parse_account(raw, i, path.parent) for i, raw in enumerate(raw_accounts)]
    names = [a.name for a in accounts]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two accounts share a name")
    return accounts


def select_account(accounts: list[Account], name: str | None) -> Account:
    if name is None:
        if len(accounts) == 1:
            return accounts[0]
        names = ", ".join(a.name for a in accounts)
        raise ConfigError(f"several accounts configured; choose one with --account ({names})")
    for account in accounts:
        if account.name == name or account.uri == name:
            return account
    raise ConfigError(f"no account named {name!r} ({', '.join(a.name for a in accounts)})")
