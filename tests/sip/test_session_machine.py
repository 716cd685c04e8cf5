"""The INVITE session machine (RFC 3261 §9, §13-15) on a virtual clock: exact, no sockets, no sleeps."""

from __future__ import annotations

import pytest

from softphone.sip.errors import CallFailed, SessionStateError
from softphone.sip.invite import (
    CallState,
    InviteMachine,
    Reject,
    SendAck,
    SendCancel,
    SendRequest,
    SendResponse,
    SessionAction,
    SessionEvent,
    SessionStep,
    glare_delay,
)
from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.transaction import Timers

RFC = Timers()
LAB = Timers(t1=0.1, t2=0.4, t4=0.5, d=2.0)
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def headers(content_type: str | None) -> list[tuple[str, str]]:
    out = [("Contact", "<sip:me@127.0.0.1:5080>")]
    return out + ([("Content-Type", content_type)] if content_type else [])


def invite(cseq: int = 1, to_tag: str = "", body: bytes = SDP) -> Request:
    data = (f"INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKinv{cseq}\r\n"
            f"From: <sip:alice@lab.test>;tag=a1\r\nTo: <sip:bob@lab.test>{to_tag}\r\nCall-ID: call-1@lab\r\n"
            f"CSeq: {cseq} INVITE\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def in_dialog(method: str, cseq: int, body: bytes = b"") -> Request:
    """A request alice sends inside the dialog bob's machine created (To tag b1)."""
    req = invite(cseq, ";tag=b1", body)
    text = req.encode().replace(b"INVITE sip:", f"{method} sip:".encode(), 1)
    text = text.replace(f"CSeq: {cseq} INVITE".encode(), f"CSeq: {cseq} {method}".encode())
    msg = parse_message(text)
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, tag: str = "b1", body: bytes = b"") -> Response:
    extra = [("Contact", "<sip:bob@127.0.0.1:5080>")] if 100 < status < 300 else None
    return make_response(req, status, to_tag=tag if status > 100 else None, body=body, extra=extra)


def outgoing(timers: Timers = RFC, rng: float = 0.0) -> InviteMachine:
    return InviteMachine(invite(), True, "a1", timers, headers=headers, rng=lambda: rng)


def incoming(timers: Timers = RFC, reliable: bool = False, rng: float = 0.0) -> InviteMachine:
    return InviteMachine(invite(), False, "b1", timers, headers=headers, reliable=reliable, rng=lambda: rng)


def confirmed_caller(timers: Timers = RFC, rng: float = 0.0) -> InviteMachine:
    m = outgoing(timers, rng)
    m.receive(reply(m.invite, 200, body=SDP), 0.0)
    assert m.state is CallState.CONFIRMED
    return m


def kinds(step: SessionStep) -> list[str]:
    return [e.kind for e in step.events]


def run(m: InviteMachine, until: float) -> list[tuple[float, SessionAction]]:
    """Advance to ``until`` deadline by deadline; every action with the time it was produced."""
    out: list[tuple[float, SessionAction]] = []
    while (deadline := m.deadline) is not None and deadline <= until:
        out += [(round(deadline, 3), a) for a in m.advance(deadline).actions]
    return out


def statuses(actions: list[tuple[float, SessionAction]]) -> list[tuple[float, int]]:
    return [(t, a.response.status) for t, a in actions if isinstance(a, SendResponse)]


# -- the UAS retransmits its 2xx until the ACK (§13.3.1.4) -----------------------------------------
@pytest.mark.parametrize(("timers", "times"), [
    (RFC, [0.5, 1.5, 3.5, 7.5, 11.5]),
    (LAB, [0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3]),
])
def test_2xx_is_retransmitted_t1_doubling_capped_at_t2_until_the_ack(timers: Timers, times: list[float]) -> None:
    m = incoming(timers)
    first = m.answer(SDP, 0.0)
    assert [type(a) for a in first.actions] == [SendResponse] and kinds(first) == ["state"]
    assert m.timers == {"2xx": timers.t1, "2xx-timeout": 64 * timers.t1}
    ack_at = 12.0 if timers is RFC else 6.35
    sent = run(m, ack_at)
    assert statuses(sent) == [(t, 200) for t in times]
    step = m.receive(in_dialog("ACK", 1), ack_at)
    assert kinds(step) == ["acked"] and m.deadline is None and m.state is CallState.CONFIRMED
    assert run(m, 100.0) == []


