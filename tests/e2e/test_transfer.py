"""Call waiting and call transfer between three of our phones through Kamailio (TLS), MIKEY-SAKKE keyed.

- call waiting: bob is in a call with alice, carol calls: it rings (180, not 486), bob answers and
  alice is put on hold (re-INVITE a=sendonly);
- blind transfer: bob REFERs alice to carol (RFC 3515), alice calls carol with a new I_MESSAGE,
  NOTIFY sipfrag 100 then 200, bob's call ends;
- attended transfer: bob holds alice, consults carol, then REFERs alice with Replaces (RFC 3891): carol's
  phone answers alice's INVITE in place of bob's call; both of bob's calls end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.calls.call import Call
from softphone.calls.events import CallEvent, CallWaiting, Ringing, Transfer
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource

pytestmark = pytest.mark.slow


def _audio() -> tuple[ArraySource, ArraySink]:
    tone = (np.sin(np.arange(48000 * 4) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    return ArraySource(tone), ArraySink()


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"not {what} within {timeout} s")
        await asyncio.sleep(0.02)


async def _connect(caller: Phone, callee: Phone, target: str) -> tuple[Call, Call]:
    async def answer() -> Call:
        incoming = await callee.next_incoming(10)
        return await incoming.accept(*_audio())

    answering = asyncio.create_task(answer())
    call = await caller.call(target, *_audio(), timeout=10)
    return call, await asyncio.wait_for(answering, 10)


@contextlib.asynccontextmanager
async def _alice_talking_to_bob(lab: Lab, alice: Phone) -> AsyncIterator[tuple[Phone, Call, Call]]:
    """``alice`` and a plain bob registered and in a call alice placed: (bob, alice's call, bob's call)."""
    bob = Phone(lab.settings("bob"))
    async with alice, bob:
        await alice.register()
        await bob.register()
        a_call, b_call = await _connect(alice, bob, lab.uri("bob"))
        yield bob, a_call, b_call


def _received(call: Call) -> int:
    return int(call.status().get("packets_received") or 0)


async def test_call_waiting_and_blind_and_attended_transfer(lab: Lab) -> None:
    events: list[CallEvent] = []
    alice = Phone(lab.settings("alice"), on_event=events.append)
    bob = Phone(lab.settings("bob"), on_event=events.append)
    carol = Phone(lab.settings("carol"), on_event=events.append)
    async with alice, bob, carol:
        for phone in (alice, bob, carol):
            await phone.register()

        # --- call waiting -------------------------------------------------------------------------
        a_call, b_call = await _connect(alice, bob, lab.uri("bob"))
        placing = asyncio.create_task(carol.call(lab.uri("bob"), *_audio(), timeout=15))
        waiting = await bob.next_incoming(10)
        await _until(lambda: any(isinstance(e, CallWaiting) and e.active == b_call.call_id for e in events), 5,
                     "call-waiting event")
        await _until(lambda: any(isinstance(e, Ringing) for e in events), 5, "carol hearing ringing")
        bc_call = await waiting.accept(*_audio(), hold_others=True)
        c_call = await asyncio.wait_for(placing, 10)
        assert b_call.held                                           # bob's hold re-INVITE was answered
        await _until(lambda: a_call.negotiated is not None and a_call.negotiated.direction == "recvonly", 5,
                     "alice's side on hold (recvonly)")
        before = _received(c_call)
        await _until(lambda: _received(c_call) > before + 10, 5, "carol hearing bob")
        await bc_call.hangup()
        await asyncio.wait_for(c_call.ended(), 5)

        # --- blind transfer: bob sends alice to carol ------------------------------------------
        old_key = a_call.negotiated.key_id
        answering = asyncio.create_task(carol.next_incoming(15))
        transferring = asyncio.create_task(bob.transfer(b_call, lab.uri("carol")))
        incoming = await answering
        assert incoming.peer_identity == lab.uri("alice")           # carol verified alice's new I_MESSAGE
        c_call = await incoming.accept(*_audio())
        await asyncio.wait_for(transferring, 15)
        await asyncio.wait_for(a_call.ended(), 5)                    # bob hung up the old call
        ac_call = next(c for c in alice.active_calls())
        assert ac_call.peer == lab.uri("carol") and ac_call.negotiated is not None
        assert ac_call.negotiated.key_id != old_key and ac_call.negotiated.key_id == c_call.negotiated.key_id  # type: ignore[union-attr]
        before = _received(c_call)
        await _until(lambda: _received(c_call) > before + 10, 5, "carol hearing alice after the transfer")
        mine = [e for e in events if isinstance(e, Transfer) and e.call_id == b_call.call_id]
        assert [(e.role, e.status) for e in mine if e.role == "transferor"][0] == ("transferor", 202)
        assert ("transferor", 200, True) in [(e.role, e.status, e.final) for e in mine]
        assert ("transferee", 200, True) in [(e.role, e.status, e.final) for e in mine]
        await ac_call.hangup()
        await asyncio.wait_for(c_call.ended(), 5)

        # --- attended transfer: bob holds alice, consults carol, then joins them ------------------
        a_call, b_call = await _connect(alice, bob, lab.uri("bob"))
        old_key = a_call.negotiated.key_id  # type: ignore[union-attr]
        await b_call.hold()
        consult, c_consult = await _connect(bob, carol, lab.uri("carol"))
        await bob.transfer_attended(b_call, consult)
        await asyncio.wait_for(a_call.ended(), 5)
        await asyncio.wait_for(c_consult.ended(), 5)                 # replaced at carol by alice's call
        assert consult.is_ended and b_call.is_ended
        await _until(lambda: bool(carol.active_calls()) and bool(alice.active_calls()), 10, "alice-carol call")
        ac_call, c_call = alice.active_calls()[0], carol.active_calls()[0]
        assert ac_call.call_id == c_call.call_id and c_call.peer == lab.uri("alice")
        assert ac_call.negotiated.key_id != old_key                   # type: ignore[union-attr]
        assert c_call.negotiated.peer_identity == lab.uri("alice")    # type: ignore[union-attr]
        before = _received(c_call)
        await _until(lambda: _received(c_call) > before + 10, 5, "carol hearing alice (attended)")
        assert any(isinstance(e, Transfer) and e.role == "target" and e.call_id == c_consult.call_id for e in events)
        await ac_call.hangup()


async def test_transfer_declined_keeps_the_call(lab: Lab) -> None:
    """A phone set not to follow transfers answers the REFER's subscription with 603: the transferor's
    transfer fails with that status and both keep their call, keys unchanged."""
    import dataclasses

    from softphone.calls.errors import CallError
    alice = Phone(dataclasses.replace(lab.settings("alice"), accept_transfers=False))
    async with _alice_talking_to_bob(lab, alice) as (bob, a_call, b_call):
        key = a_call.negotiated.key_id  # type: ignore[union-attr]
        with pytest.raises(CallError, match="failed: 603"):
            await bob.transfer(b_call, lab.uri("carol"))
        assert not a_call.is_ended and not b_call.is_ended
        assert a_call.negotiated.key_id == key  # type: ignore[union-attr]
        before = _received(a_call)
        await _until(lambda: _received(a_call) > before + 10, 5, "the call still carrying media")
        await b_call.hangup()


async def test_failed_blind_transfer_keeps_the_call_and_reports_the_real_status(lab: Lab) -> None:
    """Bob transfers alice to carol, who is not registered: alice's call to carol gets 404, alice tells
    bob so (NOTIFY sipfrag 404, not a generic 503) and keeps the original call (RFC 5589 §6.1): its media
    restarts on the same keys and audio flows both ways again."""
    from softphone.calls.errors import CallError
    events: list[CallEvent] = []
    alice = Phone(lab.settings("alice"), on_event=events.append)
    async with _alice_talking_to_bob(lab, alice) as (bob, a_call, b_call):
        key = a_call.negotiated.key_id  # type: ignore[union-attr]
        with pytest.raises(CallError, match="failed: 404"):
            await bob.transfer(b_call, lab.uri("carol"))
        assert not a_call.is_ended and not b_call.is_ended
        await _until(lambda: [e.status for e in events if isinstance(e, Transfer)] == [100, 404], 5,
                     "alice reporting the transfer's 404")
        assert a_call.negotiated.key_id == key  # type: ignore[union-attr]
        before = _received(b_call)
        await _until(lambda: _received(b_call) > before + 10, 5, "bob hearing alice again")
        await _until(lambda: _received(a_call) > 10, 5, "alice hearing bob again")
        await b_call.hangup()
        await a_call.ended(5)
