"""RFC 3261 message grammar: compact/folded/multi-value headers, name-addr, URIs, framing, errors."""

from __future__ import annotations

import pytest

from softphone.sip.errors import ParseError
from softphone.sip.headers import Headers, Via, split_list
from softphone.sip.message import Request, Response, StreamFramer, make_response, parse_message
from softphone.sip.uri import NameAddr, SipUri

# RFC 4475 §3.1.1.1-style "tortuous" INVITE, reduced: compact names, folding, odd spacing, quoted commas
TORTUOUS = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag = 98asjd8\r\n'
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : 4\r\n"
    b"cseq: 0009\r\n  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n"
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n newvalue ;\r\n'
    b"  secondparam ; q = 0.33\r\n"
    b"v:  SIP/2.0/TCP spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n"
    b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\n"
    b"\r\nv=0\r\n"
)


def test_compact_folded_and_multivalue_headers() -> None:
    msg = parse_message(TORTUOUS)
    assert isinstance(msg, Request) and msg.method == "INVITE"
    assert msg.uri.host == "chair-dnrc.example.com" and "unknownparam" in msg.uri.params
    assert msg.cseq == (9, "INVITE")
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.body == b"v=0\r"[:4]
    vias = msg.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[1].host == "spindle.example.com" and vias[1].branch == "z9hG4bK9ikj8"
    assert vias[2].branch == "z9hG4bK30239"
    contact = msg.contact
    assert contact is not None and contact.display == 'Quoted string ""'
    assert contact.params["q"] == "0.33" and contact.params["newparam"] == "newvalue"
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.to.tag == "1918181833n"


def test_serialise_round_trip_and_content_length() -> None:
    req = Request(method="OPTIONS", uri=SipUri.parse("sip:bob@[::1]:5070;transport=tcp"))
    for name, value in [("Via", "SIP/2.0/TCP [::1]:5071;branch=z9hG4bK1;rport"), ("From", "<sip:a@x>;tag=1"),
                        ("To", '"Bob, Jr." <sip:bob@x>'), ("Call-ID", "c1"), ("CSeq", "7 OPTIONS"),
                        ("Content-Length", "999")]:
        req.headers.add(name, value)
    req.body = b"hello"
    wire = req.encode()
    assert b"Content-Length: 5\r\n\r\nhello" in wire and wire.count(b"Content-Length") == 1
    again = parse_message(wire)
    assert isinstance(again, Request) and again.encode() == wire
    assert again.uri.host == "[::1]" and again.uri.port == 5070 and again.uri.transport == "tcp"
    assert again.to.display == "Bob, Jr." and again.top_via.host == "[::1]"


def test_multi_value_split_respects_quotes_and_angles() -> None:
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == ['"a, b" <sip:x@y;p=1,2>', "<sip:z@w>"]
    h = Headers([("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("route", "<sip:p3;lr>")])
    assert h.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    with pytest.raises(ParseError):
        split_list('"unterminated, x')


def test_name_addr_and_uri_forms() -> None:
    na = NameAddr.parse("sip:carol@chicago.com;tag=887s")
    assert na.tag == "887s" and "tag" not in na.uri.params  # addr-spec: params belong to the header
    na = NameAddr.parse("<sip:carol@chicago.com;transport=tcp>;tag=887s")
    assert na.uri.params == {"transport": "tcp"} and na.tag == "887s"
    uri = SipUri.parse("sips:alice:secretword@atlanta.com;transport=tcp?subject=project")
    assert (uri.scheme, uri.user, uri.password, uri.transport, uri.headers) == (
        "sips", "alice", "secretword", "tls", "subject=project")
    assert str(SipUri.parse("tel:+358-555-1234567")) == "tel:+358-555-1234567"
    for bad in ("sip:", "sip:a@", "sip:host:99999", "nocolon", "sip:[::1", "sip:ho st"):
        with pytest.raises(ParseError):
            SipUri.parse(bad)


def test_response_parsing_and_make_response_copies_headers() -> None:
    req = parse_message(b"BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:a@b>;tag=1\r\n"
                        b"t: <sip:c@d>\r\ni: id\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n")
    assert isinstance(req, Request)
    resp = make_response(req, 481, to_tag="t9")
    wire = resp.encode()
    again = parse_message(wire)
    assert isinstance(again, Response) and again.status == 481
    assert again.reason == "Call/Transaction Does Not Exist" and again.to.tag == "t9"
    assert again.call_id == "id" and again.cseq == (2, "BYE")


HEAD = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"


@pytest.mark.parametrize(("data", "status"), [
    (b"INVITE sip:a@b SIP/3.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", 505),
    (HEAD + b"CSeq: 1 INVITE\r\n\r\n", 400),
    (HEAD + b"Call-ID: x\r\nCSeq: 1 BYE\r\n\r\n", 400),
    (HEAD + b"Call-ID: x\r\nCSeq: 99999999999 INVITE\r\n\r\n", 400),
    (HEAD + b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 10\r\n\r\nshort", 400),
    (HEAD + b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: -1\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: bogus\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\n"
     b"Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: \"unterminated <sip:a@b>\r\nTo: <sip:a@b>\r\n"
     b"Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n", 400),
    (HEAD + b"Call-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 0\r\n\r\n", 483),
    (b"\xff\xfe garbage\r\n\r\n", 400),
    (b"INVITE sip:a@b SIP/2.0\r\n" + b"X-Pad: y\r\n" * 300 + b"\r\n", 413),
    (b"SIP/2.0 999 Odd\r\n\r\n", 400),
    (b"no blank line", 400),
])
def test_malformed_messages_raise_parse_error_with_status(data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert err.value.status == status


def test_oversized_datagram_is_413() -> None:
    with pytest.raises(ParseError) as err:
        parse_message(b"x" * 70000)
    assert err.value.status == 413


def _wire(body: bytes = b"abc", call_id: str = "c") -> bytes:
    return (f"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            f"To: <sip:a@b>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_stream_framer_splits_by_content_length_byte_by_byte() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + _wire(b"one", "1") + _wire(b"", "2") + _wire(b"three\r\n\r\n", "3")
    out = []
    for i in range(len(stream)):
        out += framer.feed(stream[i:i + 1])
    assert [(m.call_id, m.body) for m in out] == [("1", b"one"), ("2", b""), ("3", b"three\r\n\r\n")]


def test_stream_framer_requires_content_length_and_bounds_buffers() -> None:
    with pytest.raises(ParseError, match="Content-Length"):
        StreamFramer().feed(_wire().replace(b"Content-Length: 3\r\n", b""))
    framer = StreamFramer(max_size=4096)
    with pytest.raises(ParseError) as err:
        for _ in range(10):
            framer.feed(b"X-Junk: " + b"a" * 1000)
    assert err.value.status == 413
    with pytest.raises(ParseError):
        StreamFramer(max_size=4096).feed(_wire().replace(b"Content-Length: 3", b"Content-Length: 999999"))


def test_via_received_rport_round_trip() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport")
    via.params["rport"] = "4321"
    via.params["received"] = "192.0.2.9"
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=4321;received=192.0.2.9"
