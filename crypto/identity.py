"""Identifiers for MIKEY-SAKKE: the TS 33.180 UID, RFC 6509 tel-URI ids and key periods.

* :func:`mikey_sakke_uid` — 3GPP TS 33.180 Annex F.2.1 ("user identifier format 2"):
  ``UID = SHA-256(0x00 ‖ P0 ‖ L0 ‖ … ‖ P5 ‖ L5)`` with ``P0 = "MIKEY-SAKKE-UID"``, ``P1`` the MC
  service user URI, ``P2`` the KMS URI, ``P3`` UserKeyPeriod, ``P4`` UserKeyOffset, ``P5`` the key
  period number (integers as minimal big-endian octets, at least one octet), each ``Li`` two octets.
* :func:`tel_uri_identifier` — RFC 6509 §3.2 identifier ``"YYYY-MM" ‖ 0x00 ‖ tel-URI ‖ 0x00``.
* :func:`key_period_no` — TS 33.180 §F.2.1 / Annex D: ``floor((T − offset) / period)`` for an NTP
  time ``T`` in seconds.
"""

from __future__ import annotations

import re
import time

from crypto.errors import CryptoError
from crypto.hashing import sha256

NTP_UNIX_OFFSET = 2208988800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch)."""

_UID_PREFIX = b"MIKEY-SAKKE-UID"
_TEL_URI = re.compile(r"tel:\+[0-9]{1,15}")


class InvalidIdentifier(CryptoError, ValueError):
    """An identifier input (URI, key period, period number, date) is out of range or malformed."""


def _minimal_octets(value: int, what: str) -> bytes:
    """Minimal big-endian encoding of a non-negative integer, one octet for zero (TS 33.180 F.2.1)."""
    if value < 0:
        raise InvalidIdentifier(f"{what} must not be negative")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _lv(part: bytes, what: str) -> bytes:
    if len(part) > 0xFFFF:
        raise InvalidIdentifier(f"{what} is longer than 65535 octets")
    return part + len(part).to_bytes(2, "big")


def mikey_sakke_uid(uri: str, kms_uri: str, key_period: int, key_offset: int, period_no: int) -> bytes:
    """The 32-octet MIKEY-SAKKE UID of ``uri`` for one key period (TS 33.180 Annex F.2.1).

    ``uri`` and ``kms_uri`` are used exactly as provisioned (UTF-8, no normalisation).
    """
    if not uri:
        raise InvalidIdentifier("user URI is empty")
    if not kms_uri:
        raise InvalidIdentifier("KMS URI is empty")
    if key_period <= 0:
        raise InvalidIdentifier("UserKeyPeriod must be positive")
    s = b"\x00" + b"".join(
        (
            _lv(_UID_PREFIX, "prefix"),
            _lv(uri.encode("utf-8"), "user URI"),
            _lv(kms_uri.encode("utf-8"), "KMS URI"),
            _lv(_minimal_octets(key_period, "UserKeyPeriod"), "UserKeyPeriod"),
            _lv(_minimal_octets(key_offset, "UserKeyOffset"), "UserKeyOffset"),
            _lv(_minimal_octets(period_no, "key period number"), "key period number"),
        )
    )
    return sha256(s)


def key_period_no(ntp_seconds: int, key_period: int, key_offset: int) -> int:
    """Key period number containing NTP time ``ntp_seconds``: ``floor((T − offset) / period)``."""
    if key_period <= 0:
        raise InvalidIdentifier("UserKeyPeriod must be positive")
    if key_offset < 0:
        raise InvalidIdentifier("UserKeyOffset must not be negative")
    if ntp_seconds < key_offset:
        raise InvalidIdentifier("time lies before the first key period")
    return (ntp_seconds - key_offset) // key_period


def ntp_seconds(unix_time: float | None = None) -> int:
    """NTP-era seconds (since 1900-01-01 UTC) of ``unix_time`` (default: now)."""
    if unix_time is None:
        unix_time = time.time()
    return int(unix_time) + NTP_UNIX_OFFSET


def tel_uri_identifier(uri: str, year: int, month: int) -> bytes:
    """RFC 6509 §3.2 identifier for a tel URI and a month: ``b"YYYY-MM\\0tel:+E164\\0"``."""
    if not _TEL_URI.fullmatch(uri):
        raise InvalidIdentifier("RFC 6509 identifiers need a global tel URI (tel:+ and up to 15 digits)")
    if not 1 <= month <= 12:
        raise InvalidIdentifier("month must be 1..12")
    if not 0 <= year <= 9999:
        raise InvalidIdentifier("year must be 0..9999")
    return f"{year:04d}-{month:02d}".encode("ascii") + b"\x00" + uri.encode("ascii") + b"\x00"
