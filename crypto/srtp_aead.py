"""SRTP with AEAD_AES_128_GCM (RFC 7714) done here, for group media: MKI and a carried ROC (RCCm3).

libsrtp (through pylibsrtp) has no way to preset a stream's rollover counter, so a member who joins a
group call late cannot open packets whose sender's ROC is already ≠ 0. Group media (TS 33.179 §7.5.1,
GROUP-MESSAGING.md §1.4) carries the ROC in every packet, unauthenticated, after the MKI::

    RTP header ‖ GCM ciphertext ‖ GCM tag(16) ‖ MKI ‖ ROC(4)

* :func:`session_keys` — the RFC 3711 §4.3 key derivation (AES-CM PRF, key derivation rate 0) giving the
  SRTP session encryption key (label 0x00) and the 12-octet session salt (label 0x02) from a master
  key/salt pair. (The MIKEY derivation of the master key itself is :mod:`crypto.kdf`.)
* :func:`protect` / :func:`open_packet` — RFC 7714 §8: IV = session salt ⊕ (00 00 ‖ SSRC ‖ ROC ‖ SEQ),
  AAD = the RTP header (fixed part, CSRCs and header extension).

Pure: no I/O, no state beyond the derived keys. Replay protection is the caller's (it knows the
streams). Cross-checked against libsrtp in ``tests/crypto/test_srtp_aead.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import CryptoError

LABEL_RTP_ENCRYPTION = 0x00
LABEL_RTP_SALT = 0x02
TAG_LEN = 16
ROC_LEN = 4
SALT_LEN = 12
KEY_LEN = 16
_RTP_FIXED = 12


class SrtpAeadError(CryptoError, ValueError):
    """A packet that does not parse, or does not authenticate under the key it names."""


def _prf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 §4.3.1/§4.3.3 AES-CM PRF with kdr 0: x = label at octet 7 ⊕ salt (14 octets, a 12-octet
    GCM salt padded with zeros as libsrtp does); keystream of AES-CTR with IV = x ‖ 00 00."""
    salt14 = bytearray(master_salt.ljust(14, b"\0"))
    salt14[7] ^= label
    enc = Cipher(algorithms.AES(master_key), modes.CTR(bytes(salt14) + b"\0\0")).encryptor()
    return enc.update(bytes(length)) + enc.finalize()


@dataclass(frozen=True)
class SessionKeys:
    """Derived RTP session key and salt of one sender (never in repr)."""

    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SessionKeys(<redacted>)"


def session_keys(master_key: bytes, master_salt: bytes) -> SessionKeys:
    """RTP session encryption key (16) and salt (12) for AEAD_AES_128_GCM (RFC 7714 §11)."""
    if len(master_key) != KEY_LEN or len(master_salt) != SALT_LEN:
        raise SrtpAeadError(f"AEAD_AES_128_GCM needs a {KEY_LEN}-octet master key and {SALT_LEN}-octet salt")
    return SessionKeys(_prf(master_key, master_salt, LABEL_RTP_ENCRYPTION, KEY_LEN),
                       _prf(master_key, master_salt, LABEL_RTP_SALT, SALT_LEN))


def header_length(rtp: bytes) -> int:
    """Octets of the RTP header (fixed part, CSRCs, extension); raises :class:`SrtpAeadError` if truncated."""
    if len(rtp) < _RTP_FIXED or rtp[0] >> 6 != 2:
        raise SrtpAeadError("not an RTP packet")
    n = _RTP_FIXED + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10:
        if len(rtp) < n + 4:
            raise SrtpAeadError("RTP header extension truncated")
        n += 4 + 4 * struct.unpack_from("!H", rtp, n + 2)[0]
    if len(rtp) < n:
        raise SrtpAeadError("RTP header truncated")
    return n


def _iv(salt: bytes, ssrc: int, roc: int, seq: int) -> bytes:
    block = struct.pack("!HIIH", 0, ssrc, roc, seq)
    return bytes(a ^ b for a, b in zip(salt, block, strict=True))


class Aead:
    """One sender's GCM context (AESGCM object kept: deriving per packet would be wasteful)."""

    def __init__(self, master_key: bytes, master_salt: bytes) -> None:
        keys = session_keys(master_key, master_salt)
        self._gcm = AESGCM(keys.key)
        self._salt = keys.salt

    def __repr__(self) -> str:
        return "Aead(<redacted>)"

    def protect(self, rtp: bytes, roc: int, mki: bytes) -> bytes:
        """RTP → ``header ‖ ciphertext ‖ tag ‖ MKI ‖ ROC`` (RFC 7714 §8 plus RCCm3's carried ROC)."""
        n = header_length(rtp)
        seq, ssrc = struct.unpack_from("!H4xI", rtp, 2)
        header = rtp[:n]
        sealed = self._gcm.encrypt(_iv(self._salt, ssrc, roc, seq), rtp[n:], header)
        return header + sealed + mki + struct.pack("!I", roc & 0xFFFFFFFF)

    def unprotect(self, srtp: bytes, mki_len: int) -> tuple[bytes, int]:
        """``header ‖ ciphertext ‖ tag ‖ MKI ‖ ROC`` → (RTP, ROC); :class:`SrtpAeadError` if it fails."""
        header, body, _, roc = split(srtp, mki_len)
        seq, ssrc = struct.unpack_from("!H4xI", header, 2)
        try:
            plain = self._gcm.decrypt(_iv(self._salt, ssrc, roc, seq), body, header)
        except InvalidTag:
            raise SrtpAeadError("SRTP packet failed authentication") from None
        return header + plain, roc


def split(srtp: bytes, mki_len: int) -> tuple[bytes, bytes, bytes, int]:
    """(RTP header, ciphertext‖tag, MKI, ROC) of a group SRTP packet, without any key."""
    tail = mki_len + ROC_LEN
    if len(srtp) < _RTP_FIXED + TAG_LEN + tail:
        raise SrtpAeadError("SRTP packet too short")
    n = header_length(srtp[:-tail])
    if len(srtp) - tail - n < TAG_LEN:
        raise SrtpAeadError("SRTP packet too short for its header")
    (roc,) = struct.unpack("!I", srtp[-ROC_LEN:])
    return srtp[:n], srtp[n:-tail], srtp[-tail:-ROC_LEN], roc
