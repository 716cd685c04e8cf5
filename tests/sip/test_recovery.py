"""The registration recovery machine (RFC 5626 §4.4, §4.5) on a virtual clock."""

from __future__ import annotations

import pytest

from softphone.sip.registration import Action, Backoff, Recovery, RegistrationStatus, RegState


def test_backoff_bounds_rfc5626() -> None:
    b = Backoff(30, 1800)
    assert [b.bound(n) for n in range(1, 8)] == [60, 120, 240, 480, 960, 1800, 1800]
    assert b.delay(3, lambda: 0.0) == 120 and b.delay(3, lambda: 1.0) == 240  # 50-100 % of W (§4.5 example)


def test_exact_retry_schedule_then_success_resets() -> None:
    m = Recovery(backoff=Backoff(1, 8), rng=lambda: 0.0)
    now = 0.0
    assert m.start(now) == [Action.REGISTER] and m.state is RegState.REGISTERING
    schedule = []
    for _ in range(6):
        m.failed("503 Service Unavailable", now)
        assert m.state is RegState.RETRYING and m.deadline is not None
        schedule.append(m.deadline - now)
        assert m.advance(m.deadline - 0.001) == []      # nothing early
        now = m.deadline
        assert m.advance(now) == [Action.REGISTER] and m.state is RegState.REGISTERING
    assert schedule == [1, 2, 4, 4, 4, 4]               # 50 % of min(8, 1 * 2**n)
    assert m.status.failures == 6 and m.status.reason == "503 Service Unavailable"
    m.registered(3600, now)
    assert m.state is RegState.REGISTERED and m.status.failures == 0
    m.failed("timeout", now)
    assert m.deadline == now + 1                          # the count started again


def test_refresh_timing_and_status_text() -> None:
    m = Recovery(rng=lambda: 0.5)
    m.start(0)
    m.registered(3600, 100.0, target="tls:127.0.0.1:5061")
    assert m.timers == {"refresh": 100 + 3570}
    assert m.status.describe(110.0) == "registered (expires in 3590 s)"
    assert m.advance(3670.0) == [Action.REGISTER] and m.state is RegState.REGISTERED  # refresh keeps the state
    m.failed("408 Request Timeout", 3671.0)
    assert m.status.describe(3671.0) == f"retrying in {round(30 * 2 * 0.75)} s (408 Request Timeout)"
    assert RegistrationStatus(RegState.UNREGISTERED).describe(0) == "unregistered"


def test_keepalive_schedule_and_pong_timeout_once_answered() -> None:
    m = Recovery(rng=lambda: 0.5, keepalive=100.0, pong_timeout=10.0)
    m.start(0)
    m.registered(3600, 0.0)
    assert m.timers["keepalive"] == 90.0                  # 80-100 % of the interval (§4.4.1)
    assert m.advance(90.0) == [Action.PING]
    assert m.timers["pong"] == 100.0 and m.timers["keepalive"] == 180.0
    m.pong(95.0)                                           # answered: this peer pongs
    assert "pong" not in m.timers
    assert m.advance(180.0) == [Action.PING]
    # no pong within 10 s: the flow failed -> register at once, no backoff
    assert m.advance(190.0) == [Action.REGISTER]
    assert m.state is RegState.REGISTERING and m.status.reason == "keep-alive not answered"
    assert m.timers == {}


def test_peer_that_never_pongs_is_still_pinged_but_not_failed() -> None:
    m = Recovery(rng=lambda: 1.0, keepalive=30.0)
    m.start(0)
    m.registered(3600, 0.0)
    assert m.advance(30.0) == [Action.PING]
    assert m.advance(40.0) == []                           # never answered on this flow: not a failure
    assert m.state is RegState.REGISTERED and m.timers["keepalive"] == 60.0


def test_pings_faster_than_the_pong_timeout_do_not_postpone_it() -> None:
    m = Recovery(rng=lambda: 1.0, keepalive=3.0, pong_timeout=5.0)
    m.start(0)
    m.registered(3600, 0.0)
    m.advance(3.0)
    m.pong(3.1)
    assert m.advance(6.0) == [Action.PING] and m.timers["pong"] == 11.0
    assert m.advance(9.0) == [Action.PING] and m.timers["pong"] == 11.0   # still the first unanswered ping
    assert m.advance(11.0) == [Action.REGISTER]


def test_flow_timer_overrides_interval() -> None:
    m = Recovery(rng=lambda: 1.0, keepalive=120.0)
    m.start(0)
    m.registered(600, 0.0, flow_timer=29)
    assert m.timers["keepalive"] == 29.0


@pytest.mark.parametrize("reason", ["connection closed", "NAT binding changed"])
def test_flow_failure_re_registers_immediately_then_backs_off(reason: str) -> None:
    m = Recovery(backoff=Backoff(2, 60), rng=lambda: 1.0, keepalive=120.0)
    m.start(0)
    m.registered(3600, 0.0)
    assert m.flow_failed(reason, 50.0) == [Action.REGISTER]
    assert m.state is RegState.REGISTERING and m.status.reason == reason
    assert m.flow_failed(reason, 50.0) == []               # one re-registration per failure
    m.failed("cannot connect", 50.0)                       # the registrar is still down
    assert m.deadline == 54.0                              # 100 % of 2 * 2**1
    m.failed("cannot connect", 54.0)
    assert m.deadline == 62.0
    m.registered(3600, 62.0)
    assert m.state is RegState.REGISTERED and m.status.failures == 0


def test_stop() -> None:
    m = Recovery(rng=lambda: 0.0, keepalive=10.0)
    m.start(0)
    m.registered(60, 0)
    m.stop()
    assert m.state is RegState.UNREGISTERED and m.deadline is None and m.advance(1e9) == []
