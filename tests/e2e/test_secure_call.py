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


async def test_sakke_tables_are_built_in_the_background_when_keys_load(lab: Lab) -> None:
    bob = Phone(lab.settings("bob"))
    async with bob:
        responder = bob._mikey_responder()  # the one start() made as the keys loaded
        await asyncio.wait_for(bob.keys_ready(), 10)  # the background build, before any call
        assert responder.precomputed and responder.prepared_periods == tuple(
            sorted(k.key_period_no for k in responder.key_sets))
        assert bob._mikey_responder() is responder  # the first call uses these tables


async def test_first_call_finds_the_media_stack_and_eccsi_ready_after_keys_ready(lab: Lab, monkeypatch) -> None:
    """Issue 15: once start() and keys_ready() return, the once-per-process costs of a first call are paid —
    the media stack (codecs, SRTP contexts, a UDP socket) and the ECCSI backend for the KMS's KPAK."""
    from crypto import eccsi
    from softphone.media import warmup

    readied: list[bytes] = []
    real = eccsi.prepare_verification
    monkeypatch.setattr(eccsi, "prepare_verification", lambda kpak: (readied.append(kpak), real(kpak))[1])
    bob = Phone(lab.settings("bob"))
    async with bob:
        await asyncio.wait_for(bob.keys_ready(), 10)
        assert bob._media_warmed is not None and bob._media_warmed.done()  # this phone's start ran it
        assert warmup.warm()
        assert bob._mikey_responder().kms.kpak in readied
