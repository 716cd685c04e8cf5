"""One hostile peer cannot deny service: per-source rate and table shares, separate connection budgets,
a first-message deadline, and completed transactions that keep only their encoded final response."""

from __future__ import annotations

import asyncio

import pytest

from softphone.sip import dispatch
from softphone.sip.limits import Counts, Limits, TokenBuckets
from softphone.sip.message import Request, Response, parse_message
from softphone.sip.transport import Addr, Source, StreamConnection
from softphone.sip.ua import UserAgent

from .conftest import ua_config


def _request(method: str, branch: str, host: str = "192.0.2.1", body: bytes = b"", proto: str = "UDP") -> bytes:
    extra = "Contact: <sip:x@192.0.2.1>\r\n" if method == "INVITE" else ""
    return (f"{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{proto} {host}:5060;branch=z9hG4bK{branch};rport\r\n"
            f"From: <sip:x@{host}>;tag=f{branch}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: {branch}\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_token_bucket_per_source_with_a_virtual_clock() -> None:
    buckets = TokenBuckets(rate=10.0, burst=5.0, max_keys=3)
    assert [buckets.allow("a", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert buckets.allow("b", 0.0)  # another source has its own bucket
    assert not buckets.allow("a", 0.05)  # half a token
    assert buckets.allow("a", 0.1) and not buckets.allow("a", 0.1)  # 10/s refill
    assert sum(buckets.allow("a", 10.0) for _ in range(20)) == 5  # refill stops at the burst
    for key in "cde":
        buckets.allow(key, 11.0)
    assert len(buckets) == 3  # bounded: the least recently seen sources are forgotten
    counts = Counts(2)
    assert [counts.acquire("x") for _ in range(3)] == [True, True, False] and counts.acquire("y")
    counts.release("x")
    assert counts.acquire("x") and counts.held("x") == 2


async def test_a_full_table_from_one_source_does_not_refuse_another_source(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "MAX_SERVER_TRANSACTIONS", 400)  # the shared table, small for speed
    limits = Limits(transactions=100)
    async with UserAgent(ua_config("bob", limits=limits)) as ua:
        sent: list[tuple[bytes, Addr]] = []

        def capture(data: bytes, dest: Addr, conn: StreamConnection | None = None) -> None:
            sent.append((data, dest))

        ua.transport.send_bytes = capture  # type: ignore[method-assign]
        flood = Source("udp", "192.0.2.1", 5060)
        template = _request("OPTIONS", "BRANCH")
        for i in range(dispatch.MAX_SERVER_TRANSACTIONS):
            ua.dispatcher.on_message(parse_message(template.replace(b"BRANCH", b"f%d" % i)), flood)
        statuses = [parse_message(data).status for data, _ in sent]  # type: ignore[attr-defined]
        assert statuses.count(200) == limits.transactions and statuses[-1] == 503
        assert b"Retry-After: 5" in sent[-1][0]
        sent.clear()
        ua.dispatcher.on_message(parse_message(_request("INVITE", "call1", "192.0.2.2")),
                                 Source("udp", "192.0.2.2", 5060))
        assert [parse_message(data).status for data, _ in sent] == [100]  # type: ignore[attr-defined]
        session = ua.incoming.get_nowait()
        await session.reject(486)


async def test_a_completed_transaction_keeps_its_encoded_response_not_the_request() -> None:
    async with UserAgent(ua_config("bob")) as ua:
        ua.transport.send_bytes = lambda *a, **k: None  # type: ignore[method-assign]
        ua.dispatcher.on_message(parse_message(_request("OPTIONS", "big", body=b"x" * 30000)),
                                 Source("udp", "192.0.2.1", 5060))
        (tx,) = ua._server.values()
        assert isinstance(tx.request, Request) and tx.request.body == b""
        assert [name for name, _ in tx.request.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]
        assert tx.last_response is None and tx.machine.last is not None and b"200 OK" in tx.machine.last


class _Proxy(asyncio.Protocol):
    """A TCP 'proxy' answering every request 200."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            req = parse_message(self.buf)
            self.buf = b""
            resp = Response(status=200, reason="OK")
            for name in ("Via", "From", "To", "Call-ID", "CSeq"):
                for value in req.headers.get_all(name):
                    resp.headers.add(name, value)
            self.transport.write(resp.encode())


async def test_idle_inbound_sockets_over_the_cap_leave_the_outgoing_proxy_flow_working() -> None:
    loop = asyncio.get_running_loop()
    proxy = await loop.create_server(_Proxy, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    limits = Limits(connections=16, connections_per_source=64)
    writers = []
    try:
        async with UserAgent(ua_config("bob", proxy=f"sip:127.0.0.1:{port};transport=tcp", limits=limits)) as ua:
            for _ in range(limits.connections + 8):
                _, writer = await asyncio.open_connection("127.0.0.1", ua.port)
                writers.append(writer)
            await asyncio.sleep(0.1)
            assert ua.transport.inbound_count == limits.connections
            resp = await ua.options(f"sip:127.0.0.1:{port};transport=tcp", timeout=5)
            assert resp.status == 200
    finally:
        for writer in writers:
            writer.close()
        proxy.close()
        await proxy.wait_closed()


async def test_a_connection_that_says_nothing_in_time_is_closed() -> None:
    limits = Limits(first_message=0.3)
    async with UserAgent(ua_config("bob", limits=limits)) as ua:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", ua.port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", ua.port)
        slow_w.write(b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n")  # slowloris: a start line, never the rest
        good_r, good_w = await asyncio.open_connection("127.0.0.1", ua.port)
        good_w.write(_request("OPTIONS", "ok1", "127.0.0.1", proto="TCP"))
        assert (await asyncio.wait_for(good_r.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200")
        assert await asyncio.wait_for(silent_r.read(), 3) == b""
        assert await asyncio.wait_for(slow_r.read(), 3) == b""
        await asyncio.sleep(0.2)
        good_w.write(_request("OPTIONS", "ok2", "127.0.0.1", proto="TCP"))  # past the deadline: still open
        assert (await asyncio.wait_for(good_r.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200")
        assert ua.transport.inbound_count == 1
        for w in (silent_w, slow_w, good_w):
            w.close()


async def test_a_udp_flood_from_one_address_is_cut_to_its_rate() -> None:
    limits = Limits(rate=5.0, burst=20.0)
    async with UserAgent(ua_config("bob", limits=limits)) as ua:
        loop = asyncio.get_running_loop()
        replies: list[bytes] = []

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                replies.append(data)

        transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", ua.port))
        try:
            for i in range(200):
                transport.sendto(_request("OPTIONS", f"u{i}", "127.0.0.1"))
                if i % 20 == 19:
                    await asyncio.sleep(0)  # let the UA read before the socket buffer overflows
            await asyncio.sleep(0.5)
        finally:
            transport.close()
        assert 20 <= len(replies) <= 30 and ua.transport.dropped >= 100  # (the kernel may drop some first)