@pytest.mark.parametrize(("timers", "count", "last", "give_up"), [(RFC, 10, 31.5, 32.0), (LAB, 17, 6.3, 6.4)])
def test_no_ack_by_64_t1_ends_the_call_with_bye(timers: Timers, count: int, last: float, give_up: float) -> None:
    m = incoming(timers)
    m.answer(SDP, 0.0)
    sent = run(m, give_up - 0.001)
    assert len(statuses(sent)) == count and sent[-1][0] == last
    assert m.deadline == give_up
    step = m.advance(give_up)
    assert kinds(step) == ["ack-timeout", "state"] and m.state is CallState.TERMINATED
    assert [a.request.method for a in step.actions if isinstance(a, SendRequest)] == ["BYE"]


def test_2xx_over_a_reliable_transport_is_sent_once_and_still_waits_64_t1_for_the_ack() -> None:
    m = incoming(RFC, reliable=True)
    m.answer(SDP, 0.0)
    assert m.timers == {"2xx-timeout": 32.0}
    assert [a for a in run(m, 31.999)] == []
    assert kinds(m.advance(32.0)) == ["ack-timeout", "state"]


def test_a_retransmitted_invite_gets_the_2xx_again_until_the_ack() -> None:
    m = incoming()
    ok = m.answer(SDP, 0.0).actions[0]
    assert m.receive(invite(), 0.2).actions == [ok]
    m.receive(in_dialog("ACK", 1), 0.3)
    assert m.receive(invite(), 0.4).actions == []


# -- CANCEL races (§9) ----------------------------------------------------------------------------
def test_cancel_before_any_1xx_waits_for_the_1xx_then_the_487_ends_the_call() -> None:
    m = outgoing()
    assert m.cancel(0.1) == SessionStep()                      # §9.1: no CANCEL before a provisional
    step = m.receive(reply(m.invite, 100), 0.2)
    cancels = [a.request for a in step.actions if isinstance(a, SendCancel)]
    assert len(cancels) == 1 and cancels[0].cseq == (1, "CANCEL")
    assert cancels[0].top_via.branch == "z9hG4bKinv1"           # same branch as the INVITE (§9.1)
    assert m.receive(reply(m.invite, 180), 0.3).actions == []   # sent once only
    step = m.receive(reply(m.invite, 487), 0.4)
    assert kinds(step) == ["failed", "state"] and step.events[0].error is not None
    assert step.events[0].error.status == 487 and m.state is CallState.TERMINATED


def test_cancel_after_a_1xx_goes_out_at_once() -> None:
    m = outgoing()
    m.receive(reply(m.invite, 180), 0.1)
    step = m.cancel(0.2)
    assert [type(a) for a in step.actions] == [SendCancel] and m.state is CallState.EARLY


def test_a_200_crossing_our_cancel_is_acked_then_ended_with_bye() -> None:
    m = outgoing()
    m.receive(reply(m.invite, 180), 0.1)
    m.cancel(0.2)
    step = m.receive(reply(m.invite, 200, body=SDP), 0.3)
    assert [type(a) for a in step.actions] == [SendAck, SendRequest]
    ack, bye = step.actions
    assert isinstance(ack, SendAck) and ack.request is not None and ack.request.cseq == (1, "ACK")
    assert isinstance(bye, SendRequest) and bye.request.method == "BYE" and bye.request.cseq == (2, "BYE")
    assert m.history == [CallState.CALLING, CallState.EARLY, CallState.CONFIRMED, CallState.TERMINATED]
    assert kinds(step) == ["state", "answered", "state"]


