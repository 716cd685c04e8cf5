"""Signalling interop with a pjsua2 (PJSIP 2.x) peer: both directions, a 486, SDP as expected."""

from __future__ import annotations

import asyncio

import pytest

from lab.pjsua_peer import PjsuaPeer
from softphone.sip.errors import CallFailed
from softphone.sip.sdp import SessionDescription
from softphone.sip.session import CallState
from softphone.sip.ua import UserAgent

from .conftest import sdp_offer, ua_config

pytestmark = pytest.mark.slow


def _wait(peer: PjsuaPeer, kind: str, **match: object) -> dict:
    return peer.wait_event(kind, lambda e: all(e.get(k) == v for k, v in match.items()), timeout=15)


async def test_we_call_pjsua_with_a_2kb_offer_over_tcp() -> None:
    pytest.importorskip("pjsua2")
    with PjsuaPeer() as peer:
        async with UserAgent(ua_config("alice")) as ua:
            offer = sdp_offer(40300)       # ~2 kB: over the UDP limit, so it goes over TCP
            call = await ua.invite(peer.uri, offer)
            ok = await call.answered(15)
            incoming = await asyncio.to_thread(_wait, peer, "incoming")
            assert "a=key-mgmt:mikey AAAA" in incoming["msg"] and "SIP/2.0/TCP" in incoming["msg"]
            answer = SessionDescription.parse(ok.body)
            assert answer.media[0].formats[0] == "0" and answer.media[0].port > 0
            assert answer.connection_address(answer.media[0]) == "127.0.0.1"
            await asyncio.to_thread(_wait, peer, "state", state="CONFIRMED")
            await call.bye()
            await asyncio.to_thread(_wait, peer, "state", state="DISCONNECTED")


async def test_pjsua_calls_us_and_hangs_up() -> None:
    pytest.importorskip("pjsua2")
    with PjsuaPeer() as peer:
        async with UserAgent(ua_config("alice")) as ua:
            await asyncio.to_thread(peer.send, f"dial sip:alice@127.0.0.1:{ua.port}")
            incoming = await asyncio.wait_for(ua.incoming.get(), 15)
            offer = SessionDescription.parse(incoming.remote_body)
            assert offer.media[0].media == "audio" and "0" in offer.media[0].formats
            await incoming.answer(sdp_offer(40400).replace(b"RTP/AVP 0 101", b"RTP/AVP 0"))
            await asyncio.to_thread(_wait, peer, "state", state="CONFIRMED")
            await asyncio.to_thread(peer.send, "hangup")
            await incoming.wait_state(CallState.TERMINATED, 10)
            assert incoming.history == [CallState.INCOMING, CallState.CONFIRMED, CallState.TERMINATED]


async def test_pjsua_busy_is_486() -> None:
    pytest.importorskip("pjsua2")
    with PjsuaPeer(answer=486) as peer:
        async with UserAgent(ua_config("alice")) as ua:
            call = await ua.invite(peer.uri, sdp_offer())
            with pytest.raises(CallFailed) as err:
                await call.answered(15)
            assert err.value.status == 486 and call.state is CallState.TERMINATED
