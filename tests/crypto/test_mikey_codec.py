"""Payload encodings (RFC 3830/6043/6509 layouts), codec errors and the SDP key-mgmt helpers."""

from __future__ import annotations

import pytest

from crypto.mikey import payloads as pl
from crypto.mikey.errors import MalformedMessage
from crypto.mikey.keyparams import KeyParameters, ProtectedKeyParameters, protect_key_parameters
from crypto.mikey.message import SCOPE_WITHOUT_SIGN_HEADER, IMessage
from crypto.mikey.sdp import add_key_mgmt, decode_key_mgmt, find_key_mgmt, key_mgmt_value

SIG = bytes(range(129))


def _msg(header: pl.Header, *body: pl.Payload) -> IMessage:
    return IMessage.from_payloads(header, [*body, pl.Sign(SIG)])


def test_header_map_types_encode_exactly() -> None:
    empty = pl.Header(0x16992638).encode(pl.PT_T)
    assert empty.hex() == "011a0501" + "16992638" + "0001"
    srtp = pl.Header(0x048209A7, pl.MAP_SRTP_ID, (pl.SrtpIdEntry(0, 0xCAFEBABE, 0), pl.SrtpIdEntry(0, 0, 0)),
                     v_flag=False, prf=1).encode(pl.PT_T)
    assert srtp.hex() == "011a0501048209a70200" + "00cafebabe00000000" + "000000000000000000"
    generic = pl.Header(0x06A12AEA, pl.MAP_GENERIC_ID, (pl.GenericIdEntry(4, spi=bytes.fromhex("0df9bc3906a12aea")),))
    assert generic.encode(pl.PT_T).hex() == "011a050106a12aea0102" + "040001000000080df9bc3906a12aea"
    vflag = pl.Header(1, v_flag=True, prf=0).encode(0)
    assert vflag[3] == 0x80
    for h in (generic, pl.Header(1), pl.Header(2, pl.MAP_SRTP_ID, (pl.SrtpIdEntry(1, 2, 3),))):
        assert _msg(h, pl.Rand(b"r")).header == h


def test_payload_layouts() -> None:
    assert pl.Timestamp.from_ntp(3968437672).encode(11).hex() == "0b00ec898da800000000"
    assert pl.Timestamp(7, pl.TS_COUNTER).encode(0).hex() == "000200000007"
    assert pl.Rand(b"\xaa" * 16).encode(14).hex() == "0e10" + "aa" * 16
    assert pl.Idr(pl.ROLE_KMSR, b"kms").encode(10).hex() == "0a07010003" + b"kms".hex()
    sp = pl.SecurityPolicy(0, ((0, b"\x06"), (1, b"\x10")))
    assert sp.encode(26).hex() == "1a00000006" + "000106" + "010110"
    assert sp.as_dict() == {0: 6, 1: 16}
    assert pl.SakkePayload(b"\x04" * 3).encode(21).hex() == "1501020003040404"
    assert pl.GeneralExtension(7, b"xy").encode(4).hex() == "0407000278" + "79"
    assert pl.Sign(SIG).encode()[:2].hex() == "2081"


def test_round_trip_of_every_payload_kind() -> None:
    body = (pl.Timestamp.from_ntp(1, 2), pl.Rand(b"0123456789abcdef"), pl.Idr(pl.ROLE_IDRI, b"sip:a@b"),
            pl.Idr(pl.ROLE_UIDR, bytes(32), pl.ID_TYPE_BYTES), pl.SecurityPolicy(1, ((0, b"\x06"),)),
            pl.SakkePayload(bytes(273)), pl.GeneralExtension(0, b"vendor"))
    m = _msg(pl.Header(0x10000001), *body)
    back = IMessage.parse(m.raw)
    assert back.payloads == (*body, pl.Sign(SIG)) and back.raw == m.raw
    assert back.signed_octets() == m.raw[:-129]
    assert back.signed_octets(SCOPE_WITHOUT_SIGN_HEADER) == m.raw[:-131]
    assert back.idr(pl.ROLE_IDRI).text() == "sip:a@b" and back.idr(9).text() == "00" * 32
    assert back.timestamp.seconds == 1


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda b: b"\x02" + b[1:], "unsupported MIKEY version 2"),
        (lambda b: b[:2] + b"\x01" + b[3:], r"unsupported payload type 1 \(KEMAC\)"),
        (lambda b: b[:2] + b"\x63" + b[3:], "unsupported payload type 99"),
        (lambda b: b[:9] + b"\x07" + b[10:], "unknown CS ID map type 7"),
        (lambda b: b[:8] + b"\x02" + b[9:], "empty CS ID map"),
        (lambda b: b + b"\x00\x00", "2 trailing octets"),
        (lambda b: b[:11] + b"\x09" + b[12:], "unknown timestamp type 9"),
        (lambda b: b[:-130], "truncated SIGN"),
    ],
)
def test_malformed_messages_name_the_problem(mutate, reason: str) -> None:
    raw = _msg(pl.Header(0x10000001), pl.Timestamp.from_ntp(5), pl.Rand(b"r" * 16)).raw
    with pytest.raises(MalformedMessage, match=reason):
        IMessage.parse(mutate(raw))