def test_cancel_reaching_an_unanswered_uas_gets_487_and_one_reaching_an_answered_call_nothing() -> None:
    m = incoming()
    step = m.receive(in_dialog("CANCEL", 1), 0.1)
    assert statuses([(0.1, a) for a in step.actions]) == [(0.1, 487)] and m.state is CallState.TERMINATED
    answered = incoming()
    answered.answer(SDP, 0.0)
    assert answered.receive(in_dialog("CANCEL", 1), 0.1) == SessionStep()
    assert answered.state is CallState.CONFIRMED


def test_cancel_in_the_wrong_state_names_the_error() -> None:
    with pytest.raises(SessionStateError, match="only an unanswered outgoing call"):
        incoming().cancel(0.0)
    with pytest.raises(SessionStateError, match="only an unanswered outgoing call"):
        confirmed_caller().cancel(0.0)


def test_timer_b_on_the_invite_fails_the_call_with_408() -> None:
    m = outgoing()
    step = m.transaction_timeout(m.invite, 32.0)
    assert kinds(step) == ["failed", "state"] and step.events[0].error is not None
    assert step.events[0].error.status == 408 and m.state is CallState.TERMINATED


# -- re-INVITE and glare (§14) ----------------------------------------------------------------------
@pytest.mark.parametrize(("owner", "draw", "delay"), [
    (True, 0.0, 2.10), (True, 0.5, 3.05), (True, 0.999999, 4.00),
    (False, 0.0, 0.00), (False, 0.5, 1.00), (False, 0.999999, 2.00),
])
def test_glare_retry_window_is_2_1_to_4_s_for_the_call_id_owner_else_0_to_2_s(owner: bool, draw: float,
                                                                            delay: float) -> None:
    assert glare_delay(owner, lambda: draw) == delay


def test_a_reinvite_arriving_while_ours_is_pending_gets_491() -> None:
    m = confirmed_caller()
    ours = m.reinvite(SDP, 1.0)
    assert [a.request.cseq for a in ours.actions if isinstance(a, SendRequest)] == [(2, "INVITE")]
    theirs = invite(1, ";tag=a1")  # bob's re-INVITE to alice: alice's machine sees it as in-dialog
    theirs.headers.set("CSeq", "7 INVITE")
    step = m.receive(theirs, 1.1)
    assert statuses([(1.1, a) for a in step.actions]) == [(1.1, 491)]
    with pytest.raises(CallFailed) as err:
        m.reinvite(SDP, 1.2)                                      # one re-INVITE at a time
    assert err.value.status == 491


@pytest.mark.parametrize(("caller", "draw", "retry_at"), [(True, 0.0, 12.1), (True, 0.999999, 14.0),
                                                          (False, 0.0, 10.0), (False, 0.5, 11.0)])
def test_491_to_our_reinvite_retries_once_after_the_14_1_window(caller: bool, draw: float, retry_at: float) -> None:
    if caller:
        m = confirmed_caller(rng=draw)
    else:
        m = incoming(rng=draw)
        m.answer(SDP, 0.0)
        m.receive(in_dialog("ACK", 1), 0.1)
    sent = m.reinvite(SDP, 9.9, retry_glare=True).actions[0]
    assert isinstance(sent, SendRequest)
    step = m.receive(reply(sent.request, 491), 10.0)
    assert kinds(step) == ["reinvite-failed"] and step.events[0].error is not None
    assert step.events[0].error.status == 491
    assert m.timers == {"glare": retry_at}
    retry = run(m, 20.0)
    assert [(t, a.request.method, a.request.cseq[0]) for t, a in retry if isinstance(a, SendRequest)] == [
        (retry_at, "INVITE", sent.request.cseq[0] + 1)]
    resent = retry[0][1]
    assert isinstance(resent, SendRequest)
    again = m.receive(reply(resent.request, 491), retry_at + 0.1)
    assert kinds(again) == ["reinvite-failed"] and m.deadline is None      # retried once only


