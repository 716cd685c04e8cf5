"""SDP model (RFC 4566) and offer/answer helpers (RFC 3264)."""

from __future__ import annotations

import pytest

from softphone.sip.errors import ParseError
from softphone.sip.sdp import SessionDescription, answer_formats, reverse_direction, with_direction

OFFER = (b"v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
         b"t=0 0\r\na=key-mgmt:mikey AQAFgA==\r\n"
         b"m=audio 49170 RTP/SAVP 96 0 101\r\nb=AS:64\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"
         b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
         b"a=crypto:1 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\na=sendrecv\r\n"
         b"m=video 0 RTP/AVP 31\r\n")


def test_parse_and_serialise_round_trip() -> None:
    sdp = SessionDescription.parse(OFFER)
    assert sdp.encode() == OFFER
    assert sdp.attributes.get("key-mgmt") == "mikey AQAFgA=="
    audio = sdp.media[0]
    assert (audio.port, audio.proto, audio.formats) == (49170, "RTP/SAVP", ["96", "0", "101"])
    assert audio.rtpmap()["96"] == "opus/48000/2" and audio.fmtp("96") == "useinbandfec=1"
    assert audio.attributes.get("crypto", ).startswith("1 AEAD_AES_128_GCM")  # type: ignore[union-attr]
    assert audio.direction == "sendrecv" and audio.bandwidths == ["AS:64"]
    assert sdp.connection_address(audio) == "127.0.0.1"
    assert sdp.media[1].port == 0  # rejected stream stays in place (RFC 3264 §6)


def test_hold_resume_directions_and_version_bump() -> None:
    sdp = SessionDescription.parse(OFFER)
    held = with_direction(sdp, "sendonly")
    assert held.session_version == sdp.session_version + 1
    assert all(m.direction == "sendonly" for m in held.media)
    assert held.encode().count(b"a=sendonly") == 2 and b"a=sendrecv" not in held.encode()
    assert reverse_direction("sendonly") == "recvonly" and reverse_direction("inactive") == "inactive"
    assert sdp.media[0].direction == "sendrecv"  # the original is untouched


def test_answer_formats_keeps_offer_order() -> None:
    audio = SessionDescription.parse(OFFER).media[0]
    assert answer_formats(audio, {"pcmu/8000": "PCMU", "telephone-event/8000": "DTMF"}) == ["0", "101"]
    assert answer_formats(audio, {"opus/48000": "Opus"}) == ["96"]
    assert answer_formats(audio, {"g729/8000": "G.729"}) == []


@pytest.mark.parametrize("bad", [
    b"", b"o=- 1 1 IN IP4 h\r\n", b"v=1\r\no=- 1 1 IN IP4 h\r\n", b"v=0\r\n", b"v=0\r\no=- x 1 IN IP4 h\r\n",
    b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio notaport RTP/AVP 0\r\n", b"v=0\r\no=- 1 1 IN IP4 h\r\nbogus\r\n",
    b"v=0\r\no=- 1 1 IN IP4 h\r\nc=IN IP4\r\n", b"\xff\xfe", b"v=0\r\n" + b"a=x\r\n" * 10000,
])
def test_malformed_sdp_is_parse_error(bad: bytes) -> None:
    with pytest.raises(ParseError):
        SessionDescription.parse(bad)
