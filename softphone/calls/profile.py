"""Call profiles: TOML files that fix transport, keying method, SRTP suites and codecs.

A profile is looked up by name in the directories of ``$SOFTPHONE_PROFILES`` (if set), then among
the profiles shipped with the package (``profiles/*.toml``, read with :mod:`importlib.resources`),
or given as a path to a ``.toml`` file. Every value is checked
when the profile is loaded, so a bad profile fails at start-up with a one-line
:class:`ProfileError`, never in the middle of a call.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

from softphone.calls.errors import CallError

T = TypeVar("T")

SHIPPED = "profiles"  # the package whose data files are the shipped profiles



class Keying(StrEnum):
    """How a profile keys SRTP; the value is the profile's ``keying.method``."""

    MIKEY_SAKKE = "mikey-sakke"   # TS 33.180 / RFC 6509: I_MESSAGE in a=key-mgmt, identities verified by ECCSI
    SDES = "sdes"                 # RFC 4568: keys in a=crypto, protected only by the signalling's TLS

    @property
    def security(self) -> SecurityLevel:
        """The security level a call keyed this way reaches."""
        return SecurityLevel.SECURE if self is Keying.MIKEY_SAKKE else SecurityLevel.SDES_INTEROP


class SecurityLevel(StrEnum):
    """What a call's keys prove. The value is the text events, ``status()`` and the call history carry."""

    SECURE = "MIKEY-SAKKE"        # Secure Chorus: MIKEY-SAKKE keys from a peer whose identity ECCSI verified
    SDES_INTEROP = "SDES"         # encrypted for interop, but the peer's identity is not verified
    NOT_SECURE = "none"           # no verified keys (a failed call, or MIKEY-SAKKE without a verified identity)

    @classmethod
    def of(cls, security: str | None, verified_identity: str | None = None) -> SecurityLevel:
        """The level of a call whose keying was ``security`` (``"MIKEY-SAKKE"``, ``"SDES"`` or None)."""
        if security == cls.SECURE:
            return cls.SECURE if verified_identity else cls.NOT_SECURE
        if security == cls.SDES_INTEROP:
            return cls.SDES_INTEROP
        return cls.NOT_SECURE

    @property
    def label(self) -> str:
        """How every UI names a call at this level: only MIKEY-SAKKE calls are Secure Chorus."""
        return {SecurityLevel.SECURE: "Secure Chorus (MIKEY-SAKKE)",
                SecurityLevel.SDES_INTEROP: "SDES — not Secure Chorus"}.get(self, "not secure")


