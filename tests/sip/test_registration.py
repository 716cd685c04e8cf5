"""REGISTER requests and outcomes (RFC 3261 §10) without a network."""

from __future__ import annotations

import pytest

from softphone.sip.errors import RegistrationFailed
from softphone.sip.message import make_response
from softphone.sip.registration import Outcome, Registration, failed_refresh_expiry, refresh_delay
from softphone.sip.uri import NameAddr, SipUri

CONTACT = NameAddr.parse("<sip:alice@127.0.0.1:5070>")


def registration() -> Registration:
    return Registration(SipUri.parse("sip:alice@lab.test"), "reg-1@lab", SipUri.parse("sip:lab.test"))


def test_requests_share_the_call_id_and_increase_the_cseq() -> None:
    reg = registration()
    first, second = reg.request(CONTACT, 60, "t1"), reg.request(CONTACT, 0, "t2")
    assert [r.cseq for r in (first, second)] == [(1, "REGISTER"), (2, "REGISTER")]
    assert first.call_id == second.call_id == "reg-1@lab" and str(first.uri) == "sip:lab.test"
    assert first.headers.get("Contact") == "<sip:alice@127.0.0.1:5070>;expires=60"
    assert second.headers.get("Expires") == "0"
    reg.resent_with_credentials(5)                          # a challenged REGISTER went out with CSeq 5
    assert reg.request(CONTACT, 60, "t3").cseq == (6, "REGISTER")


def test_outcomes() -> None:
    reg = registration()
    req = reg.request(CONTACT, 60, "t1")
    brief = make_response(req, 423, extra=[("Min-Expires", "120")])
    assert reg.outcome(brief, CONTACT, 60) == Outcome(retry=120)
    ok = make_response(req, 200, to_tag="r", extra=[("Contact", "<sip:alice@127.0.0.1:5070>;expires=45"),
                                                    ("Contact", "<sip:alice@127.0.0.1:5099>;expires=999")])
    assert reg.outcome(ok, CONTACT, 60) == Outcome(granted=45) and reg.expires == 45   # our binding's, not another's
    assert reg.outcome(make_response(req, 200, to_tag="r"), CONTACT, 0) == Outcome(granted=0) and reg.expires is None
    with pytest.raises(RegistrationFailed) as err:
        reg.outcome(make_response(req, 403), CONTACT, 60)
    assert err.value.status == 403


@pytest.mark.parametrize(("expires", "delay"), [(3600, 3570), (60, 30), (59, 29.5), (2, 1.0), (0, 0.5)])
def test_refresh_comes_30_s_early_or_at_half_a_short_binding(expires: int, delay: float) -> None:
    assert refresh_delay(expires) == delay


def test_a_failed_refresh_retries_with_half_the_expiry_but_at_least_2_s() -> None:
    assert [failed_refresh_expiry(e) for e in (60, 5, 3, 2)] == [30, 2, 2, 2]
