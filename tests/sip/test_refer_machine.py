"""REFER and its NOTIFYs (RFC 3515) in the INVITE machine: exact responses, events and requests."""

from __future__ import annotations

import pytest

from softphone.sip.errors import SessionStateError
from softphone.sip.invite import CallState, InviteMachine, SendResponse, sipfrag_status
from softphone.sip.transaction import Timers

from .test_session_machine import SDP, headers, in_dialog, invite

RFC = Timers()


def confirmed() -> InviteMachine:
    """Bob's side of a confirmed call (he answered alice's INVITE, the ACK came)."""
    m = InviteMachine(invite(), False, "b1", RFC, headers=headers)
    m.answer(SDP, 0.0)
    m.receive(in_dialog("ACK", 1), 0.1)
    assert m.state is CallState.CONFIRMED
    return m


def statuses(step_actions: list[object]) -> list[int]:
    return [a.response.status for a in step_actions if isinstance(a, SendResponse)]


def test_refer_is_accepted_with_202_and_reported() -> None:
    m = confirmed()
    req = in_dialog("REFER", 2)
    req.headers.add("Refer-To", "<sip:carol@lab.test>")
    step = m.receive(req, 1.0)
    assert statuses(step.actions) == [202] and [e.kind for e in step.events] == ["refer"]
    assert step.events[0].message is req


def test_refer_needs_one_refer_to_and_a_confirmed_call() -> None:
    m = confirmed()
    two = in_dialog("REFER", 2)
    two.headers.add("Refer-To", "<sip:carol@lab.test>")
    two.headers.add("Refer-To", "<sip:dave@lab.test>")
    assert statuses(m.receive(two, 1.0).actions) == [400]
    assert statuses(m.receive(in_dialog("REFER", 3), 1.0).actions) == [400]
    early = InviteMachine(invite(), False, "b1", RFC, headers=headers)
    req = in_dialog("REFER", 2)
    req.headers.add("Refer-To", "<sip:carol@lab.test>")
    assert statuses(early.receive(req, 1.0).actions) == [481]


def test_notify_of_refer_gets_200_other_events_489() -> None:
    m = confirmed()
    notify = in_dialog("NOTIFY", 2, b"SIP/2.0 180 Ringing\r\n")
    notify.headers.add("Event", "refer;id=2")
    step = m.receive(notify, 1.0)
    assert statuses(step.actions) == [200] and [e.kind for e in step.events] == ["notify"]
    other = in_dialog("NOTIFY", 3)
    other.headers.add("Event", "dialog")
    step = m.receive(other, 1.0)
    assert statuses(step.actions) == [489] and step.events == []


def test_refer_and_notify_requests_we_build() -> None:
    m = confirmed()
    refer = m.refer("<sip:carol@lab.test?Replaces=abc%3Bto-tag%3Dx%3Bfrom-tag%3Dy>", "<sip:bob@lab.test>")
    assert refer.method == "REFER" and refer.cseq == (1, "REFER")
    assert refer.headers.get("Refer-To") == "<sip:carol@lab.test?Replaces=abc%3Bto-tag%3Dx%3Bfrom-tag%3Dy>"
    assert refer.headers.get("Referred-By") == "<sip:bob@lab.test>" and refer.to.tag == "a1"
    progress = m.notify(100, "Trying", final=False)
    done = m.notify(200, "OK", final=True)
    assert progress.cseq == (2, "NOTIFY") and done.cseq == (3, "NOTIFY")
    assert progress.headers.get("Subscription-State") == "active;expires=60"
    assert done.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert done.headers.get("Event") == "refer" and done.headers.get("Content-Type") == "message/sipfrag;version=2.0"
    assert sipfrag_status(progress.body) == 100 and sipfrag_status(done.body) == 200
    unconfirmed = InviteMachine(invite(), False, "b1", RFC, headers=headers)
    with pytest.raises(SessionStateError):
        unconfirmed.refer("<sip:carol@lab.test>")


def test_sipfrag_status_line() -> None:
    assert sipfrag_status(b"SIP/2.0 486 Busy Here\r\n") == 486
    assert sipfrag_status(b"SIP/2.0 200 OK") == 200
    assert sipfrag_status(b"INVITE sip:x SIP/2.0\r\n") is None
    assert sipfrag_status(b"") is None


async def test_replaces_names_a_dialog_or_gets_481() -> None:
    """An INVITE with Replaces (RFC 3891) is matched against the callee's confirmed dialogs: to-tag is
    the callee's local tag, from-tag the remote one; an unknown dialog gets 481."""
    import asyncio

    from softphone.sip.errors import CallFailed
    from softphone.sip.ua import UserAgent

    from .conftest import sdp_offer, ua_config

    async with UserAgent(ua_config("alice")) as a, UserAgent(ua_config("bob")) as b:
        first = await a.invite(f"sip:bob@127.0.0.1:{b.port}", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.answer(sdp_offer(41000))
        await first.answered(5)
        assert incoming.dialog is not None
        d = incoming.dialog
        wrong = await a.invite(f"sip:bob@127.0.0.1:{b.port}", sdp_offer(),
                               headers=[("Replaces", f"{d.call_id};to-tag=nope;from-tag={d.remote_tag}")])
        with pytest.raises(CallFailed) as refused:
            await wrong.answered(5)
        assert refused.value.status == 481
        right = await a.invite(f"sip:bob@127.0.0.1:{b.port}", sdp_offer(),
                               headers=[("Replaces", f"{d.call_id};to-tag={d.local_tag};from-tag={d.remote_tag}")])
        replacing = await asyncio.wait_for(b.incoming.get(), 5)
        assert replacing.replaces is incoming and replacing.call_id == right.call_id
        await replacing.reject(603)
