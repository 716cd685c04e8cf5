"""Own RFC 7714 AEAD path (group media) against libsrtp: same bytes out, libsrtp opens ours and we open its."""

from __future__ import annotations

import os
import struct

import pytest

from crypto.srtp_aead import Aead, SrtpAeadError, session_keys, split
from softphone.media.rtp import RtpPacket
from softphone.media.srtp import SrtpReceiver, SrtpSender, SrtpSuite

KEY, SALT = bytes(range(16)), bytes(range(100, 112))
MKI = bytes.fromhex("0102030405060708")


def rtp(seq: int, payload: bytes = b"hello group") -> bytes:
    return RtpPacket(111, seq, 1000 + seq * 960, 0xCAFEBABE, payload).serialize()


def test_libsrtp_output_equals_ours_at_roc_zero() -> None:
    ours = Aead(KEY, SALT)
    libsrtp = SrtpSender(SrtpSuite.AEAD_AES_128_GCM, KEY, SALT, MKI)
    for seq in (1, 2, 3):
        assert ours.protect(rtp(seq), 0, MKI) == libsrtp.protect(rtp(seq)) + b"\0\0\0\0"


def test_libsrtp_opens_ours_and_we_open_libsrtps() -> None:
    rx = SrtpReceiver(SrtpSuite.AEAD_AES_128_GCM, KEY, SALT, MKI)
    assert rx.unprotect(Aead(KEY, SALT).protect(rtp(7), 0, MKI)[:-4]) == rtp(7)
    theirs = SrtpSender(SrtpSuite.AEAD_AES_128_GCM, KEY, SALT, MKI).protect(rtp(9)) + b"\0\0\0\0"
    assert Aead(KEY, SALT).unprotect(theirs, 8) == (rtp(9), 0)


def test_carried_roc_opens_late_and_a_wrong_roc_fails() -> None:
    packet = Aead(KEY, SALT).protect(rtp(5), 3, MKI)
    assert packet[-4:] == struct.pack("!I", 3)
    assert Aead(KEY, SALT).unprotect(packet, 8) == (rtp(5), 3)
    forged = packet[:-4] + struct.pack("!I", 2)
    with pytest.raises(SrtpAeadError):
        Aead(KEY, SALT).unprotect(forged, 8)


def test_wrong_key_tampered_header_and_short_packets_fail() -> None:
    packet = Aead(KEY, SALT).protect(rtp(5), 0, MKI)
    with pytest.raises(SrtpAeadError):
        Aead(os.urandom(16), SALT).unprotect(packet, 8)
    with pytest.raises(SrtpAeadError):
        Aead(KEY, SALT).unprotect(packet[:2] + b"\x99" + packet[3:], 8)  # SEQ is AAD
    with pytest.raises(SrtpAeadError):
        split(packet[:20], 8)
    with pytest.raises(SrtpAeadError):
        session_keys(KEY, SALT[:10])


def test_split_reads_mki_and_roc_without_a_key() -> None:
    header, body, mki, roc = split(Aead(KEY, SALT).protect(rtp(5), 1, MKI), 8)
    assert (header, mki, roc, len(body)) == (rtp(5)[:12], MKI, 1, len(b"hello group") + 16)
    assert "redacted" in repr(session_keys(KEY, SALT)) and KEY.hex() not in repr(session_keys(KEY, SALT))