TRANSPORTS = ("udp", "tcp", "tls")
KEYING_METHODS = tuple(k.value for k in Keying)
SRTP_SUITES = ("AEAD_AES_128_GCM", "AEAD_AES_256_GCM", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
CODECS = ("opus/48000/2", "PCMU/8000", "PCMA/8000")
TLS_VERSIONS = ("1.2", "1.3")


class ProfileError(CallError):
    """A profile is missing or invalid. The message names the file and the offending key."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    secure_chorus: bool
    transport: str
    verify_server_certificate: bool
    tls_min_version: str
    keying: Keying
    keying_mandatory: bool
    key_mgmt_level: str
    max_clock_skew_s: int
    replay_window_s: int
    srtp_suites: tuple[str, ...]
    codecs: tuple[str, ...]
    telephone_event: bool
    ptime_ms: int
    aec: bool | None = None  # echo cancellation; None: on for sound devices, off for WAV files
    ns: bool | None = None  # noise suppression (and the high-pass filter); None as above
    agc: bool | None = None  # automatic gain control; None as above
    path: Traversable | None = None  # where it was read from (a file, or a shipped resource)

    @property
    def security_label(self) -> str:
        """How the UI names calls made with this profile."""
        if self.keying is Keying.MIKEY_SAKKE and self.secure_chorus:
            return "Secure Chorus (MIKEY-SAKKE)"
        return f"{self.keying.upper()} — not Secure Chorus"


def _search_dirs() -> list[Traversable]:
    dirs: list[Traversable] = []
    extra = os.environ.get("SOFTPHONE_PROFILES")
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    dirs.append(resources.files(SHIPPED))
    return dirs


def available_profiles() -> list[str]:
    names: set[str] = set()
    for d in _search_dirs():
        if d.is_dir():
            names.update(p.name.removesuffix(".toml") for p in d.iterdir() if p.name.endswith(".toml"))
    return sorted(names)


def find_profile(name_or_path: str) -> Traversable:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        if candidate.is_file():
            return candidate
        raise ProfileError(f"profile file {name_or_path} not found")
    for d in _search_dirs():
        path = d / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = ", ".join(available_profiles()) or "none"
    raise ProfileError(f"unknown profile {name_or_path!r} (available: {known})")


def load_profile(name_or_path: str = "securechorus") -> Profile:
    path = find_profile(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from None
    return parse_profile(data, path)


def _get(data: dict[str, Any], section: str | None, key: str, kind: type[T], default: T | None, where: str) -> T:
    table = data if section is None else data.get(section, {})
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: [{section}] must be a table")
    value = table.get(key, default)
    if value is None:
        full = key if section is None else f"{section}.{key}"
        raise ProfileError(f"{where}: missing {full}")
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        full = key if section is None else f"{section}.{key}"
        raise ProfileError(f"{where}: {full} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _optional_bool(data: dict[str, Any], section: str, key: str, where: str) -> bool | None:
    table = data.get(section, {})
    if not isinstance(table, dict) or key not in table:
        return None
    return _get(data, section, key, bool, None, where)


def _choice(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise ProfileError(f"{where}: {key} = {value!r} is not one of {', '.join(allowed)}")
    return value


def _list(value: list[Any], allowed: tuple[str, ...], key: str, where: str) -> tuple[str, ...]:
    if not value:
        raise ProfileError(f"{where}: {key} must not be empty")
    for item in value:
        if not isinstance(item, str):
            raise ProfileError(f"{where}: {key} must be a list of strings")
        _choice(item, allowed, key, where)
    if len(set(value)) != len(value):
        raise ProfileError(f"{where}: {key} lists a value twice")
    return tuple(value)


def parse_profile(data: dict[str, Any], path: Traversable | None = None) -> Profile:
    where = f"profile {path}" if path else "profile"
    name = _get(data, None, "name", str, path.name.removesuffix(".toml") if path else None, where)
    keying = Keying(_choice(_get(data, "keying", "method", str, None, where), KEYING_METHODS, "keying.method", where))
    secure_chorus = _get(data, None, "secure_chorus", bool, False, where)
    if secure_chorus and keying is not Keying.MIKEY_SAKKE:
        raise ProfileError(f"{where}: secure_chorus = true requires keying.method = 'mikey-sakke'")
    profile = Profile(
        name=name,
        description=_get(data, None, "description", str, "", where),
        secure_chorus=secure_chorus,
        transport=_choice(_get(data, "sip", "transport", str, "tls", where), TRANSPORTS, "sip.transport", where),
        verify_server_certificate=_get(data, "sip", "verify_server_certificate", bool, True, where),
        tls_min_version=_choice(
            _get(data, "sip", "tls_min_version", str, "1.2", where), TLS_VERSIONS, "sip.tls_min_version", where
        ),
        keying=keying,
        keying_mandatory=_get(data, "keying", "mandatory", bool, True, where),
        key_mgmt_level=_choice(
            _get(data, "keying", "key_mgmt_level", str, "media", where),
            ("media", "session"),
            "keying.key_mgmt_level",
            where,
        ),
        max_clock_skew_s=_get(data, "keying", "max_clock_skew_s", int, 300, where),
        replay_window_s=_get(data, "keying", "replay_window_s", int, 600, where),
        srtp_suites=_list(_get(data, "srtp", "suites", list, None, where), SRTP_SUITES, "srtp.suites", where),
        codecs=_list(_get(data, "media", "codecs", list, list(CODECS), where), CODECS, "media.codecs", where),
        telephone_event=_get(data, "media", "telephone_event", bool, True, where),
        ptime_ms=_get(data, "media", "ptime_ms", int, 20, where),
        aec=_optional_bool(data, "media", "aec", where),
        ns=_optional_bool(data, "media", "ns", where),
        agc=_optional_bool(data, "media", "agc", where),
        path=path,
    )
    if profile.ptime_ms not in (10, 20, 40, 60):
        raise ProfileError(f"{where}: media.ptime_ms must be 10, 20, 40 or 60")
    if profile.max_clock_skew_s <= 0 or profile.replay_window_s < profile.max_clock_skew_s:
        raise ProfileError(f"{where}: keying.replay_window_s must be >= keying.max_clock_skew_s > 0")
    if keying is Keying.MIKEY_SAKKE and profile.srtp_suites != ("AEAD_AES_128_GCM",):
        raise ProfileError(f"{where}: MIKEY-SAKKE keys AEAD_AES_128_GCM SRTP only (16-octet key, 12-octet salt)")
    return profile
