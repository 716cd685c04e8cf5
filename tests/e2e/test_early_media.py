"""183 early media between two of our phones through Kamailio, MIKEY-SAKKE keyed: the callee plays
audio before answering, the caller hears it, and the answer continues the same media and keys."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.calls.events import Answered, CallEvent, EarlyMedia, MediaStarted
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource

pytestmark = pytest.mark.slow


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"not {what} within {timeout} s")
        await asyncio.sleep(0.02)


async def test_early_media_before_answer_then_same_keys(lab: Lab, speech) -> None:
    _, samples = speech
    events: list[CallEvent] = []
    alice = Phone(lab.settings("alice"), on_event=events.append)
    bob = Phone(lab.settings("bob"), on_event=events.append)
    async with alice, bob:
        await alice.register()
        await bob.register()
        alice_sink = ArraySink()
        placing = asyncio.create_task(alice.call(lab.uri("bob"), ArraySource(np.zeros(48000, np.int16)),
                                                 alice_sink, timeout=20))
        incoming = await bob.next_incoming(10)
        bob_call = await incoming.early_media(ArraySource(samples), ArraySink())
        await _until(lambda: any(isinstance(e, EarlyMedia) and e.call_id == bob_call.call_id
                                 and e.status.peer == lab.uri("bob") for e in events), 10, "early media at alice")
        assert not placing.done()                                    # still unanswered
        await _until(lambda: len(alice_sink.samples()) > 8000, 10, "early audio heard by alice")
        answered = await incoming.accept(ArraySource(samples), ArraySink())
        assert answered is bob_call
        call = await asyncio.wait_for(placing, 10)
        assert call.negotiated is not None and bob_call.negotiated is not None
        assert call.negotiated.key_id == bob_call.negotiated.key_id and call.negotiated.security == "MIKEY-SAKKE"
        mine = [e for e in events if e.call_id == call.call_id]
        kinds = [type(e) for e in mine]
        assert kinds.index(EarlyMedia) < kinds.index(Answered)
        media_at_alice = [e for e in mine if isinstance(e, MediaStarted) and e.status.peer == lab.uri("bob")]
        assert len(media_at_alice) == 1                              # the answer did not restart media
        await call.hangup()
        await asyncio.wait_for(bob_call.ended(), 5)