def test_491_without_retry_reports_and_schedules_nothing() -> None:
    m = confirmed_caller()
    sent = m.reinvite(SDP, 1.0).actions[0]
    assert isinstance(sent, SendRequest)
    step = m.receive(reply(sent.request, 491), 1.1)
    assert kinds(step) == ["reinvite-failed"] and m.deadline is None and m.state is CallState.CONFIRMED


@pytest.mark.parametrize("status", [408, 481])
def test_408_or_481_to_a_reinvite_ends_the_dialog(status: int) -> None:
    m = confirmed_caller()
    sent = m.reinvite(SDP, 1.0).actions[0]
    assert isinstance(sent, SendRequest)
    step = m.receive(reply(sent.request, status), 1.1)
    assert [a.request.method for a in step.actions if isinstance(a, SendRequest)] == ["BYE"]
    assert m.state is CallState.TERMINATED


def test_a_rejected_reoffer_gets_the_handlers_status_and_warning_and_keeps_the_call() -> None:
    m = incoming()
    m.warning = lambda text: f'399 lab "{text}"'
    m.answer(SDP, 0.0)
    m.receive(in_dialog("ACK", 1), 0.1)

    def refuse(body: bytes) -> bytes:
        raise Reject(488, "no common crypto suite")
    m.on_offer = refuse
    step = m.receive(in_dialog("INVITE", 2, SDP), 1.0)
    [action] = step.actions
    assert isinstance(action, SendResponse) and action.response.status == 488
    assert action.response.headers.get("Warning") == '399 lab "no common crypto suite"'
    assert m.state is CallState.CONFIRMED and m.deadline is None


def test_an_accepted_reoffer_is_answered_and_its_2xx_retransmitted_until_its_ack() -> None:
    m = incoming()
    m.answer(SDP, 0.0)
    m.receive(in_dialog("ACK", 1), 0.1)
    m.on_offer = lambda body: b"answer"
    step = m.receive(in_dialog("INVITE", 2, SDP.replace(b"4000", b"4010")), 1.0)
    assert kinds(step) == ["reinvite"] and m.local_body == b"answer" and b"4010" in m.remote_body
    assert statuses(run(m, 2.6)) == [(1.5, 200), (2.5, 200)]
    assert kinds(m.receive(in_dialog("ACK", 2), 2.7)) == ["acked"] and m.deadline is None


def test_a_retransmitted_2xx_to_our_reinvite_repeats_the_ack() -> None:
    m = confirmed_caller()
    sent = m.reinvite(SDP, 1.0).actions[0]
    assert isinstance(sent, SendRequest)
    ok = reply(sent.request, 200, body=SDP)
    first = m.receive(ok, 1.1)
    assert kinds(first) == ["reinvite-answered"] and isinstance(first.actions[0], SendAck)
    assert first.actions[0].request is not None and first.actions[0].request.cseq == (2, "ACK")
    assert m.receive(ok, 1.6).actions == [SendAck(first.actions[0].request, resend=True)]


# -- BYE in every state (§15) ----------------------------------------------------------------------
def _machine_in(state: str) -> InviteMachine:
    if state == "calling":
        return outgoing()
    if state in ("proceeding", "early"):
        m = outgoing()
        m.receive(reply(m.invite, 100 if state == "proceeding" else 180), 0.1)
        return m
    if state == "incoming":
        return incoming()
    if state == "confirmed-caller":
        return confirmed_caller()
    if state == "confirmed-callee-unacked":
        m = incoming()
        m.answer(SDP, 0.0)
        return m
    if state == "confirmed-callee":
        m = incoming()
        m.answer(SDP, 0.0)
        m.receive(in_dialog("ACK", 1), 0.1)
        return m
    m = confirmed_caller()
    m.bye(0.5)
    assert m.state is CallState.TERMINATED
    return m


