"""INVITE failover to the next RFC 3263 target (§4.3) on Timer B, a transport error or a 503.

Pure: the :class:`Failover` policy, and the policy driving INVITE client transactions under a
virtual clock with RFC 3261 default timers (exact retransmission and Timer B times). Real: the UA
against UDP stubs found through dnsmasq SRV records, and a call through the second of two Kamailio
instances when the first one is stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from softphone.sip.message import Request, make_response, parse_message
from softphone.sip.resolve import Failover
from softphone.sip.transaction import ClientTransaction, ResponseReceived, State, TimedOut, Timers
from softphone.sip.uri import SipUri
from tests.conftest import require_tool


def _invite(cseq: int = 1, branch: str = "z9hG4bK1") -> Request:
    req = Request(method="INVITE", uri=SipUri.parse("sip:bob@lab.test"))
    req.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5062;branch={branch}")
    req.headers.add("From", "<sip:alice@lab.test>;tag=a1")
    req.headers.add("To", "<sip:bob@lab.test>")
    req.headers.add("Call-ID", "fo@127.0.0.1")
    req.headers.add("CSeq", f"{cseq} INVITE")
    return req

def test_policy_moves_on_until_a_provisional_pins_the_target() -> None:
    fo = Failover(["a", "b", "c", "d"])
    assert fo.current == "a"
    assert fo.failed("timeout") == "b"
    fo.provisional_received(100)            # the next hop's "Trying" does not pin
    assert fo.failed("503") == "c"
    assert fo.failed("connect") == "d"
    fo.provisional_received(180)            # ringing: a phone may be alerted through "d"
    assert fo.failed("timeout") is None and fo.current == "d"
    assert fo.tried == [("a", "timeout"), ("b", "503"), ("c", "connect")]

def test_policy_a_503_from_the_last_target_is_the_answer() -> None:
    fo = Failover(["a", "b"])
    assert fo.failed("transport") == "b"
    assert fo.failed("503") is None and fo.current == "b"
    assert fo.failed("timeout") is None and fo.current is None   # a timeout there ends it too
    with pytest.raises(ValueError, match="unknown failover reason"):
        fo.failed("486")

def test_failover_under_the_virtual_clock_with_default_timers() -> None:
    """Target A is silent: A retransmits at T1 doubling, Timer B fires at 64*T1 = 32 s; target B
    answers 503 (ACKed at once); target C sends 180 then 486, which is final (pinned)."""
    timers = Timers()
    fo = Failover(["A", "B", "C"])
    sent: list[tuple[float, str, int]] = []       # (time, target, CSeq)

    tx = ClientTransaction(_invite(1, "z9hG4bKa"), False, timers)
    now = 0.0
    sent += [(now, "A", 1) for _ in tx.start(now).send]
    events = []
    while tx.state is not State.TERMINATED:
        assert tx.deadline is not None
        now = tx.deadline
        step = tx.advance(now)
        sent += [(now, "A", 1) for data in step.send]
        events += step.events
    assert [t for t, _, _ in sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]   # A: T1, 2T1, 4T1 ...
    assert events[0] == TimedOut("B") and now == 32.0
    assert fo.failed("timeout") == "B"

    tx = ClientTransaction(_invite(2, "z9hG4bKb"), False, timers)
    tx.start(now)
    step = tx.receive(make_response(tx.request, 503), now + 0.01)
    assert isinstance(step.events[0], ResponseReceived) and step.events[0].response.status == 503
    ack = parse_message(step.send[0])
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq == (2, "ACK")
    assert fo.failed("503") == "C"

    tx = ClientTransaction(_invite(3, "z9hG4bKc"), False, timers)
    tx.start(now + 0.01)
    assert tx.deadline == pytest.approx(32.51)                               # C's own Timer A
    tx.receive(make_response(tx.request, 180, to_tag="b1"), now + 0.02)
    fo.provisional_received(180)
    assert "A" not in tx.timers                                              # retransmissions stop
    tx.receive(make_response(tx.request, 486, to_tag="b1"), now + 0.03)
    assert fo.failed("503") is None and fo.current == "C"
    assert [r for _, r in fo.tried] == ["timeout", "503"]

class _Stub(asyncio.DatagramProtocol):
    """A UDP SIP stub: answers each INVITE with ``status`` (None: silent), records what it saw."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.invites: list[Request] = []
        self.acks = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, Request):
            return
        if msg.method == "ACK":
            self.acks += 1
            return
        if msg.method == "INVITE" and not any(r.top_via.branch == msg.top_via.branch for r in self.invites):
            self.invites.append(msg)
        if self.status is not None and self.transport is not None:
            self.transport.sendto(make_response(msg, self.status, to_tag="stub").encode(), addr)

