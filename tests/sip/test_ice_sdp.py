"""ICE attributes in SDP (RFC 8839) beside the MIKEY-SAKKE ``a=key-mgmt``: exact round trips and rejections."""

from __future__ import annotations

import pytest

from softphone.sip.errors import ParseError
from softphone.sip.ice import Candidate, IceDescription, add_ice, default_candidate, read_ice
from softphone.sip.sdp import Media, SessionDescription

HOST = Candidate("1", 1, "udp", 2130706431, "10.0.1.2", 40000, "host")
SRFLX = Candidate("2", 1, "udp", 1694498815, "198.51.100.7", 61000, "srflx", "10.0.1.2", 40000)
RELAY = Candidate("3", 1, "udp", 16777215, "203.0.113.1", 50000, "relay", "198.51.100.7", 61000)
TCP = Candidate("4", 1, "tcp", 1518280447, "10.0.1.2", 9, "host", tcptype="active")
ICE = IceDescription("abcd", "0123456789abcdefghijkl", (HOST, SRFLX, RELAY), ("trickle",), False, True, True)


def _offer() -> SessionDescription:
    media = Media("audio", 40000, "RTP/SAVP", ["96"], "IN IP4 10.0.1.2")
    media.attributes.add("rtpmap", "96 opus/48000/2")
    media.attributes.add("key-mgmt", "mikey AQEFAAA=")
    media.attributes.add("sendrecv")
    add_ice(media, ICE)
    return SessionDescription(session_id=1, session_version=1, address="10.0.1.2", media=[media])


def test_candidate_round_trip_exact() -> None:
    assert SRFLX.to_sdp() == "2 1 udp 1694498815 198.51.100.7 61000 typ srflx raddr 10.0.1.2 rport 40000"
    assert TCP.to_sdp() == "4 1 tcp 1518280447 10.0.1.2 9 typ host tcptype active"
    for cand in (HOST, SRFLX, RELAY, TCP):
        assert Candidate.parse(cand.to_sdp()) == cand


def test_candidate_ignores_unknown_extensions_and_upper_case_transport() -> None:
    got = Candidate.parse("7 1 UDP 100 192.0.2.1 5000 typ host generation 0 network-id 1")
    assert got == Candidate("7", 1, "udp", 100, "192.0.2.1", 5000, "host")


def test_key_mgmt_and_ice_side_by_side_survive_the_wire() -> None:
    parsed = SessionDescription.parse(_offer().encode())
    media = parsed.media[0]
    assert media.attributes.get("key-mgmt") == "mikey AQEFAAA="
    assert read_ice(parsed, media) == ICE
    assert default_candidate(ICE) == RELAY


def test_no_ice_is_none() -> None:
    sdp = _offer()
    for name in ("ice-ufrag", "ice-pwd", "candidate"):
        sdp.media[0].attributes.remove(name)
    assert read_ice(sdp, sdp.media[0]) is None


def test_session_level_credentials_are_inherited() -> None:
    sdp = _offer()
    media = sdp.media[0]
    media.attributes.remove("ice-ufrag")
    media.attributes.remove("ice-pwd")
    sdp.attributes.add("ice-ufrag", "wxyz")
    sdp.attributes.add("ice-pwd", "zyxwvutsrqponmlkjihgfedcba")
    got = read_ice(sdp, media)
    assert got is not None and (got.ufrag, got.pwd) == ("wxyz", "zyxwvutsrqponmlkjihgfedcba")


@pytest.mark.parametrize("value", [
    "1 1 udp 100 10.0.0.1 5000 typ bogus",
    "1 1 udp 100 10.0.0.1 70000 typ host",
    "1 0 udp 100 10.0.0.1 5000 typ host",
    "1 1 udp 100 10.0.0.1 5000 host",
    "1 1 udp 100 10.0.0.1 5000 typ host raddr",
    "f!o 1 udp 100 10.0.0.1 5000 typ host",
    "1 1 udp ² 10.0.0.1 5000 typ host",
])
def test_malformed_candidate_rejected(value: str) -> None:
    with pytest.raises(ParseError):
        Candidate.parse(value)


def test_half_credentials_and_short_password_rejected() -> None:
    sdp = _offer()
    sdp.media[0].attributes.remove("ice-pwd")
    with pytest.raises(ParseError):
        read_ice(sdp, sdp.media[0])
    sdp.media[0].attributes.add("ice-pwd", "short")
    with pytest.raises(ParseError):
        read_ice(sdp, sdp.media[0])


def test_password_not_in_repr() -> None:
    assert ICE.pwd not in repr(ICE)