def _summary(step: SessionStep) -> list[str]:
    out = []
    for a in step.actions:
        if isinstance(a, SendResponse):
            out.append(str(a.response.status))
        elif isinstance(a, (SendRequest, SendCancel)):
            out.append(a.request.method)
        else:
            out.append("ACK")
    return out


@pytest.mark.parametrize(("state", "sends", "after"), [
    ("calling", [], CallState.CALLING),                      # CANCEL waits for a 1xx
    ("proceeding", ["CANCEL"], CallState.PROCEEDING),
    ("early", ["CANCEL"], CallState.EARLY),
    ("incoming", ["603"], CallState.TERMINATED),
    ("confirmed-caller", ["BYE"], CallState.TERMINATED),
    ("confirmed-callee-unacked", [], CallState.CONFIRMED),   # §15: no BYE before the ACK ...
    ("confirmed-callee", ["BYE"], CallState.TERMINATED),
    ("terminated", [], CallState.TERMINATED),
])
def test_hanging_up_in_every_state(state: str, sends: list[str], after: CallState) -> None:
    m = _machine_in(state)
    assert _summary(m.bye(1.0)) == sends and m.state is after


def test_a_bye_held_back_for_the_ack_goes_out_when_it_arrives_or_when_64_t1_passes() -> None:
    m = _machine_in("confirmed-callee-unacked")
    m.bye(1.0)
    step = m.receive(in_dialog("ACK", 1), 1.2)
    assert _summary(step) == ["BYE"] and kinds(step) == ["acked", "state"] and m.state is CallState.TERMINATED
    lost = _machine_in("confirmed-callee-unacked")
    lost.bye(1.0)
    run(lost, 31.999)
    step = lost.advance(32.0)
    assert _summary(step) == ["BYE"] and kinds(step) == ["ack-timeout", "state"]


@pytest.mark.parametrize(("state", "sends", "events"), [
    ("incoming", ["487"], ["bye", "state"]),                 # §15.1.2: the pending INVITE gets 487
    ("early", [], ["bye", "state"]),
    ("confirmed-caller", [], ["bye", "state"]),
    ("confirmed-callee-unacked", [], ["bye", "state"]),
    ("confirmed-callee", [], ["bye", "state"]),
    ("terminated", [], []),
])
def test_receiving_bye_in_every_state(state: str, sends: list[str], events: list[str]) -> None:
    m = _machine_in(state)
    step = m.receive(in_dialog("BYE", 5), 2.0)
    assert _summary(step) == sends and kinds(step) == events
    assert m.state is CallState.TERMINATED and m.deadline is None


def test_events_carry_the_state_after_the_change() -> None:
    m = outgoing()
    step = m.receive(reply(m.invite, 180), 0.1)
    assert step.events == [SessionEvent("state", CallState.EARLY, step.events[0].message),
                           SessionEvent("provisional", CallState.EARLY, step.events[0].message)]


def test_while_waiting_to_retry_after_491_the_peers_reinvite_is_accepted_then_ours_goes_out() -> None:
    m = incoming(rng=0.5)                                   # not the Call-ID owner: retry after 1.00 s
    m.answer(SDP, 0.0)
    m.receive(in_dialog("ACK", 1), 0.1)
    sent = m.reinvite(b"ours", 5.0, retry_glare=True).actions[0]
    assert isinstance(sent, SendRequest)
    m.receive(reply(sent.request, 491), 5.1)
    theirs = m.receive(in_dialog("INVITE", 2, SDP), 5.2)   # the caller's retry wins the race
    assert statuses([(5.2, a) for a in theirs.actions]) == [(5.2, 200)] and kinds(theirs) == ["reinvite"]
    m.receive(in_dialog("ACK", 2), 5.3)
    retry = [(t, a) for t, a in run(m, 10.0) if isinstance(a, SendRequest)]
    assert [(t, a.request.body, a.request.cseq) for t, a in retry] == [(6.1, b"ours", (sent.request.cseq[0] + 1,
                                                                                        "INVITE"))]