async def test_ua_invite_fails_over_on_timeout_and_503_through_srv(tmp_path: Path) -> None:
    """Three SRV targets: silent, 503, 486. The call ends with the third's 486 after Timer B on the
    first (64*T1) and the 503 of the second; each INVITE is a new transaction (branch, CSeq + 1)."""
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    from softphone.sip.errors import CallFailed
    from softphone.sip.ua import UAConfig, UserAgent
    from tests.sip.conftest import sdp_offer

    loop = asyncio.get_running_loop()
    stubs = [_Stub(None), _Stub(503), _Stub(486)]
    endpoints = [await loop.create_datagram_endpoint(lambda s=s: s, local_addr=("127.0.0.1", 0)) for s in stubs]
    ports = [t.get_extra_info("sockname")[1] for t, _ in endpoints]
    try:
        with Dnsmasq(tmp_path, srv=[("_sip._udp.lab.test", f"s{i}.lab.test", port, 10 + i, 0)
                                    for i, port in enumerate(ports)],
                     hosts={f"s{i}.lab.test": "127.0.0.1" for i in range(3)}) as dns:
            cfg = UAConfig(aor="sip:alice@lab.test", nameserver=dns.nameserver, proxy="sip:lab.test",
                           timers=Timers(t1=0.02, t2=0.1, t4=0.1))
            async with UserAgent(cfg) as ua:
                started = loop.time()
                call = await ua.invite("sip:bob@lab.test", sdp_offer()[:400])
                with pytest.raises(CallFailed) as failed:
                    await call.answered(10)
                took = loop.time() - started
                assert failed.value.status == 486
                assert [len(s.invites) for s in stubs] == [1, 1, 1]
                assert [s.invites[0].cseq[0] for s in stubs] == [1, 2, 3]
                assert len({s.invites[0].top_via.branch for s in stubs}) == 3
                assert len({s.invites[0].call_id for s in stubs}) == 1
                assert len({s.invites[0].from_.tag for s in stubs}) == 1
                assert took >= 64 * 0.02           # the silent target was given its full Timer B
                assert [r for _, r in call.failover.tried] == ["timeout", "503"]  # type: ignore[union-attr]
                await asyncio.sleep(0.1)
                assert stubs[1].acks >= 1 and stubs[2].acks >= 1
    finally:
        for t, _ in endpoints:
            t.close()

async def test_ua_invite_does_not_fail_over_after_ringing(tmp_path: Path) -> None:
    """The first target rings (180) and then says 503: the call fails with that 503, the second
    target never sees the INVITE (the callee may have been alerted)."""
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    from softphone.sip.errors import CallFailed
    from softphone.sip.ua import UAConfig, UserAgent

    class Ringing(_Stub):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            msg = parse_message(data)
            if isinstance(msg, Request) and msg.method == "INVITE" and self.transport is not None:
                self.invites.append(msg)
                self.transport.sendto(make_response(msg, 180, to_tag="r").encode(), addr)
                self.transport.sendto(make_response(msg, 503, to_tag="r").encode(), addr)

    loop = asyncio.get_running_loop()
    stubs: list[_Stub] = [Ringing(None), _Stub(200)]
    endpoints = [await loop.create_datagram_endpoint(lambda s=s: s, local_addr=("127.0.0.1", 0)) for s in stubs]
    ports = [t.get_extra_info("sockname")[1] for t, _ in endpoints]
    try:
        with Dnsmasq(tmp_path, srv=[("_sip._udp.lab.test", f"s{i}.lab.test", port, 10 + i, 0)
                                    for i, port in enumerate(ports)],
                     hosts={f"s{i}.lab.test": "127.0.0.1" for i in range(2)}) as dns:
            cfg = UAConfig(aor="sip:alice@lab.test", nameserver=dns.nameserver, proxy="sip:lab.test",
                           timers=Timers(t1=0.02, t2=0.1, t4=0.1))
            async with UserAgent(cfg) as ua:
                call = await ua.invite("sip:bob@lab.test", b"")
                with pytest.raises(CallFailed) as failed:
                    await call.answered(5)
                assert failed.value.status == 503
                assert len(stubs[0].invites) >= 1 and stubs[1].invites == []
    finally:
        for t, _ in endpoints:
            t.close()



