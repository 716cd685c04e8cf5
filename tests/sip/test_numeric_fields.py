"""Numeric fields take ASCII digits only: ², ٣, ３ and odd whitespace are a ParseError (→ 400), never ValueError."""

from __future__ import annotations

import asyncio
import socket

import pytest

from softphone.calls.negotiation import _pick_codec
from softphone.calls.profile import load_profile
from softphone.sip.errors import ParseError
from softphone.sip.grammar import ascii_int
from softphone.sip.headers import Via
from softphone.sip.message import Response, StreamFramer, parse_message
from softphone.sip.registration import Registration
from softphone.sip.sdp import SessionDescription
from softphone.sip.ua import UserAgent
from softphone.sip.uri import NameAddr, SipUri

from .conftest import ua_config

ODD = ["²", "٣", "３", "1²", "٣٣", "１２", "\t", "\x0b", "\u00a0", "1\x0b2", "1\u00a02", "1 2", "1\t2",
       "+1", "-1", "0x1", "1_0", "", "①", "𝟙"]
SDP = ("v=0\r\no=- {o1} {o2} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0\r\n")


def _request(cseq: str = "1", mf: str = "70", cl: str | None = None, via_port: str = "5070",
             uri_port: str = "5060", body: bytes = b"") -> bytes:
    length = str(len(body)) if cl is None else cl
    return (f"OPTIONS sip:bob@127.0.0.1:{uri_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{via_port};branch=z9hG4bKnum;rport\r\n"
            f"From: <sip:x@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: num-1\r\n"
            f"CSeq: {cseq} OPTIONS\r\nMax-Forwards: {mf}\r\nContent-Length: {length}\r\n\r\n").encode() + body


def _response(status: str) -> bytes:
    return (f"SIP/2.0 {status} OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnum\r\n"
            f"From: <sip:x@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: num-1\r\n"
            f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def _mutants(valid: str) -> list[str]:
    return list(ODD) + [valid + o for o in ODD if o] + [o + valid for o in ODD if o]


@pytest.mark.parametrize("odd", ["²", "٣", "３", "1²", "١٢", "\x0b", "\u00a0", "1\u00a02"])
def test_ascii_int_refuses_what_str_isdigit_or_int_would_take(odd: str) -> None:
    with pytest.raises(ParseError):
        ascii_int(odd, "number")
    assert ascii_int("0042", "number") == 42


@pytest.mark.parametrize("field", ["cseq", "mf", "cl", "via_port", "uri_port", "status"])
def test_every_numeric_sip_field_fails_with_parse_error(field: str) -> None:
    valid = {"cseq": "1", "mf": "70", "cl": "0", "via_port": "5070", "uri_port": "5060", "status": "200"}[field]
    for text in _mutants(valid):
        data = _response(text) if field == "status" else _request(**{field: text})
        try:
            parse_message(data)
        except ParseError:
            continue
        # only SIP whitespace around a valid number may pass, and then it means the valid number
        assert text.strip(" \t") == valid or text.strip() == valid, (field, text)


@pytest.mark.parametrize("field", ["o1", "o2", "port"])
def test_every_numeric_sdp_field_fails_with_parse_error(field: str) -> None:
    valid = {"o1": "1", "o2": "1", "port": "40000"}[field]
    for text in (t for t in _mutants(valid) if " " not in t):  # SP separates SDP fields
        values = {"o1": "1", "o2": "1", "port": "40000", field: text}
        try:
            SessionDescription.parse(SDP.format(**values).encode())
        except ParseError:
            continue
        assert text.strip() == valid, (field, text)


def test_uri_via_registration_and_payload_types_take_ascii_digits_only() -> None:
    for odd in ["²", "٣", "３", "50６0"]:
        with pytest.raises(ParseError):
            SipUri.parse(f"sip:bob@127.0.0.1:{odd}")
        with pytest.raises(ParseError):
            Via.parse(f"SIP/2.0/UDP 127.0.0.1:{odd};branch=z9hG4bK1")
    reg = Registration(SipUri.parse("sip:a@lab.test"), "c@x", SipUri.parse("sip:lab.test"))
    contact = NameAddr.parse("<sip:a@127.0.0.1:5070>")
    resp = Response(status=200, reason="OK")
    resp.headers.add("Contact", "<sip:a@127.0.0.1:5070>;expires=３６")
    assert reg.outcome(resp, contact, 60).granted == 60  # the odd expiry is ignored, ours stands
    text = SDP.format(o1=1, o2=1, port=4000).replace("RTP/AVP 0", "RTP/AVP ８ 0") + "a=rtpmap:８ PCMU/8000\r\n"
    codec, _ = _pick_codec(SessionDescription.parse(text.encode()).media[0], load_profile("interop-sdes"))
    assert codec.payload_type == 0  # "８" is not payload type 8


def test_a_stream_skips_a_well_framed_bad_message_and_keeps_going() -> None:
    framer = StreamFramer()
    good = _request()
    out = framer.feed(_request(cseq="３") + good)
    assert len(out) == 1 and out[0].cseq == (1, "OPTIONS")
    assert [str(exc) for _, exc in framer.rejected] == ["bad CSeq"]
    framer = StreamFramer()
    with pytest.raises(ParseError):  # no Content-Length it can trust: the stream cannot be framed
        framer.feed(_request(cl="²") + good)


async def test_udp_gets_400_and_tcp_gets_400_and_stays_usable() -> None:
    async with UserAgent(ua_config("bob")) as ua:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            for field, odd in [("cl", "²"), ("cseq", "٣"), ("mf", "３"), ("uri_port", "50７0"), ("mf", "7\x0b0")]:
                sock.sendto(_request(**{field: odd}), ("127.0.0.1", ua.port))
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 3)
                assert reply.startswith(b"SIP/2.0 400 "), (field, odd, reply[:60])
        finally:
            sock.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
        tcp = _request(mf="７０").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        writer.write(tcp + _request().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(b"num-1", b"num-2"))
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"SIP/2.0 400 ")
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert second.startswith(b"SIP/2.0 200 "), second[:60]
        writer.write(_request(cl="²").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))  # a framing error: close
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)
        assert b"200 OK" not in rest
        writer.close()
