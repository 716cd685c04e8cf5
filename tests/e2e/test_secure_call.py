"""Two of our phones through Kamailio over TLS, keys from a real HTTPS KMS: MIKEY-SAKKE, SRTP-GCM, speech both ways."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from softphone.calls.events import CallEvent
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource

pytestmark = pytest.mark.slow


async def test_secure_call_speech_hold_rekey(lab: Lab, speech) -> None:
    _, samples = speech
    events: list[CallEvent] = []
    alice = Phone(lab.settings("alice"), on_event=events.append)
    bob = Phone(lab.settings("bob"), on_event=events.append)
    async with alice, bob:
        await alice.register()
        await bob.register()
        bob_sink, alice_sink = ArraySink(), ArraySink()
        reply = np.roll(samples, len(samples) // 3)

        async def answer() -> object:
            incoming = await bob.next_incoming(10)
            assert incoming.peer_identity == lab.uri("alice")    # verified by ECCSI before ringing
            return await incoming.accept(ArraySource(reply), bob_sink)

        answering = asyncio.create_task(answer())
        call = await alice.call(lab.uri("bob"), ArraySource(samples), alice_sink, timeout=10)
        bob_call = await asyncio.wait_for(answering, 10)
        assert call.negotiated is not None and bob_call.negotiated is not None  # type: ignore[attr-defined]
        assert call.negotiated.security == "MIKEY-SAKKE" and call.negotiated.suite == "AEAD_AES_128_GCM"
        assert call.negotiated.key_id == bob_call.negotiated.key_id            # type: ignore[attr-defined]
        assert bob_call.negotiated.peer_identity == lab.uri("alice")           # type: ignore[attr-defined]
        await asyncio.sleep(len(samples) / 48000 + 0.6)

        key_id = call.negotiated.key_id
        await call.hold()
        assert call.negotiated.key_id == key_id and bob_call.negotiated.direction == "recvonly"  # type: ignore[attr-defined]
        await call.resume()
        assert call.negotiated.key_id == key_id
        await call.rekey()
        await asyncio.sleep(0.3)
        assert call.negotiated.key_id != key_id
        assert bob_call.negotiated.key_id == call.negotiated.key_id               # type: ignore[attr-defined]
        before = bob_call.status()["packets_received"]                             # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        after = bob_call.status()                                                  # type: ignore[attr-defined]
        assert after["packets_received"] > before + 10 and after["srtp_failures"] == 0
        await call.hangup()
        await asyncio.wait_for(bob_call.ended(), 5)                                # type: ignore[attr-defined]

    heard_by_bob = compare(samples, bob_sink.samples())
    heard_by_alice = compare(reply, alice_sink.samples())
    assert heard_by_bob.ok(), heard_by_bob
    assert heard_by_alice.ok(), heard_by_alice
    kinds = [e.kind for e in events]
    assert {"incoming", "answered", "media", "held", "resumed", "rekeyed", "ended", "peer-sending"} <= set(kinds)
    # the caller never claims the callee verified (MIKEY-SAKKE is one-way); the callee verified the caller
    mine = [e.to_json() for e in events if getattr(e, "call_id", None) == call.call_id]
    answered = [d for d in mine if d["event"] == "answered"]
    assert {d["peer_assurance"] for d in answered if d.get("peer") == lab.uri("bob")} <= {"keyed-to", "peer-sending"}
    sending = [d for d in mine if d["event"] == "peer-sending"]
    assert sending and all(d["packets_received"] > 0 and d["peer"] == lab.uri("bob") for d in sending)
    incoming = next(d for d in mine if d["event"] == "incoming")
    assert incoming["peer_assurance"] == "verified-by-eccsi"