SMALL_SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")   # small: stays on UDP


@pytest.mark.slow
async def test_call_fails_over_from_a_stopped_kamailio_to_the_second(tmp_path: Path) -> None:
    """dnsmasq names two Kamailio instances by SRV (UDP); the first is stopped mid-test, so alice's
    INVITE to it gets no answer (Timer B), goes to the second, and the call with bob connects."""
    require_tool("kamailio")
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    from lab.kamailio import Kamailio
    from softphone.sip.session import CallState
    from softphone.sip.ua import UserAgent
    from tests.sip.conftest import USERS, ua_config

    loop = asyncio.get_running_loop()
    timers = Timers(t1=0.05, t2=0.2, t4=0.25)
    kam1 = Kamailio(tmp_path / "kam1", USERS)
    kam2 = Kamailio(tmp_path / "kam2", USERS)
    dns = Dnsmasq(tmp_path / "dns", srv=[("_sip._udp.lab.test", "kam1.lab.test", kam1.udp_port, 10, 10),
                                         ("_sip._udp.lab.test", "kam2.lab.test", kam2.udp_port, 20, 10)],
                  hosts={"kam1.lab.test": "127.0.0.1", "kam2.lab.test": "127.0.0.1"})
    with dns, kam1, kam2:
        bob = UserAgent(ua_config("bob", kam2, timers=timers))
        alice = UserAgent(ua_config("alice", None, username="alice", password=USERS["alice"], proxy="sip:lab.test",
                                    nameserver=dns.nameserver, timers=timers))
        async with bob, alice:
            await bob.register(60)
            kam1.stop()
            started = loop.time()
            call = await alice.invite("sip:bob@lab.test", SMALL_SDP)
            incoming = await asyncio.wait_for(bob.incoming.get(), 15)
            await incoming.ring()
            await incoming.answer(SMALL_SDP)
            ok = await call.answered(5)
            took = loop.time() - started
            assert ok.status == 200 and call.state is CallState.CONFIRMED
            assert call.failover is not None and [r for _, r in call.failover.tried] == ["timeout"]
            assert took >= 64 * timers.t1                 # kam1 had its full Timer B
            print(f"INVITE failover kam1 -> kam2: answered {took:.2f} s after the INVITE (B {64 * timers.t1:g} s)")
            await kam2.await_log(rf"{call.call_id}.*LAB RELAY INVITE", timeout=2)
            assert not kam1.matching(call.call_id)
            await call.bye(timeout=3)


async def test_ua_invite_fails_over_when_the_tcp_connection_drops(tmp_path: Path) -> None:
    """SRV over TCP: the first server accepts the connection, reads the INVITE and closes it (a
    transport error, no waiting for Timer B); the second answers 486."""
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    from softphone.sip.errors import CallFailed
    from softphone.sip.ua import UAConfig, UserAgent

    got: list[bytes] = []

    async def dropper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(65536))
        writer.close()

    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await reader.read(65536)
            if not chunk:
                return
            data += chunk
        msg = parse_message(data)
        assert isinstance(msg, Request)
        got.append(data)
        writer.write(make_response(msg, 486, to_tag="busy").encode())
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (dropper, busy)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    try:
        with Dnsmasq(tmp_path, srv=[("_sip._tcp.lab.test", f"s{i}.lab.test", port, 10 + i, 0)
                                    for i, port in enumerate(ports)],
                     hosts={f"s{i}.lab.test": "127.0.0.1" for i in range(2)}) as dns:
            slow = Timers(t1=0.5)            # Timer B = 32 s: far beyond what the test waits
            cfg = UAConfig(aor="sip:alice@lab.test", nameserver=dns.nameserver, proxy="sip:lab.test",
                           transport="tcp", timers=slow)
            async with UserAgent(cfg) as ua:
                call = await ua.invite("sip:bob@lab.test", SMALL_SDP)
                with pytest.raises(CallFailed) as failed:
                    await call.answered(10)
                assert failed.value.status == 486
                assert call.failover is not None and [r for _, r in call.failover.tried] == ["transport"]
                assert len(got) == 2 and all(g.startswith(b"INVITE ") for g in got)
    finally:
        for s in servers:
            s.close()
