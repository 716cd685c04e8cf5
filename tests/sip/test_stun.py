"""The minimal STUN codec against the RFC 5769 test vectors."""

from __future__ import annotations

import pytest

from softphone.sip import stun
from softphone.sip.errors import ParseError

PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
# RFC 5769 §2.1 sample request (software "STUN test client", ICE attributes, username "evtj:h6vY")
REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf")
# §2.2 IPv4 response: 192.0.2.1 port 32853; §2.3 IPv6 response: 2001:db8:1234:5678:11:2233:4455:6677
RESPONSE4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96")
RESPONSE6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9fa"
    "a5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c")


def test_rfc5769_request() -> None:
    msg = stun.parse(REQUEST)
    assert msg.type == stun.BINDING_REQUEST and msg.transaction_id == TXID
    assert msg.get(stun.SOFTWARE) == b"STUN test client" and msg.get(stun.USERNAME) == b"evtj:h6vY"
    assert stun.check_fingerprint(REQUEST) and stun.check_integrity(REQUEST, PASSWORD)
    assert not stun.check_integrity(REQUEST, b"wrong")
    tampered = REQUEST[:-12] + bytes([REQUEST[-12] ^ 1]) + REQUEST[-11:]
    assert not stun.check_fingerprint(tampered)


@pytest.mark.parametrize("data, mapped", [(RESPONSE4, ("192.0.2.1", 32853)),
                                          (RESPONSE6, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))])
def test_rfc5769_responses(data: bytes, mapped: tuple[str, int]) -> None:
    msg = stun.parse(data)
    assert msg.type == stun.BINDING_SUCCESS and msg.transaction_id == TXID
    assert msg.get(stun.SOFTWARE) == b"test vector"
    assert msg.mapped_address() == mapped
    assert stun.check_fingerprint(data) and stun.check_integrity(data, PASSWORD)
    # our encoder writes the same XOR-MAPPED-ADDRESS
    assert stun.address_value(*mapped, TXID) == msg.get(stun.XOR_MAPPED_ADDRESS)


def test_keepalive_request_and_response_round_trip() -> None:
    req = stun.binding_request(TXID)
    assert len(req) == 28 and stun.is_stun(req) and stun.check_fingerprint(req)
    assert stun.parse(req).type == stun.BINDING_REQUEST
    resp = stun.binding_response(TXID, "198.51.100.4", 5060)
    assert stun.check_fingerprint(resp) and stun.parse(resp).mapped_address() == ("198.51.100.4", 5060)
    assert not stun.is_stun(b"REGISTER sip:lab.test SIP/2.0\r\n\r\n")
    with pytest.raises(ParseError):
        stun.parse(resp[:-4])
    with pytest.raises(ValueError):
        stun.binding_request(b"short")
