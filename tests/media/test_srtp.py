"""SRTP/SRTCP through pylibsrtp: AEAD_AES_128_GCM layout (RFC 7714) checked against an independent AES-GCM
computation, MKI placement (specs/SDP-SRTP.md §2–3), and forged/replayed/truncated input counted by reason."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from softphone.media import rtcp
from softphone.media.rtp import RtpPacket
from softphone.media.srtp import SrtpError, SrtpReceiver, SrtpSender, SrtpSuite

GCM = SrtpSuite.AEAD_AES_128_GCM
CM = SrtpSuite.AES_CM_128_HMAC_SHA1_80


def _kdf(master_key: bytes, master_salt: bytes, label: int, n: int) -> bytes:
    """RFC 3711 §4.3.1 AES-CM PRF, key derivation rate 0; 12-octet salts left-aligned in 14 octets."""
    x = bytearray(master_salt.ljust(14, b"\x00"))
    x[7] ^= label
    enc = Cipher(algorithms.AES(master_key), modes.CTR(bytes(x) + b"\x00\x00")).encryptor()
    return enc.update(b"\x00" * n)


def _pair(suite: SrtpSuite = GCM, mki: bytes | None = None, rx_mki: bytes | None = None):
    key, salt = os.urandom(suite.key_len), os.urandom(suite.salt_len)
    return key, salt, SrtpSender(suite, key, salt, mki), SrtpReceiver(suite, key, salt, rx_mki if rx_mki else mki)


def _rtp(seq: int, payload: bytes = b"voice" * 8) -> bytes:
    return RtpPacket(111, seq, seq * 960, 0x01020304, payload).serialize()


def test_gcm_srtp_matches_independent_aes_gcm() -> None:
    key, salt, tx, _ = _pair()
    plain = _rtp(0x1234)
    wire = tx.protect(plain)
    assert len(wire) == len(plain) + 16 and wire[:12] == plain[:12]
    k_s, salt_s = _kdf(key, salt, 0x00, 16), _kdf(key, salt, 0x02, 12)
    iv = bytes(a ^ b for a, b in zip(b"\x00\x00" + plain[8:12] + b"\x00\x00\x00\x00" + plain[2:4], salt_s, strict=True))
    assert AESGCM(k_s).decrypt(iv, wire[12:], plain[:12]) == plain[12:]


def test_gcm_srtcp_matches_independent_aes_gcm_and_mki_trails() -> None:
    mki = b"\x0a\x0b\x0c\x0d"
    key, salt, tx, rx = _pair(mki=mki)
    plain = rtcp.serialize(rtcp.ReceiverReport(0x01020304, (rtcp.ReportBlock(9, 0, 0, 1, 0, 0, 0),)))
    wire = tx.protect_rtcp(plain)
    assert wire.endswith(mki) and len(wire) == len(plain) + 20 + 4
    body = wire[:-4]
    e_index = body[-4:]
    assert e_index == b"\x80\x00\x00\x01"  # E=1, libsrtp's first SRTCP index is 1
    k_c, salt_c = _kdf(key, salt, 0x03, 16), _kdf(key, salt, 0x05, 12)
    nonce = b"\x00\x00" + plain[4:8] + b"\x00\x00" + struct.pack("!I", 1)
    iv = bytes(a ^ b for a, b in zip(nonce, salt_c, strict=True))
    assert AESGCM(k_c).decrypt(iv, body[8:-4], plain[:8] + e_index) == plain[8:]
    assert rx.unprotect_rtcp(wire) == plain


@pytest.mark.parametrize("suite", [GCM, CM])
def test_round_trip_and_rejections_counted(suite: SrtpSuite) -> None:
    _, _, tx, rx = _pair(suite)
    wires = [tx.protect(_rtp(s)) for s in range(5)]
    assert rx.unprotect(wires[0]) == _rtp(0)
    assert rx.unprotect(wires[0]) is None  # replay
    tampered = bytearray(wires[1])
    tampered[20] ^= 1
    assert rx.unprotect(bytes(tampered)) is None
    assert rx.unprotect(wires[2][:-3]) is None  # truncated tag
    assert rx.unprotect(wires[3][:9]) is None  # shorter than a header
    assert rx.unprotect(wires[1]) == _rtp(1)  # the genuine packet still gets through
    assert rx.unprotect(wires[4]) == _rtp(4)
    assert rx.failures == {"replay": 1, "auth_failed": 2, "malformed": 1}


def test_srtcp_rejections_counted() -> None:
    _, _, tx, rx = _pair()
    plain = rtcp.serialize(rtcp.ReceiverReport(7))
    w1, w2 = tx.protect_rtcp(plain), tx.protect_rtcp(plain)
    assert rx.unprotect_rtcp(w1) == plain
    assert rx.unprotect_rtcp(w1) is None
    bad = bytearray(w2)
    bad[9] ^= 0x40
    assert rx.unprotect_rtcp(bytes(bad)) is None
    assert rx.unprotect_rtcp(w2[:10]) is None
    assert rx.unprotect_rtcp(w2) == plain
    assert rx.rtcp_failures == {"replay": 1, "auth_failed": 1, "malformed": 1}


def test_mki_appended_checked_and_stripped() -> None:
    _, _, tx, rx = _pair(mki=b"\x00\x00\x00\x07", rx_mki=b"\x00\x00\x00\x08")
    wire = tx.protect(_rtp(1))
    assert wire.endswith(b"\x00\x00\x00\x07")
    assert rx.unprotect(wire) is None and rx.failures == {"mki_mismatch": 1}


def test_bad_parameters_and_safe_repr() -> None:
    with pytest.raises(SrtpError, match="28|12-octet salt"):
        SrtpSender(GCM, os.urandom(16), os.urandom(14))
    with pytest.raises(SrtpError, match="AEAD"):
        SrtpSender(CM, os.urandom(16), os.urandom(14), mki=b"\x01")
    with pytest.raises(SrtpError, match="unsupported"):
        SrtpSuite.from_name("NULL_HMAC_SHA1_80")
    key = os.urandom(16)
    assert key.hex() not in repr(SrtpReceiver(GCM, key, os.urandom(12)))