def test_structural_errors() -> None:
    m = _msg(pl.Header(1), pl.Rand(b"r"), pl.Rand(b"s"))
    with pytest.raises(MalformedMessage, match="more than one RAND"):
        _ = IMessage.parse(m.raw).rand
    with pytest.raises(MalformedMessage, match="SIGN must be the last"):
        IMessage.from_payloads(pl.Header(1), [pl.Sign(SIG), pl.Rand(b"r")])
    with pytest.raises(MalformedMessage, match="no T"):
        _ = IMessage.parse(m.raw).timestamp
    with pytest.raises(MalformedMessage, match="RAND payload is empty"):
        IMessage.parse(bytes.fromhex("011a0b0100000001000100" + "0000"))
    # A chain that never reaches its end is bounded.
    loop = bytes.fromhex("011a0e0100000001 0001".replace(" ", "")) + bytes.fromhex("0e010100 00") * 70
    with pytest.raises(MalformedMessage, match="more than 64 payloads"):
        IMessage.parse(loop)


def test_key_parameters_protect_and_open() -> None:
    key, dppk_id = bytes(range(16)), 0x16992638
    params = KeyParameters(1, 1, 0, 0, "hello")
    data = protect_key_parameters(params, key, dppk_id, iv=bytes(16))
    kp = ProtectedKeyParameters.decode(data)
    assert (kp.form, kp.msg_type, kp.dppk_id, kp.date_time) == ("protected", 0x43, dppk_id, 1)
    assert kp.decrypt(key, data) == params
    from crypto.mikey.errors import MikeyError
    with pytest.raises(MikeyError, match="GCM tag mismatch"):
        kp.decrypt(bytes(16), data)
    legacy = ProtectedKeyParameters.decode(bytes.fromhex("0100000001000000000000000000000000"))
    assert legacy.form == "legacy" and legacy.clear.key_type == 0  # legacy first octet = key type + 1


def test_sdp_helpers() -> None:
    imsg = bytes(range(50))
    value = key_mgmt_value(imsg)
    assert value.startswith("mikey ") and decode_key_mgmt(value) == imsg
    assert decode_key_mgmt("a=key-mgmt:" + value) == imsg
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 96\r\na=sendrecv\r\n"
           "m=video 4002 RTP/SAVP 97\r\n")
    media = add_key_mgmt(sdp, imsg, 0)
    lines = media.split("\r\n")
    assert lines.index("a=key-mgmt:" + value) == lines.index("m=video 4002 RTP/SAVP 97") - 1
    assert find_key_mgmt(media, 0) == imsg and find_key_mgmt(media, 1) is None
    session = add_key_mgmt(sdp, imsg, None)
    assert session.split("\r\n").index("a=key-mgmt:" + value) == 4
    assert find_key_mgmt(session, 0) == imsg and find_key_mgmt(session, 1) == imsg
    both = add_key_mgmt(add_key_mgmt(sdp, b"session", None), imsg, 0)
    assert find_key_mgmt(both, 0) == imsg and find_key_mgmt(both, 1) == b"session"
    for bad in ("mikey !!!", "sdes AAAA", "mikey ", "mikey AAA"):
        with pytest.raises(MalformedMessage):
            decode_key_mgmt(bad)
    with pytest.raises(MalformedMessage, match="no media section 5"):
        add_key_mgmt(sdp, imsg, 5)
