"""UA behaviour between two local UAs and against raw sockets: errors, glare, retransmission, hostile input."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from softphone.sip.errors import CallFailed, ParseError, SessionStateError
from softphone.sip.message import Response, parse_message
from softphone.sip.session import CallState, Reject
from softphone.sip.transaction import State
from softphone.sip.transport import Addr, StreamConnection
from softphone.sip.ua import UserAgent
from softphone.sip.uri import SipUri

from .conftest import sdp_offer, ua_config


def _request(method: str, port: int, call_id: str = "raw-1", extra: str = "", body: bytes = b"",
             to_tag: str = "") -> bytes:
    head = (f"{method} sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id};rport\r\n"
            f"From: <sip:x@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# unparseable datagrams below: the 7 requests answered 400/413/505 and 4 of the 5 garbage ones
# (a bare CRLF pair is a keep-alive, not a message)
BAD_REQUESTS = 11


def _exchange(sock: socket.socket, port: int, data: bytes) -> Response | None:
    sock.sendto(data, ("127.0.0.1", port))
    try:
        reply, _ = sock.recvfrom(65535)
    except TimeoutError:
        return None
    try:
        msg = parse_message(reply)
    except ParseError:  # a 400 to a request whose CSeq/Call-ID was the problem omits that header
        head, _, _ = reply.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        msg = Response(status=int(lines[0].split()[1]), reason="")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            msg.headers.add(name.strip(), value.strip())
    assert isinstance(msg, Response)
    return msg


async def test_hostile_datagrams_get_400_or_are_dropped_and_the_ua_keeps_serving() -> None:
    async with UserAgent(ua_config("bob")) as ua:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        port = ua.port

        def go(data: bytes) -> Response | None:
            return _exchange(sock, port, data)
        try:
            cases = {
                "bad cseq": (_request("OPTIONS", port, "c1").replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"), 400),
                "cseq method": (_request("OPTIONS", port, "c2").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), 400),
                "short body": (_request("INVITE", port, "c3").replace(b"Content-Length: 0", b"Content-Length: 50"),
                               400),
                "no call-id": (_request("OPTIONS", port, "c4").replace(b"Call-ID: c4\r\n", b""), 400),
                "bad version": (_request("OPTIONS", port, "c5").replace(b"SIP/2.0\r\nVia", b"SIP/7.0\r\nVia"), 505),
                "huge header": (_request("OPTIONS", port, "c6", extra="X-Big: " + "a" * 60000 + "\r\n"), 413),
                "bad uri": (_request("OPTIONS", port, "c7").replace(b"sip:bob@127.0.0.1", b"sip:bob@@", 1), 400),
                "unknown method": (_request("SUBSCRIBE", port, "c8"), 405),
                "unknown dialog": (_request("BYE", port, "c9", to_tag=";tag=nope"), 481),
                "no dialog BYE": (_request("BYE", port, "c10"), 481),
                "tel uri": (_request("OPTIONS", port, "c11").replace(b"OPTIONS sip:bob@127.0.0.1:" + str(port).encode(),
                                                                       b"OPTIONS tel:+15551234"), 416),
                "require": (_request("OPTIONS", port, "c12", extra="Require: precondition\r\n"), 420),
                "bad content type": (_request("INVITE", port, "c13", extra="Contact: <sip:x@127.0.0.1:9>\r\n"
                                              "Content-Type: text/plain\r\n", body=b"hi"), 415),
            }
            for name, (data, status) in cases.items():
                resp = await asyncio.to_thread(go, data)
                assert resp is not None and resp.status == status, name
                if status in (400, 413, 505):
                    assert (resp.headers.get("Warning") or "").startswith("399 "), name
            sock.sendto(_request("ACK", port, "c13"), ("127.0.0.1", port))  # ends Timer G for the 415
            async with asyncio.timeout(5):
                while any(tx.request.call_id == "c13" and tx.state is State.COMPLETED for tx in ua._server.values()):
                    await asyncio.sleep(0.01)
            sock.setblocking(False)
            while True:
                try:
                    sock.recv(65535)  # retransmissions sent before the ACK arrived
                except BlockingIOError:
                    break
            sock.settimeout(0.5)
            for garbage in (b"\x00" * 100, b"hello world", b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n", bytes(range(256))):
                assert await asyncio.to_thread(go, garbage) is None  # dropped with a log line
            ok = await asyncio.to_thread(go, _request("OPTIONS", port, "final"))
            assert ok is not None and ok.status == 200 and "INVITE" in (ok.headers.get("Allow") or "")
            via = ok.top_via  # RFC 3581: the answer went to the source port, recorded in rport/received
            assert via.params["rport"] == str(sock.getsockname()[1]) and via.params["received"] == "127.0.0.1"
            assert ua.stats["bad"] == BAD_REQUESTS
        finally:
            sock.close()


async def test_tcp_garbage_closes_only_that_connection() -> None:
    async with UserAgent(ua_config("bob")) as ua:
        reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
        writer.write(b"INVITE garbage\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing to resynchronise
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
        writer.write(_request("OPTIONS", ua.port, "tcp-ok").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        await writer.drain()
        data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert data.startswith(b"SIP/2.0 200 OK")
        writer.close()


async def test_direct_call_over_udp_with_lossy_retransmission() -> None:
    async with UserAgent(ua_config("alice")) as a, UserAgent(ua_config("bob")) as b:
        # lose b's first 100 Trying and its first 200 OK (by content, so INVITE retransmissions
        # that a slow machine provokes cannot change which datagrams are lost)
        original = b.transport.send_bytes
        dropped: list[bytes] = []

        def lossy(data: bytes, dest: Addr, conn: StreamConnection | None = None) -> None:
            first_line = data.split(b"\r\n", 1)[0]
            if first_line in (b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK") and not any(
                    d.startswith(first_line) for d in dropped):
                dropped.append(data)
                return None
            return original(data, dest, conn)
        b.transport.send_bytes = lossy  # type: ignore[method-assign]
        small = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        call = await a.invite(f"sip:bob@127.0.0.1:{b.port}", small)
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.answer(small.replace(b"4000", b"4002"))
        ok = await call.answered(5)
        assert ok.status == 200 and [d.split(b"\r\n", 1)[0] for d in dropped] == [
            b"SIP/2.0 100 Trying", b"SIP/2.0 200 OK"]
        assert incoming.server_tx is not None and incoming.server_tx.reliable is False
        await call.bye()
        await incoming.wait_state(CallState.TERMINATED, 5)


async def test_reinvite_glare_gets_491_and_rejected_reoffer_gets_warning() -> None:
    async with UserAgent(ua_config("alice")) as a, UserAgent(ua_config("bob")) as b:
        call = await a.invite(f"sip:bob@127.0.0.1:{b.port}", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.answer(sdp_offer(41000))
        await call.answered(5)

        def slow_answer(body: bytes) -> bytes:
            raise Reject(488, "no common crypto suite")
        incoming.on_offer = slow_answer
        with pytest.raises(CallFailed) as err:
            await call.reinvite(sdp_offer(40002))
        assert err.value.status == 488 and "no common crypto suite" in (err.value.warning or "")
        # glare (§14.2): hold both re-INVITEs until both are sent, so each side receives the
        # other's while its own is in progress and answers 491, whatever the scheduling
        incoming.on_offer = None
        held: list[tuple[Callable[[bytes, Addr, StreamConnection | None], None], bytes, Addr,
                         StreamConnection | None]] = []
        both_sent = asyncio.Event()

        def holder(ua: UserAgent) -> None:
            original = ua.transport.send_bytes

            def send(data: bytes, dest: Addr, conn: StreamConnection | None = None) -> None:
                if data.startswith(b"INVITE ") and len(held) < 2:
                    held.append((original, data, dest, conn))
                    if len(held) == 2:
                        both_sent.set()
                    return None
                return original(data, dest, conn)
            ua.transport.send_bytes = send  # type: ignore[method-assign]
        holder(a)
        holder(b)
        b.rng = lambda: 0.0   # bob does not own the Call-ID: his retry window is 0-2 s; 0 s here
        alice_reinvite = asyncio.ensure_future(call.reinvite(sdp_offer(40004)))
        bob_reinvite = asyncio.ensure_future(incoming.reinvite(sdp_offer(41004), retry_glare=True))
        await asyncio.wait_for(both_sent.wait(), 5)
        for original, data, dest, conn in held:
            original(data, dest, conn)
        with pytest.raises(CallFailed) as err:
            await alice_reinvite
        assert err.value.status == 491
        ok = await asyncio.wait_for(bob_reinvite, 5)   # bob's retry finds alice idle: she answers
        assert ok.status == 200 and ok.cseq[0] == 2    # bob's CSeq 1 met glare, 2 is the retry
        assert call.remote_body == sdp_offer(41004) and incoming.remote_body == call.local_body
        assert call.state is CallState.CONFIRMED and incoming.state is CallState.CONFIRMED


async def test_cancel_and_busy_direct() -> None:
    async with UserAgent(ua_config("alice")) as a, UserAgent(ua_config("bob")) as b:
        call = await a.invite(f"sip:bob@127.0.0.1:{b.port}", sdp_offer())
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await call.wait_state(CallState.PROCEEDING, 5)   # 100 Trying
        await call.cancel()
        with pytest.raises(CallFailed) as err:
            await call.answered(5)
        assert err.value.status == 487
        assert incoming.history == [CallState.INCOMING, CallState.TERMINATED]
        with pytest.raises(SessionStateError, match="not waiting for an answer"):
            await incoming.answer(b"")  # too late: the call was cancelled


async def test_timer_e_retransmits_and_timer_f_times_out_then_timer_b_gives_408() -> None:
    """The exact schedule is tests/sip/test_timers.py's; over a socket, the count and the bytes.

    The driver fires every timer that fell due in machine order, so a late loop sends the same
    retransmissions (later), never fewer: the count is the RFC's whatever the scheduling.
    """
    from softphone.sip.errors import TransactionTimeout
    from softphone.sip.message import Request
    from softphone.sip.transaction import ClientTransaction, Timers
    timers = Timers(t1=0.03, t2=0.12, t4=0.1)
    virtual = ClientTransaction(Request(method="OPTIONS", uri=SipUri.parse("sip:x@127.0.0.1")), False, timers)
    sends = len(virtual.start(0.0).send)
    while (deadline := virtual.deadline) is not None:
        sends += len(virtual.advance(deadline).send)
    assert sends == 18   # 0, .03, .09, .21, then every T2 = .12 s up to 64*T1 = 1.92 s
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(0.1)
    port = silent.getsockname()[1]
    try:
        async with UserAgent(ua_config("alice", timers=timers)) as ua:
            with pytest.raises(TransactionTimeout):
                await ua.options(f"sip:nobody@localhost:{port}")   # resolved by the system resolver
            copies = []
            while True:
                try:
                    copies.append(silent.recv(65535))
                except TimeoutError:
                    break
            assert len(copies) == sends and len(set(copies)) == 1   # one request, retransmitted
            call = await ua.invite(f"sip:nobody@127.0.0.1:{port}", sdp_offer().replace(b"A" * 1800, b"A"))
            with pytest.raises(CallFailed) as err:
                await call.answered(5)
            assert err.value.status == 408 and call.state is CallState.TERMINATED
    finally:
        silent.close()


async def test_a_storm_of_mutated_messages_never_breaks_the_ua(caplog: pytest.LogCaptureFixture) -> None:
    import random

    from .test_fuzz import SEED, TOKENS
    rng = random.Random(6)

    def mutate() -> bytes:
        data = bytearray(SEED)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randint(0, len(data))
            op = rng.randint(0, 2)
            if op == 0:
                data[pos:pos] = rng.choice(TOKENS)
            elif op == 1:
                del data[pos:pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        return bytes(data)

    async with UserAgent(ua_config("bob")) as ua:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        try:
            for _ in range(1500):
                sock.sendto(mutate(), ("127.0.0.1", ua.port))
                if _ % 50 == 0:
                    await asyncio.sleep(0)  # let the UA drain its socket
            for _ in range(20):  # and over TCP, one connection per message
                reader, writer = await asyncio.open_connection("127.0.0.1", ua.port)
                writer.write(mutate())
                await writer.drain()
                writer.close()
            await asyncio.sleep(0.5)
            ok = await ua.options(f"sip:bob@127.0.0.1:{ua.port}", timeout=5)
            assert ok.status == 200
            assert ua.stats["bad"] > 100 and len(ua._server) <= 1500 and len(ua.incoming._queue) <= 16  # type: ignore[attr-defined]
        finally:
            sock.close()
            while not ua.incoming.empty():
                await ua.incoming.get_nowait().reject(486)
    bad = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not bad, bad[0].getMessage()


async def test_lost_ack_for_a_reinvite_is_resent_on_the_2xx_retransmission() -> None:
    async with UserAgent(ua_config("alice")) as a, UserAgent(ua_config("bob")) as b:
        small = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        call = await a.invite(f"sip:bob@127.0.0.1:{b.port}", small)
        incoming = await asyncio.wait_for(b.incoming.get(), 5)
        await incoming.answer(small)
        await call.answered(5)
        original = a.transport.send_bytes
        acks: list[bytes] = []

        def drop_first_ack(data: bytes, dest: Addr, conn: StreamConnection | None = None) -> None:
            if data.startswith(b"ACK"):
                acks.append(data)
                if len(acks) == 1:
                    return None
            return original(data, dest, conn)
        a.transport.send_bytes = drop_first_ack  # type: ignore[method-assign]
        await call.reinvite(small.replace(b"4000", b"4010"))
        await asyncio.wait_for(asyncio.shield(incoming._acked), 5)  # bob got the re-sent ACK
        assert len(acks) >= 2 and acks[0] == acks[1]
        assert incoming.state is CallState.CONFIRMED


async def test_an_ack_for_a_2xx_that_reuses_the_invite_branch_still_reaches_the_call() -> None:
    async with UserAgent(ua_config("bob")) as ua:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        try:
            me = sock.getsockname()[1]
            sock.sendto(_request("INVITE", ua.port, "reuse", extra=f"Contact: <sip:x@127.0.0.1:{me}>\r\n"),
                        ("127.0.0.1", ua.port))
            incoming = await asyncio.wait_for(ua.incoming.get(), 5)
            answering = asyncio.ensure_future(incoming.answer(b""))

            def final() -> Response:
                while True:
                    msg = parse_message(sock.recv(65535))
                    assert isinstance(msg, Response)
                    if msg.status >= 200:
                        return msg
            ok = await asyncio.to_thread(final)
            assert ok.status == 200 and ok.to.tag == incoming.local_tag
            sock.sendto(_request("ACK", ua.port, "reuse", to_tag=f";tag={ok.to.tag}"), ("127.0.0.1", ua.port))
            await asyncio.wait_for(answering, 5)   # answer() returns once the ACK arrived
            assert incoming.state is CallState.CONFIRMED and incoming.machine.deadline is None
            assert await incoming.bye(timeout=0) is None   # our raw socket never answers the BYE
            assert incoming.state is CallState.TERMINATED
        finally:
            sock.close()
