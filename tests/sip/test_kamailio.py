"""Registration and calls through a real Kamailio (digest SHA-256, qop=auth) on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from lab import certs
from lab.kamailio import Kamailio
from softphone.sip.errors import CallFailed, RegistrationFailed, TransportError
from softphone.sip.sdp import SessionDescription, reverse_direction, with_direction
from softphone.sip.session import CallState
from softphone.sip.ua import UserAgent

from .conftest import USERS, sdp_offer, ua_config

pytestmark = pytest.mark.slow


async def test_register_udp_refresh_and_unregister(kamailio: Kamailio) -> None:
    async with UserAgent(ua_config("alice", kamailio, expires=3)) as ua:
        granted = await ua.register()
        assert granted == 3
        contact = f"sip:alice@127.0.0.1:{ua.port}"
        await kamailio.await_log(rf"LAB REGISTER aor=sip:alice@lab.test contact=<{contact}>;expires=3 .*proto=udp",
                                 timeout=8, count=2)   # the first one and a refresh before expiry
        async with asyncio.timeout(2):
            while ua.register_count < 2:   # the refresh's 200 OK reached the UA too
                await asyncio.sleep(0.05)
        assert ua.registered_expires == 3
    await kamailio.await_log(rf"LAB REGISTER aor=sip:alice@lab.test contact=<{contact}>;expires=0 ", timeout=5)


async def test_register_tls_verifies_the_server(kamailio: Kamailio, pki: dict[str, certs.CertFiles]) -> None:
    cfg = ua_config("carol", kamailio, transport="tls", proxy=f"sip:127.0.0.1:{kamailio.tls_port};transport=tls",
                    tls_server=certs.server_context(pki["ua"]), tls_client=certs.client_context(pki["ca"].cert))
    async with UserAgent(cfg) as ua:
        assert await ua.register(60) == 60
        await kamailio.await_log(r"LAB REGISTER aor=sip:carol@lab.test "
                                 r"contact=<sip:carol@127.0.0.1:\d+;transport=tls>;expires=60 .*proto=tls")
    await kamailio.await_log(r"LAB REGISTER aor=sip:carol@lab.test .*expires=0 .*proto=tls", timeout=5)


async def test_tls_rejects_an_unknown_ca(kamailio: Kamailio, tmp_path) -> None:
    other_ca = certs.make_ca(tmp_path / "other")
    cfg = ua_config("carol", kamailio, transport="tls", proxy=f"sip:127.0.0.1:{kamailio.tls_port};transport=tls",
                    tls_client=certs.client_context(other_ca.cert))
    async with UserAgent(cfg) as ua:
        with pytest.raises(TransportError, match="cannot connect to tls:.*SSLCertVerificationError"):
            await ua.register(60)


async def test_wrong_password_is_refused(kamailio: Kamailio) -> None:
    async with UserAgent(ua_config("bob", kamailio, password="wrong")) as ua:
        with pytest.raises(RegistrationFailed) as err:
            await ua.register(60)
        assert err.value.status == 401


async def _pair(kam: Kamailio) -> tuple[UserAgent, UserAgent]:
    a = UserAgent(ua_config("alice", kam))
    b = UserAgent(ua_config("bob", kam))
    await a.start()
    await b.start()
    await a.register(60)
    await b.register(60)
    return a, b


async def test_call_hold_resume_bye_through_kamailio(kamailio: Kamailio) -> None:
    a, b = await _pair(kamailio)
    try:
        offer = sdp_offer(40000)
        call = await a.invite("sip:bob@lab.test", offer)      # ~2.2 kB: goes over TCP (§18.1.1)
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        assert incoming.remote_body == offer
        await incoming.ring()
        await call.wait_state(CallState.EARLY, 5)
        answer = sdp_offer(41000)
        await incoming.answer(answer)
        ok = await call.answered(5)
        assert ok.body == answer and call.state is CallState.CONFIRMED
        assert call.history[0] is CallState.CALLING and CallState.EARLY in call.history
        assert incoming.history == [CallState.INCOMING, CallState.CONFIRMED]
        assert call.dialog is not None and call.dialog.route_set, "Kamailio record-routes the dialog"
        invites = await kamailio.await_log(rf"{call.call_id}.*LAB RELAY INVITE sip:bob@127.0.0.1:{b.port} proto=tcp")
        assert invites, "the 2 kB INVITE left alice over TCP although her transport is UDP"

        def answer_offer(body: bytes) -> bytes:
            remote = SessionDescription.parse(body)
            mine = SessionDescription.parse(answer)
            return with_direction(mine, reverse_direction(remote.media[0].direction)).encode()

        incoming.on_offer = answer_offer
        held = await call.reinvite(with_direction(SessionDescription.parse(offer), "sendonly").encode())
        assert SessionDescription.parse(held.body).media[0].direction == "recvonly"
        resumed = await call.reinvite(with_direction(SessionDescription.parse(offer), "sendrecv").encode())
        assert SessionDescription.parse(resumed.body).media[0].direction == "sendrecv"
        kinds = []
        while not incoming.events.empty():
            kinds.append(incoming.events.get_nowait().kind)
        assert kinds.count("reinvite") == 2
        bye = await call.bye()
        assert bye is not None and bye.status == 200
        await incoming.wait_state(CallState.TERMINATED, 5)
        assert call.history[-1] is CallState.TERMINATED
        await kamailio.await_log(r"LAB RELAY BYE ", timeout=5)  # the log reader thread may lag
    finally:
        await a.close()
        await b.close()


async def test_cancel_before_answer_through_kamailio(kamailio: Kamailio) -> None:
    a, b = await _pair(kamailio)
    try:
        call = await a.invite("sip:bob@lab.test", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.ring()
        await call.wait_state(CallState.EARLY, 5)
        await call.cancel()
        with pytest.raises(CallFailed) as err:
            await call.answered(5)
        assert err.value.status == 487
        await incoming.wait_state(CallState.TERMINATED, 5)
        assert incoming.final_response is not None and incoming.final_response.status == 487
        assert call.history[-1] is CallState.TERMINATED
    finally:
        await a.close()
        await b.close()


async def test_busy_and_488_with_warning_through_kamailio(kamailio: Kamailio) -> None:
    a, b = await _pair(kamailio)
    try:
        call = await a.invite("sip:bob@lab.test", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.reject(486)
        with pytest.raises(CallFailed) as err:
            await call.answered(5)
        assert err.value.status == 486 and call.state is CallState.TERMINATED

        call = await a.invite("sip:bob@lab.test", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.reject(488, warning="MIKEY-SAKKE I_MESSAGE signature invalid")
        with pytest.raises(CallFailed) as err:
            await call.answered(5)
        assert err.value.status == 488
        assert err.value.warning is not None and "signature invalid" in err.value.warning
    finally:
        await a.close()
        await b.close()


async def test_unregistered_user_is_not_found(kamailio: Kamailio) -> None:
    async with UserAgent(ua_config("alice", kamailio)) as a:
        call = await a.invite("sip:nobody@lab.test", sdp_offer())
        with pytest.raises(CallFailed) as err:
            await call.answered(5)
        assert err.value.status == 404


async def test_with_flows_a_call_reaches_the_callee_over_the_connection_it_registered_on(
        tmp_path, pki: dict[str, certs.CertFiles]) -> None:
    """``Kamailio(flows=True)`` (RFC 5626 §5.3): the INVITE goes to the source address of bob's REGISTER, the
    TLS connection bob opened, not to a new connection to his Contact's port; the dialog still completes
    (ACK and BYE routed through the Contact alias)."""
    with Kamailio(tmp_path / "kam", USERS, tls=pki["kamailio"], algorithm="SHA-256", flows=True) as kam:
        def tls(user: str) -> UserAgent:
            return UserAgent(ua_config(user, kam, transport="tls", proxy=f"sip:127.0.0.1:{kam.tls_port};transport=tls",
                                       tls_server=certs.server_context(pki["ua"]),
                                       tls_client=certs.client_context(pki["ca"].cert)))
        a, b = tls("alice"), tls("bob")
        async with a, b:
            await a.register(60)
            await b.register(60)
            reg = await kam.await_log(r"LAB REGISTER aor=sip:bob@lab.test .*proto=tls src=127\.0\.0\.1:(\d+)")
            src_port = int(reg[-1].rsplit(":", 1)[1])
            contact_port = int(reg[-1].split("contact=<sip:bob@127.0.0.1:")[1].split(";")[0])
            assert src_port != contact_port, "bob's REGISTER came from an ephemeral port, not his listening one"
            call = await a.invite("sip:bob@lab.test", sdp_offer(40000))
            incoming = await asyncio.wait_for(b.incoming.get(), 5)
            await incoming.answer(sdp_offer(41000))
            await call.answered(5)
            await kam.await_log(rf"{call.call_id}.*LAB RELAY INVITE sip:bob@127\.0\.0\.1:{contact_port};transport=tls "
                                rf"proto=tls dst=sip:127\.0\.0\.1:{src_port};transport=tls")
            await incoming.wait_state(CallState.CONFIRMED, 5)  # the ACK reached bob
            bye = await call.bye()
            assert bye is not None and bye.status == 200
            await incoming.wait_state(CallState.TERMINATED, 5)
