"""Key derivation for MIKEY-SAKKE.

* :func:`mikey_prf` — the MIKEY PRF of RFC 3830 §4.1.2 built on HMAC-SHA-256 (RFC 6043 §6.1,
  PRF-HMAC-SHA-256, required by TS 33.180): ``P(s, label, m)`` chained HMACs, the in-key split in
  32-octet chunks whose outputs are XORed.
* :func:`srtp_master` — RFC 3830 §4.1.3 labels (TEK/SALT constants, CS ID, CSB ID, RAND) giving the
  SRTP master key (16) and master salt (12) for one crypto session.
* :func:`kdf_33220` — the generic KDF of 3GPP TS 33.220 Annex B.2 (one parameter) used by
  TS 33.180 for GUK-ID (FC 0x50, §7.3.1) and DPCK (FC 0x53, §8.5.4).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from crypto.errors import CryptoError

TEK_CONST = 0x2AD01C64
SALT_CONST = 0x39A2C14B
ENCR_CONST = 0x15798CEF
AUTH_CONST = 0x1B5C7973

SRTP_MASTER_KEY_LEN = 16
SRTP_MASTER_SALT_LEN = 12

FC_GUK_ID = 0x50
FC_DPCK = 0x53

_HASH_LEN = 32


class KdfError(CryptoError, ValueError):
    """A derivation input is out of range (empty key, bad CS ID/CSB ID, wrong length)."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _p(s: bytes, label: bytes, m: int) -> bytes:
    """RFC 3830 §4.1.2 ``P(s, label, m)`` with HMAC-SHA-256."""
    out = []
    a = label
    for _ in range(m):
        a = _hmac(s, a)
        out.append(_hmac(s, a + label))
    return b"".join(out)


def mikey_prf(inkey: bytes, label: bytes, outlen: int) -> bytes:
    """RFC 3830 §4.1.2 PRF(inkey, label) truncated to ``outlen`` octets (HMAC-SHA-256 variant)."""
    if not inkey:
        raise KdfError("MIKEY PRF needs a non-empty in-key")
    if outlen <= 0:
        raise KdfError("MIKEY PRF output length must be positive")
    m = -(-outlen // _HASH_LEN)
    result = bytearray(m * _HASH_LEN)
    for start in range(0, len(inkey), _HASH_LEN):
        block = _p(inkey[start : start + _HASH_LEN], label, m)
        for i, b in enumerate(block):
            result[i] ^= b
    return bytes(result[:outlen])


def mikey_label(const: int, cs_id: int, csb_id: int, rand: bytes) -> bytes:
    """RFC 3830 §4.1.3 label ``const(4) ‖ cs_id(1) ‖ csb_id(4) ‖ RAND``."""
    if not 0 <= cs_id <= 0xFF:
        raise KdfError("CS ID must fit one octet")
    if not 0 <= csb_id <= 0xFFFFFFFF:
        raise KdfError("CSB ID must fit four octets")
    return const.to_bytes(4, "big") + bytes([cs_id]) + csb_id.to_bytes(4, "big") + bytes(rand)


@dataclass(frozen=True)
class SrtpMaster:
    """SRTP master key and salt for one crypto session; ``mki`` is the key ID (TS 33.180 §7.4)."""

    cs_id: int
    master_key: bytes
    master_salt: bytes
    mki: bytes

    def __repr__(self) -> str:
        return f"SrtpMaster(cs_id={self.cs_id}, mki={self.mki.hex()}, master_key=<redacted>, master_salt=<redacted>)"


def srtp_master(tgk: bytes, cs_id: int, csb_id: int, rand: bytes, mki: bytes = b"") -> SrtpMaster:
    """SRTP master key (16) and salt (12) for ``cs_id`` from the TGK (the SAKKE-carried key)."""
    key = mikey_prf(tgk, mikey_label(TEK_CONST, cs_id, csb_id, rand), SRTP_MASTER_KEY_LEN)
    salt = mikey_prf(tgk, mikey_label(SALT_CONST, cs_id, csb_id, rand), SRTP_MASTER_SALT_LEN)
    return SrtpMaster(cs_id, key, salt, bytes(mki))


def kdf_33220(key: bytes, fc: int, p0: bytes, outlen: int) -> bytes:
    """TS 33.220 B.2: ``HMAC-SHA-256(key, FC ‖ P0 ‖ L0)``, keeping the last ``outlen`` octets."""
    if not key:
        raise KdfError("KDF needs a non-empty key")
    if not 0 <= fc <= 0xFF:
        raise KdfError("FC must fit one octet")
    if len(p0) > 0xFFFF:
        raise KdfError("KDF parameter is longer than 65535 octets")
    if not 0 < outlen <= _HASH_LEN:
        raise KdfError("KDF output length must be 1..32")
    return _hmac(key, bytes([fc]) + p0 + len(p0).to_bytes(2, "big"))[-outlen:]


def _guk_salt(gmk: bytes, receiver_uri: str) -> int:
    salt = bytearray(kdf_33220(gmk, FC_GUK_ID, receiver_uri.encode("utf-8"), 4))
    salt[0] &= 0x0F
    return int.from_bytes(salt, "big")


def guk_id(gmk: bytes, gmk_id: int, receiver_uri: str) -> int:
    """GUK-ID for one receiver (TS 33.180 §7.3.1): the GMK-ID's low 28 bits XOR a per-URI salt."""
    if not 0 <= gmk_id <= 0xFFFFFFFF:
        raise KdfError("GMK-ID must fit four octets")
    return ((gmk_id & 0x0FFFFFFF) ^ _guk_salt(gmk, receiver_uri)) | (gmk_id & 0xF0000000)


def gmk_id_from_guk_id(gmk: bytes, guk: int, receiver_uri: str) -> int:
    """Inverse of :func:`guk_id` for the receiver that knows its own URI."""
    return guk_id(gmk, guk, receiver_uri)


def dpck(dppk: bytes, dppk_id: int) -> bytes:
    """DPCK (TS 33.180 §8.5.4) protecting the GENERAL EXTENSION key parameters: FC 0x53, P0 = DPPK-ID."""
    if not 0 <= dppk_id <= 0xFFFFFFFF:
        raise KdfError("DPPK-ID must fit four octets")
    return kdf_33220(dppk, FC_DPCK, dppk_id.to_bytes(4, "big"), 16)
