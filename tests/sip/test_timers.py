"""RFC 3261 §17 timers on the sans-IO transaction machines, driven by a virtual clock.

Every schedule is asserted exactly (to the millisecond): the machine is told the time, so
nothing here depends on how busy the machine running the tests is.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import pytest

from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.transaction import (
    Acked,
    ClientTransaction,
    RequestRetransmitted,
    ResponseReceived,
    ServerTransaction,
    State,
    Step,
    Terminated,
    TimedOut,
    Timers,
    TransactionEvent,
)

RFC = Timers()                                  # T1 = 0.5, T2 = 4, T4 = 5, D = 32
LAB = Timers(t1=0.1, t2=0.4, t4=0.5, d=2.0)     # the small timers of tests/sip/conftest.py FAST


def request(method: str = "OPTIONS", branch: str = "z9hG4bKt1") -> Request:
    data = (f"{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
            f"From: <sip:alice@lab.test>;tag=a1\r\nTo: <sip:bob@lab.test>\r\nCall-ID: c1@lab\r\n"
            f"CSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag="b1" if status > 100 else None)


M = TypeVar("M", ClientTransaction, ServerTransaction)


class Clock(Generic[M]):
    """Runs a machine to ``until`` and records (time, bytes sent, events) at each deadline."""

    def __init__(self, machine: M, start: Step, now: float = 0.0) -> None:
        self.machine: M = machine
        self.now = now
        self.sent: list[tuple[float, bytes]] = [(now, data) for data in start.send]
        self.events: list[tuple[float, TransactionEvent]] = [(now, e) for e in start.events]

    def record(self, step: Step) -> None:
        self.sent += [(self.now, data) for data in step.send]
        self.events += [(self.now, e) for e in step.events]

    def run(self, until: float) -> None:
        while (deadline := self.machine.deadline) is not None and deadline <= until:
            self.now = deadline
            self.record(self.machine.advance(deadline))
        self.now = until

    def times(self) -> list[float]:
        return [round(t, 3) for t, _ in self.sent]


def start_client(method: str, timers: Timers, reliable: bool = False) -> Clock[ClientTransaction]:
    tx = ClientTransaction(request(method), reliable, timers)
    return Clock(tx, tx.start(0.0))


# -- client INVITE: Timers A, B, D ----------------------------------------------------------------
@pytest.mark.parametrize(("timers", "sends", "timeout"), [
    (RFC, [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5], 32.0),
    (LAB, [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3], 6.4),
])
def test_timer_a_doubles_and_timer_b_times_out_at_64_t1(timers: Timers, sends: list[float],
                                                        timeout: float) -> None:
    clock = start_client("INVITE", timers)
    assert clock.machine.timers == {"A": timers.t1, "B": timeout}
    clock.run(100.0)
    assert clock.times() == sends                       # Timer A: T1, 2*T1, 4*T1 ... uncapped
    assert len({data for _, data in clock.sent}) == 1
    assert [(round(t, 3), e) for t, e in clock.events] == [(timeout, TimedOut("B")), (timeout, Terminated())]
    assert clock.machine.state is State.TERMINATED and clock.machine.deadline is None


def test_invite_over_a_reliable_transport_never_retransmits_and_still_times_out() -> None:
    clock = start_client("INVITE", RFC, reliable=True)
    assert clock.machine.timers == {"B": 32.0}
    clock.run(100.0)
    assert clock.times() == [0.0]
    assert [e for _, e in clock.events] == [TimedOut("B"), Terminated()]


def test_1xx_stops_timer_a_but_not_timer_b() -> None:
    clock = start_client("INVITE", RFC)
    clock.run(1.0)                                        # sent at 0 and 0.5
    trying = response(clock.machine.request, 100)
    step = clock.machine.receive(trying, 1.0)
    assert step.events == [ResponseReceived(trying)] and not step.send
    assert clock.machine.state is State.PROCEEDING and clock.machine.timers == {"B": 32.0}
    clock.run(40.0)
    assert clock.times() == [0.0, 0.5]
    assert [round(t, 3) for t, e in clock.events if isinstance(e, TimedOut)] == [32.0]


@pytest.mark.parametrize(("timers", "reliable", "linger"), [(RFC, False, 32.0), (LAB, False, 2.0),
                                                           (RFC, True, 0.0)])
def test_non_2xx_final_is_acked_and_timer_d_absorbs_retransmissions(timers: Timers, reliable: bool,
                                                                    linger: float) -> None:
    clock = start_client("INVITE", timers, reliable)
    busy = response(clock.machine.request, 486)
    clock.run(0.2)
    step = clock.machine.receive(busy, 0.2)
    ack = parse_message(step.send[0])
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.top_via.branch == "z9hG4bKt1" and ack.to.tag == "b1"   # §17.1.1.3: same branch, To tag of the 486
    if reliable:
        assert clock.machine.state is State.TERMINATED and step.events[-1] == Terminated()
        return
    assert clock.machine.timers == {"D": 0.2 + linger}
    clock.record(step)
    clock.run(1.0)
    again = clock.machine.receive(busy, 1.0)               # retransmitted 486: the ACK again, TU not told
    assert again.send == [step.send[0]] and again.events == []
    clock.record(again)
    clock.run(100.0)
    assert [(round(t, 3), e) for t, e in clock.events] == [(0.2, ResponseReceived(busy)),
                                                           (round(0.2 + linger, 3), Terminated())]
    retransmits = [0.1] if timers is LAB else []            # Timer A fired once before the 486
    assert clock.times() == [0.0, *retransmits, 0.2, 1.0]   # INVITE(s), ACK, ACK


def test_2xx_moves_client_invite_to_accepted_and_every_retransmission_reaches_the_tu() -> None:
    clock = start_client("INVITE", RFC)
    ok = response(clock.machine.request, 200)
    first = clock.machine.receive(ok, 0.3)
    assert first.events == [ResponseReceived(ok)] and not first.send   # the TU sends the ACK for a 2xx
    assert clock.machine.state is State.ACCEPTED and clock.machine.timers == {"M": 0.3 + 32.0}
    again = clock.machine.receive(ok, 1.0)
    assert again.events == [ResponseReceived(ok, retransmission=True)]
    clock.run(40.0)
    assert clock.times() == [0.0] and [e for _, e in clock.events] == [Terminated()]


# -- client non-INVITE: Timers E, F, K ------------------------------------------------------------
@pytest.mark.parametrize(("timers", "sends", "timeout"), [
    (RFC, [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
    (LAB, [0.0, 0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3], 6.4),
])
def test_timer_e_doubles_capped_at_t2_and_timer_f_times_out(timers: Timers, sends: list[float],
                                                            timeout: float) -> None:
    clock = start_client("OPTIONS", timers)
    assert clock.machine.timers == {"E": timers.t1, "F": timeout}
    clock.run(100.0)
    assert clock.times() == sends
    assert [(round(t, 3), e) for t, e in clock.events] == [(timeout, TimedOut("F")), (timeout, Terminated())]


def test_timer_e_is_t2_once_proceeding() -> None:
    clock = start_client("OPTIONS", RFC)
    clock.run(0.6)                                             # sent at 0, 0.5; next E at 1.5
    clock.machine.receive(response(clock.machine.request, 100), 0.6)
    assert clock.machine.state is State.PROCEEDING
    clock.run(12.0)
    assert clock.times() == [0.0, 0.5, 1.5, 5.5, 9.5]          # after 1.5 the interval is T2, not 2 s


@pytest.mark.parametrize(("timers", "reliable", "k"), [(RFC, False, 5.0), (LAB, False, 0.5), (RFC, True, None)])
def test_timer_k_lingers_t4_over_udp_and_zero_over_tcp(timers: Timers, reliable: bool, k: float | None) -> None:
    clock = start_client("OPTIONS", timers, reliable)
    ok = response(clock.machine.request, 200)
    step = clock.machine.receive(ok, 0.05)
    if k is None:
        assert step.events == [ResponseReceived(ok), Terminated()] and clock.machine.deadline is None
        return
    assert step.events == [ResponseReceived(ok)] and clock.machine.timers == {"K": 0.05 + k}
    assert clock.machine.receive(ok, 0.1) == Step()         # absorbed
    clock.run(10.0)
    assert [(round(t, 3), e) for t, e in clock.events] == [(round(0.05 + k, 3), Terminated())]
    assert clock.times() == [0.0]


# -- server INVITE: Timers G, H, I, L -------------------------------------------------------------
def start_server(method: str, timers: Timers, reliable: bool = False) -> tuple[ServerTransaction, Request]:
    req = request(method)
    return ServerTransaction(req, reliable, timers), req


@pytest.mark.parametrize(("timers", "sends", "h"), [
    (RFC, [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5], 32.0),
    (LAB, [0.0, 0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3], 6.4),
])
def test_timer_g_retransmits_the_final_response_until_timer_h(timers: Timers, sends: list[float], h: float) -> None:
    tx, req = start_server("INVITE", timers)
    clock = Clock(tx, tx.respond(response(req, 486), 0.0))
    assert tx.timers == {"G": timers.t1, "H": h}
    clock.run(100.0)
    assert clock.times() == sends
    assert [(round(t, 3), e) for t, e in clock.events] == [(h, TimedOut("H")), (h, Terminated())]


@pytest.mark.parametrize(("timers", "reliable", "i"), [(RFC, False, 5.0), (LAB, False, 0.5), (RFC, True, None)])
def test_ack_stops_timer_g_and_timer_i_absorbs_acks(timers: Timers, reliable: bool, i: float | None) -> None:
    tx, req = start_server("INVITE", timers, reliable)
    clock = Clock(tx, tx.respond(response(req, 488), 0.0))
    assert tx.timers == ({"H": 64 * timers.t1} if reliable else {"G": timers.t1, "H": 64 * timers.t1})
    clock.run(0.35 if timers is RFC else 0.15)
    ack = request("ACK")
    step = tx.receive(ack, clock.now)
    clock.record(step)
    if i is None:
        assert step.events == [Acked(ack), Terminated()]
        assert clock.times() == [0.0]
        return
    assert step.events == [Acked(ack)] and tx.state is State.CONFIRMED
    assert tx.timers == {"I": clock.now + i}
    assert tx.receive(ack, clock.now + 0.01) == Step()       # ACK retransmissions are absorbed
    acked_at = clock.now
    clock.run(20.0)
    assert clock.times() == ([0.0] if timers is RFC else [0.0, 0.1])
    assert [(round(t, 3), e) for t, e in clock.events][-1] == (round(acked_at + i, 3), Terminated())


def test_server_invite_repeats_its_last_response_to_a_retransmitted_invite() -> None:
    tx, req = start_server("INVITE", RFC)
    trying = tx.respond(response(req, 100), 0.0)
    assert tx.receive(req, 0.5).send == trying.send
    ringing = tx.respond(response(req, 180), 0.6)
    assert tx.receive(req, 1.0).send == ringing.send and tx.deadline is None   # no timer while proceeding


@pytest.mark.parametrize("reliable", [False, True])
def test_2xx_puts_server_invite_in_accepted_for_timer_l_and_hands_retransmissions_to_the_tu(reliable: bool) -> None:
    tx, req = start_server("INVITE", RFC, reliable)
    ok = response(req, 200)
    clock = Clock(tx, tx.respond(ok, 0.0))
    assert tx.state is State.ACCEPTED and tx.timers == {"L": 32.0}   # no Timer G: the TU retransmits 2xx
    assert tx.receive(req, 1.0) == Step(events=[RequestRetransmitted(req)])
    assert tx.respond(ok, 1.0).send == [ok.encode()]                  # the TU's retransmission passes
    clock.run(40.0)
    assert clock.times() == [0.0] and [(t, e) for t, e in clock.events] == [(32.0, Terminated())]


# -- server non-INVITE: Timer J -------------------------------------------------------------------
@pytest.mark.parametrize(("timers", "reliable", "j"), [(RFC, False, 32.0), (LAB, False, 6.4), (RFC, True, None)])
def test_timer_j_keeps_non_invite_server_transactions_64_t1_over_udp_only(timers: Timers, reliable: bool,
                                                                          j: float | None) -> None:
    tx, req = start_server("OPTIONS", timers, reliable)
    ok = response(req, 200)
    step = tx.respond(ok, 0.0)
    if j is None:
        assert step.events == [Terminated()] and tx.deadline is None
        return
    clock = Clock(tx, step)
    assert tx.timers == {"J": j}
    assert tx.receive(req, 3.0).send == [ok.encode()]          # a retransmitted request gets the 200 again
    assert tx.respond(response(req, 500), 3.0) == Step()       # nothing may follow the final response
    clock.run(100.0)
    assert [(t, e) for t, e in clock.events] == [(j, Terminated())] and clock.times() == [0.0]
