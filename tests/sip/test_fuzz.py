"""Parser fuzzing (hypothesis, bounded): only ParseError may escape, and valid messages round-trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from softphone.sip.auth import Challenge
from softphone.sip.errors import ParseError
from softphone.sip.message import StreamFramer, parse_message
from softphone.sip.sdp import SessionDescription
from softphone.sip.uri import NameAddr

SEED = (b"INVITE sip:bob@127.0.0.1:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
        b'From: "Alice" <sip:alice@127.0.0.1>;tag=1928301774\r\nTo: <sip:bob@127.0.0.1>\r\n'
        b"Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: 38\r\n\r\n"
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n")
TOKENS = [b"\r\n", b" ", b":", b";", b",", b"<", b">", b'"', b"\\", b"=", b"/", b"@", b"[", b"]",
          b"SIP/2.0", b"Via", b"v", b"Content-Length", b"l", b"CSeq", b"\x00", b"\xff", b"99999999999",
          b"-1", b"\r\n ", b"\r\n\r\n", b"tag", b"branch", b"sip:", b"sips:", b"%"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SEED)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 2))
        if op == 0:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 1:
            del data[pos:pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = draw(st.binary(max_size=16))
    return bytes(data)


@settings(max_examples=600, deadline=None, derandomize=True)
@given(mutated())
def test_mutated_messages_raise_only_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status < 600
        return
    again = parse_message(msg.encode())  # whatever parses must serialise into something that parses
    assert again.call_id == msg.call_id and again.body == msg.body
    for value in msg.headers.get_all("Contact"):
        try:
            NameAddr.parse(value)
        except ParseError:
            pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(mutated(), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_stream_framer_chunks_raise_only_parse_error(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer(max_size=4096)
    pos = 0
    try:
        for cut in cuts * 10:
            framer.feed(data[pos:pos + cut])
            pos += cut
            if pos >= len(data):
                break
    except ParseError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300), st.text(max_size=120))
def test_sdp_and_challenge_parsers_raise_only_parse_error(data: bytes, text: str) -> None:
    for parse in (lambda: SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 h\r\n" + data),
                  lambda: SessionDescription.parse(data), lambda: Challenge.parse("Digest " + text),
                  lambda: NameAddr.parse(text)):
        try:
            parse()
        except ParseError:
            pass
