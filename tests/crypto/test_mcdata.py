"""MCData protected payloads: exact round trips, DPCK keying, every altered field refused."""

from __future__ import annotations

import uuid

import pytest

from crypto import mcdata
from crypto.kdf import dpck

PCK = bytes(range(16))
PCK_ID = 0x1234ABCD


def _protect(plain: bytes, **kw: object) -> bytes:
    args = {"message_type": mcdata.MessageType.DATA, "dppk": PCK, "dppk_id": PCK_ID, "date_time": 1_790_000_000,
            "payload_id": 7, "seq": 1}
    args.update(kw)
    return mcdata.protect(plain, **args)  # type: ignore[arg-type]


def test_round_trip_layout_and_aad() -> None:
    plain = mcdata.DataPayload((mcdata.DataItem(mcdata.ContentType.TEXT, b"hello"),)).encode()
    iv = bytes(range(16, 32))
    wire = _protect(plain, iv=iv)
    assert wire[0] == 0x43 and wire[1:6] == (1_790_000_000).to_bytes(5, "big")
    assert wire[6:10] == (7).to_bytes(4, "big") and wire[10] == 1 and wire[11] == mcdata.ALG_AES_128_GCM
    assert wire[12:28] == iv and wire[28:32] == PCK_ID.to_bytes(4, "big") and wire[32] == 0x78
    assert len(wire) == 35 + len(plain) + 16
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    assert AESGCM(dpck(PCK, PCK_ID)).decrypt(iv, wire[35:], wire[:32]) == plain  # AAD = first 32 octets
    pp, out = mcdata.unprotect(wire, dppk=PCK, dppk_id=PCK_ID)
    assert out == plain and pp.payload_id == 7 and mcdata.DataPayload.decode(out).items[0].data == b"hello"


def test_fresh_iv_each_time() -> None:
    assert _protect(b"\x03\x00")[12:28] != _protect(b"\x03\x00")[12:28]


@pytest.mark.parametrize("offset", [0, 3, 8, 10, 20, 30, 40, -1])
def test_any_altered_octet_is_refused(offset: int) -> None:
    wire = bytearray(_protect(mcdata.DataPayload((mcdata.DataItem(1, b"secret text"),)).encode()))
    wire[offset] ^= 0x01 if offset != 0 else 0x02
    with pytest.raises((mcdata.PayloadAuthFailed, mcdata.KeyIdMismatch, mcdata.MalformedPayload)):
        mcdata.unprotect(bytes(wire), dppk=PCK, dppk_id=PCK_ID)


def test_wrong_key_and_key_id() -> None:
    wire = _protect(b"\x03\x01\x78\x00\x02\x01a")
    with pytest.raises(mcdata.PayloadAuthFailed):
        mcdata.unprotect(wire, dppk=bytes(16), dppk_id=PCK_ID)
    with pytest.raises(mcdata.KeyIdMismatch):
        mcdata.unprotect(wire, dppk=PCK, dppk_id=PCK_ID + 1)


def test_truncated_and_unknown_algorithm() -> None:
    wire = _protect(b"\x03\x01\x78\x00\x02\x01a")
    with pytest.raises(mcdata.MalformedPayload):
        mcdata.unprotect(wire[:-1], dppk=PCK, dppk_id=PCK_ID)
    bad = bytearray(wire)
    bad[11] = 2
    with pytest.raises(mcdata.MalformedPayload, match="algorithm"):
        mcdata.ProtectedPayload.decode(bytes(bad))


def test_plain_payload_codecs() -> None:
    conv, mid, reply = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sds = mcdata.SdsSignalling(5, conv, mid, reply, 3)
    assert mcdata.SdsSignalling.decode(sds.encode()) == sds
    assert len(mcdata.SdsSignalling(5, conv, mid).encode()) == 38
    note = mcdata.SdsNotification(9, conv, mid, mcdata.Disposition.READ)
    assert mcdata.SdsNotification.decode(note.encode()) == note
    items = (mcdata.DataItem(1, "héllo".encode()), mcdata.DataItem(2, bytes(range(256)) * 10))
    assert mcdata.DataPayload.decode(mcdata.DataPayload(items).encode()).items == items
    with pytest.raises(mcdata.MalformedPayload):
        mcdata.DataPayload.decode(mcdata.DataPayload(items).encode() + b"x")
