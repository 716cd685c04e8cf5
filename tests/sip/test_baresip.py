"""Signalling interop with baresip (Debian): we call it, it calls us; SDP offer/answer as expected."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.baresip import Baresip
from softphone.sip.sdp import Attributes, Media, SessionDescription, connection_line, with_direction
from softphone.sip.session import CallState
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

from .conftest import ua_config

pytestmark = pytest.mark.slow


def _offer(port: int) -> SessionDescription:
    sdp = SessionDescription(session_id=7, session_version=1, connection=connection_line("127.0.0.1"))
    sdp.media.append(Media("audio", port, "RTP/AVP", ["0", "8"], attributes=Attributes(
        [("rtpmap", "0 PCMU/8000"), ("rtpmap", "8 PCMA/8000"), ("sendrecv", None)])))
    return sdp


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Baresip]:
    require_tool("baresip")
    with Baresip(tmp_path / "baresip", user="bob") as bs:
        yield bs


async def test_we_call_baresip_hold_and_hang_up(baresip: Baresip) -> None:
    async with UserAgent(ua_config("alice")) as ua:
        offer = _offer(40100)
        call = await ua.invite(baresip.uri, offer.encode())
        ok = await call.answered(10)
        answer = SessionDescription.parse(ok.body)
        audio = answer.media[0]
        assert audio.media == "audio" and audio.port > 0 and audio.formats[0] in ("0", "8")
        assert answer.connection_address(audio) == "127.0.0.1" and audio.direction == "sendrecv"
        await asyncio.to_thread(baresip.wait_for, r"Call established: sip:alice@lab.test")
        held = await call.reinvite(with_direction(offer, "sendonly").encode())
        assert SessionDescription.parse(held.body).media[0].direction == "recvonly"
        await call.bye()
        assert call.history[0] is CallState.CALLING
        assert call.history[-2:] == [CallState.CONFIRMED, CallState.TERMINATED]
        await asyncio.to_thread(baresip.wait_for, r"sip:alice@lab.test: session closed")  # our BYE


async def test_baresip_calls_us_we_answer_and_it_hangs_up(baresip: Baresip) -> None:
    async with UserAgent(ua_config("alice")) as ua:
        resp = await asyncio.to_thread(baresip.command, "dial", f"sip:alice@127.0.0.1:{ua.port}")
        assert resp["ok"] is True
        incoming = await asyncio.wait_for(ua.incoming.get(), 10)
        offer = SessionDescription.parse(incoming.remote_body)
        audio = offer.media[0]
        assert audio.proto == "RTP/AVP" and {"0", "8"} <= set(audio.formats)
        assert offer.connection_address(audio) == "127.0.0.1"
        await incoming.ring()
        await asyncio.to_thread(baresip.wait_for, r"(?i)ring")
        answer = _offer(40200)
        answer.media[0].formats = ["0"]
        await incoming.answer(answer.encode())            # returns once baresip's ACK arrived
        assert incoming.state is CallState.CONFIRMED
        await asyncio.to_thread(baresip.wait_for, r"Call established: sip:alice@127.0.0.1")
        await asyncio.to_thread(baresip.wait_for, r"audio: Set audio encoder: PCMU")
        await asyncio.to_thread(baresip.command, "hangup")
        await incoming.wait_state(CallState.TERMINATED, 10)
        assert incoming.history == [CallState.INCOMING, CallState.CONFIRMED, CallState.TERMINATED]


async def test_we_reject_baresip_with_488_and_a_warning(baresip: Baresip) -> None:
    async with UserAgent(ua_config("alice")) as ua:
        await asyncio.to_thread(baresip.command, "dial", f"sip:alice@127.0.0.1:{ua.port}")
        incoming = await asyncio.wait_for(ua.incoming.get(), 10)
        await incoming.reject(488, warning="offer lacks a=key-mgmt:mikey")
        lines = await asyncio.to_thread(baresip.wait_for, r"488")
        assert any("Not Acceptable" in ln for ln in lines)
        assert incoming.history == [CallState.INCOMING, CallState.TERMINATED]
