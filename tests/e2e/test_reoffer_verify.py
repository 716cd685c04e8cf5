"""A peer's rekey (a re-INVITE with a new I_MESSAGE) is verified like an initial offer: in a thread, under
the phone's verify lock that guards the shared replay cache; a forged one ends the call, the keys unchanged."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.calls.events import CallEvent
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource

pytestmark = pytest.mark.slow


async def test_rekey_verified_off_the_loop_under_the_verify_lock(lab: Lab, speech) -> None:
    _, samples = speech
    events: list[CallEvent] = []
    alice = Phone(lab.settings("alice"))
    bob = Phone(lab.settings("bob"), on_event=events.append)
    async with alice, bob:
        await alice.register()
        await bob.register()
        responder = bob._mikey_responder()
        seen: list[tuple[bool, bool]] = []
        loop_thread = threading.current_thread()
        real = responder.process

        def process(*args: Any, **kwargs: Any) -> Any:
            seen.append((threading.current_thread() is not loop_thread, bob._verify_lock.locked()))
            return real(*args, **kwargs)

        responder.process = process  # type: ignore[method-assign]

        async def answer() -> Any:
            incoming = await bob.next_incoming(10)
            return await incoming.accept(ArraySource(samples), ArraySink())

        answering = asyncio.create_task(answer())
        call = await alice.call(lab.uri("bob"), ArraySource(samples), ArraySink(), timeout=10)
        bob_call = await asyncio.wait_for(answering, 10)
        assert seen == [(True, True)]                     # the initial offer: in a thread, under the lock
        await call.hold()                                  # same I_MESSAGE: no verification at all
        await call.resume()
        assert len(seen) == 1
        key_id = bob_call.negotiated.key_id
        await call.rekey()                                 # a new I_MESSAGE
        for _ in range(100):
            if "rekeyed" in [e.kind for e in events]:
                break
            await asyncio.sleep(0.05)
        assert seen == [(True, True), (True, True)]       # the rekey went the same way
        assert bob_call.negotiated.key_id == call.negotiated.key_id != key_id
        assert "rekeyed" in [e.kind for e in events]

        # a forged rekey (signature bytes flipped) is refused after the answer: the call ends, keys unchanged
        keys_before = bob_call.negotiated.srtp
        offer = call.offerer.offer("sendrecv", rekey=True)
        forged = _flip_signature(offer)
        await call.session.reinvite(forged, timeout=10)
        await asyncio.wait_for(bob_call.ended(), 10)
        failed = [e for e in events if e.kind == "failed"]
        assert failed and "rekey refused: MIKEY-SAKKE" in failed[-1].to_json()["reason"]
        assert bob_call.negotiated.srtp == keys_before
        await asyncio.wait_for(call.ended(), 10)
    assert np.size(samples) > 0


def _flip_signature(offer: bytes) -> bytes:
    """The offer with the last octet of its I_MESSAGE (inside the ECCSI signature) changed."""
    import base64

    lines = offer.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.startswith(b"a=key-mgmt:mikey "):
            data = bytearray(base64.b64decode(line.split(b" ", 1)[1]))
            data[-1] ^= 0x01
            lines[i] = b"a=key-mgmt:mikey " + base64.b64encode(bytes(data))
    return b"\r\n".join(lines)
