"""Secure MIKEY-SAKKE calls with ICE in the SDP (in-process phones through Kamailio over TLS, real KMS keys):
host candidates on this machine's own interface, and an ICE caller with a callee that does not do ICE
(plain SDP, symmetric latching). The NAT paths (srflx, TURN relay) are in tests/media/test_ice_nat.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import ifaddr
import numpy as np
import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from softphone.calls.events import CallEvent, IceChanged
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource
from softphone.media.ice import IceSettings

pytestmark = pytest.mark.slow

_HOSTS = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str) and ip.ip != "127.0.0.1"]
needs_interface = pytest.mark.skipif(not _HOSTS, reason="ICE host candidates need a non-loopback IPv4 interface")


async def _call(lab: Lab, speech, alice_ice: IceSettings | None, bob_ice: IceSettings | None):
    _, samples = speech
    events: list[CallEvent] = []
    alice = Phone(replace(lab.settings("alice"), ice=alice_ice), on_event=events.append)
    bob = Phone(replace(lab.settings("bob"), ice=bob_ice), on_event=events.append)
    async with alice, bob:
        await alice.register()
        await bob.register()
        bob_sink, alice_sink = ArraySink(), ArraySink()
        reply = np.roll(samples, len(samples) // 3)

        async def answer() -> object:
            incoming = await bob.next_incoming(10)
            return await incoming.accept(ArraySource(reply), bob_sink)

        answering = asyncio.create_task(answer())
        try:
            call = await alice.call(lab.uri("bob"), ArraySource(samples), alice_sink, timeout=20)
        except Exception:
            print("EVENTS", [e.to_json() for e in events])
            print("ANSWER", answering.done() and answering.exception())
            raise
        bob_call = await asyncio.wait_for(answering, 20)
        await asyncio.sleep(len(samples) / 48000 + 0.6)
        status = (call.status(), bob_call.status())  # type: ignore[attr-defined]
        await call.hangup()
        await asyncio.wait_for(bob_call.ended(), 5)  # type: ignore[attr-defined]
    assert compare(samples, bob_sink.samples()).ok()
    assert compare(reply, alice_sink.samples()).ok()
    return status, events


@needs_interface
async def test_secure_call_over_ice_host_candidates(lab: Lab, speech) -> None:
    (alice, bob), events = await _call(lab, speech, IceSettings(), IceSettings())
    assert alice["security"] == bob["security"] == "MIKEY-SAKKE" and alice["key_id"] == bob["key_id"]
    assert alice["ice"] == bob["ice"] == "host" and alice["srtp_failures"] == bob["srtp_failures"] == 0
    ice = [e for e in events if isinstance(e, IceChanged)]
    assert sorted((e.state, e.controlling) for e in ice) == [
        ("checking", False), ("checking", True), ("connected", False), ("connected", True)]
    assert {e.path for e in ice if e.state == "connected"} == {"host"}


async def test_ice_caller_and_plain_callee_fall_back_to_plain_srtp(lab: Lab, speech) -> None:
    (alice, bob), events = await _call(lab, speech, IceSettings(), None)
    assert alice["security"] == "MIKEY-SAKKE" and "ice" not in alice and "ice" not in bob
    assert not [e for e in events if isinstance(e, IceChanged)]
