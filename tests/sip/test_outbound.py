"""Registration that recovers, against real Kamailio and dnsmasq on 127.0.0.1.

- TCP: the registrar restarts, the connection closes, the phone re-registers as soon as it is back.
- UDP: STUN keep-alives (Kamailio's stun module) stop being answered, the phone re-registers.
- DNS: NAPTR/SRV name two Kamailio instances over TLS; the first is stopped, the phone moves to the second.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from lab import certs
from lab.kamailio import Kamailio
from softphone.sip.registration import RegistrationStatus, RegState
from softphone.sip.transaction import Timers
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

from .conftest import USERS, ua_config

pytestmark = pytest.mark.slow
VERY_FAST = Timers(t1=0.05, t2=0.2, t4=0.25)


async def _until(predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` every 20 ms; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"not {what} within {timeout} s")
        await asyncio.sleep(0.02)
    return loop.time() - start


async def _restart(kam: Kamailio) -> None:
    """Start ``kam`` again on its ports, waiting (bounded) for the old processes to let go of them."""
    for attempt in range(20):
        try:
            await asyncio.to_thread(kam.start)
            return
        except RuntimeError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.25)


def _recorder(ua: UserAgent) -> list[RegistrationStatus]:
    seen: list[RegistrationStatus] = []
    ua.on_registration = seen.append
    return seen


async def test_tcp_registrar_restart_re_registers(tmp_path: Path) -> None:
    require_tool("kamailio")
    kam = Kamailio(tmp_path / "kam", USERS, min_expires=1)
    instance = f"urn:uuid:{uuid.uuid4()}"
    cfg = ua_config("alice", kam, transport="tcp", proxy=f"sip:127.0.0.1:{kam.tcp_port};transport=tcp",
                    expires=600, keepalive=0.3, retry_base=0.25, retry_max=1.0, instance_id=instance)
    with kam:
        async with UserAgent(cfg) as ua:
            seen = _recorder(ua)
            assert await ua.register() == 600
            line = (await kam.await_log(r"LAB REGISTER aor=sip:alice@lab.test .*proto=tcp"))[0]
            assert f'+sip.instance="<{instance}>"' in line and "reg-id=1" in line
            assert ua.keeper is not None and ua.recovery is not None
            await _until(lambda: ua.recovery is not None and ua.recovery.flow_answered, 3, "CRLF pong seen")
            assert ua.keeper.pings >= 1

            kam.stop()                     # the registrar goes away with its bindings (usrloc in memory)
            await _until(lambda: ua.registration_status.state is not RegState.REGISTERED, 2, "flow failure noticed")
            await asyncio.sleep(1.0)
            await _restart(kam)
            took = await _until(lambda: ua.registration_status.state is RegState.REGISTERED, 5,
                                "registered again")
            await kam.await_log(r"LAB REGISTER aor=sip:alice@lab.test .*reg-id=1.*proto=tcp", timeout=2)
            states = [s.state for s in seen]
            assert RegState.RETRYING in states, states
            retry = next(s for s in seen if s.state is RegState.RETRYING)
            assert "connect" in (retry.reason or "") and retry.retry_at is not None
            assert took < 2.5             # the retries are 0.25-1 s apart (backoff capped at 1 s)
            assert ua.registration_status.describe(asyncio.get_running_loop().time()).startswith(
                "registered (expires in ")


async def test_udp_stun_keepalive_failure_re_registers(tmp_path: Path) -> None:
    require_tool("kamailio")
    kam = Kamailio(tmp_path / "kam", USERS, min_expires=1, stun=True)
    cfg = ua_config("bob", kam, timers=VERY_FAST, expires=600, keepalive=0.3, pong_timeout=0.4,
                    retry_base=0.25, retry_max=1.0)
    with kam:
        async with UserAgent(cfg) as ua:
            _recorder(ua)
            await ua.register()
            await _until(lambda: ua.recovery is not None and ua.recovery.flow_answered, 3, "STUN answer seen")
            kam.stop()
            took = await _until(lambda: ua.registration_status.state is not RegState.REGISTERED, 3,
                                "keep-alive failure noticed")
            assert took < 1.0              # next ping within 0.3 s, answer overdue 0.4 s later
            await _restart(kam)
            await _until(lambda: ua.registration_status.state is RegState.REGISTERED, 10, "registered again")
            await kam.await_log(r"LAB REGISTER aor=sip:bob@lab.test .*proto=udp", timeout=2)


async def test_dns_naptr_srv_failover_between_two_registrars(tmp_path: Path) -> None:
    require_tool("kamailio")
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    ca = certs.make_ca(tmp_path / "pki")
    server = certs.issue(ca, tmp_path / "pki", "registrar", hosts=("lab.test", "127.0.0.1"))
    kam1 = Kamailio(tmp_path / "kam1", USERS, tls=server, min_expires=1)
    kam2 = Kamailio(tmp_path / "kam2", USERS, tls=server, min_expires=1)
    assert kam1.tls_port and kam2.tls_port
    dns = Dnsmasq(tmp_path / "dns",
                  naptr=[("lab.test", 10, 50, "s", "SIP+D2U", "_sip._udp.lab.test"),
                         ("lab.test", 10, 10, "s", "SIPS+D2T", "_sips._tcp.lab.test")],
                  srv=[("_sips._tcp.lab.test", "kam1.lab.test", kam1.tls_port, 10, 10),
                       ("_sips._tcp.lab.test", "kam2.lab.test", kam2.tls_port, 20, 10),
                       ("_sip._udp.lab.test", "kam1.lab.test", kam1.udp_port, 10, 10)],
                  hosts={"kam1.lab.test": "127.0.0.1", "kam2.lab.test": "127.0.0.1"})
    # the account names only its AOR: the registrar is sip:lab.test, found through NAPTR -> SRV -> A
    cfg = ua_config("carol", None, username="carol", password=USERS["carol"], transport="tls",
                    tls_client=certs.client_context(ca.cert), nameserver=dns.nameserver, expires=600,
                    retry_base=0.25, retry_max=1.0, instance_id=f"urn:uuid:{uuid.uuid4()}")
    with dns, kam1, kam2:
        async with UserAgent(cfg) as ua:
            seen = _recorder(ua)
            await ua.register()
            await kam1.await_log(r"LAB REGISTER aor=sip:carol@lab.test .*proto=tls")
            assert ua.registration_status.target == f"tls:127.0.0.1:{kam1.tls_port}"
            assert dns.matching(r"query\[NAPTR\] lab.test") and dns.matching(r"query\[SRV\] _sips._tcp.lab.test")
            assert not dns.matching(r"query\[SRV\] _sip._udp")   # TLS preferred: UDP never looked up

            kam1.stop()
            took = await _until(lambda: ua.registration_status.target == f"tls:127.0.0.1:{kam2.tls_port}"
                                and ua.registration_status.state is RegState.REGISTERED, 5, "moved to kam2")
            await kam2.await_log(r"LAB REGISTER aor=sip:carol@lab.test .*proto=tls", timeout=2)
            assert took < 2.0          # the closed flow is replaced at once; kam1 refuses, kam2 is next
            assert [s.state for s in seen][-1] is RegState.REGISTERED
            # requests to the domain fail over too (kam1 refuses the connection, kam2 answers)
            resp = await ua.options("sip:lab.test", timeout=5)
            assert resp.status == 200
