"""RFC 3263 target ordering with fixed records (exact), and the resolver against a real dnsmasq."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from softphone.sip.resolve import (
    Naptr,
    Resolver,
    Srv,
    Target,
    order_naptr,
    order_srv,
    split_hostport,
    targets_from_records,
)
from softphone.sip.uri import SipUri
from tests.conftest import require_tool


def seq(*values: float) -> Callable[[], float]:
    it = itertools.cycle(values)
    return lambda: next(it)


NAPTR = [Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.org."),
         Naptr(10, 20, "s", "SIP+D2T", "_sip._tcp.example.org."),
         Naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.org."),
         Naptr(10, 5, "s", "SIP+D2S", "_sip._sctp.example.org."),   # SCTP: not ours
         Naptr(5, 5, "u", "E2U+sip", "!^.*$!sip:x@y!")]              # not an SRV pointer
SRV = {"_sips._tcp.example.org": [Srv(10, 60, 5061, "a.example.org."), Srv(10, 20, 5061, "b.example.org."),
                                  Srv(20, 0, 5062, "c.example.org.")],
       "_sip._tcp.example.org": [Srv(10, 0, 5060, "a.example.org.")],
       "_sip._udp.example.org": [Srv(10, 0, 5060, "a.example.org.")]}
ADDRS = {"a.example.org": ["192.0.2.1", "2001:db8::1"], "b.example.org": ["192.0.2.2"],
         "c.example.org": ["192.0.2.3"], "example.org": ["192.0.2.9"]}


def test_naptr_order_then_our_transport_preference_then_theirs() -> None:
    assert order_naptr(NAPTR, ("tls", "tcp", "udp")) == [
        ("tls", "_sips._tcp.example.org"), ("tcp", "_sip._tcp.example.org"), ("udp", "_sip._udp.example.org")]
    # our preference beats the server's preference within one order, never the order itself
    assert order_naptr(NAPTR, ("udp", "tcp", "tls")) == [
        ("tcp", "_sip._tcp.example.org"), ("tls", "_sips._tcp.example.org"), ("udp", "_sip._udp.example.org")]
    assert order_naptr(NAPTR, ("tls",)) == [("tls", "_sips._tcp.example.org")]


def test_srv_priority_then_weighted_random_rfc2782() -> None:
    recs = [Srv(10, 0, 1, "zero"), Srv(10, 10, 2, "ten"), Srv(10, 30, 3, "thirty"), Srv(5, 1, 4, "first")]
    # priority 5 alone; then within 10 sorted [zero, ten, thirty], sums 0, 10, 40:
    # 0.5*40=20 -> thirty; then [zero, ten] 0.0*10=0 -> zero; then ten
    assert [r.target for r in order_srv(recs, seq(0.5, 0.5, 0.0, 0.0))] == ["first", "thirty", "zero", "ten"]
    # 0.2*40=8 -> ten; [zero, thirty] 0.99*30 -> thirty; zero
    assert [r.target for r in order_srv(recs, seq(0.0, 0.2, 0.99, 0.0))] == ["first", "ten", "thirty", "zero"]
    assert order_srv([Srv(0, 0, 0, ".")], seq(0.0)) == []  # "decidedly not available"


def test_srv_weights_give_proportional_first_choices() -> None:
    recs = [Srv(10, 60, 1, "a"), Srv(10, 20, 1, "b"), Srv(10, 20, 1, "c")]
    firsts = [order_srv(recs, seq((i + 0.5) / 100))[0].target for i in range(100)]
    assert (firsts.count("a"), firsts.count("b"), firsts.count("c")) == (60, 20, 20)


def test_full_chain_tls_preferred_with_fixed_records() -> None:
    uri = SipUri.parse("sip:example.org")
    got = targets_from_records(uri, ("tls", "tcp", "udp"), NAPTR, SRV, ADDRS, seq(0.1))  # 8 of 80: b
    assert got == [Target("tls", "192.0.2.2", 5061, "b.example.org", "example.org"),
                   Target("tls", "192.0.2.1", 5061, "a.example.org", "example.org"),
                   Target("tls", "2001:db8::1", 5061, "a.example.org", "example.org"),
                   Target("tls", "192.0.2.3", 5062, "c.example.org", "example.org"),
                   Target("tcp", "192.0.2.1", 5060, "a.example.org", "example.org"),
                   Target("tcp", "2001:db8::1", 5060, "a.example.org", "example.org"),
                   Target("udp", "192.0.2.1", 5060, "a.example.org", "example.org"),
                   Target("udp", "2001:db8::1", 5060, "a.example.org", "example.org")]
    # the Secure Chorus profile asks for TLS only: sips targets only
    only_tls = targets_from_records(uri, ("tls",), NAPTR, SRV, ADDRS, seq(0.0))
    assert {t.proto for t in only_tls} == {"tls"} and len(only_tls) == 4


def test_numeric_and_explicit_port_short_circuit() -> None:
    none: dict[str, list[Srv]] = {}
    assert targets_from_records(SipUri.parse("sip:192.0.2.7"), ("tls",), NAPTR, none, {}, seq(0)) == [
        Target("udp", "192.0.2.7", 5060, "192.0.2.7", "192.0.2.7")]
    assert targets_from_records(SipUri.parse("sip:[2001:db8::7]:5070;transport=tcp"), ("udp",), [], none, {},
                                seq(0)) == [Target("tcp", "2001:db8::7", 5070, "2001:db8::7", "2001:db8::7")]
    assert targets_from_records(SipUri.parse("sips:192.0.2.7"), ("udp",), [], none, {}, seq(0)) == [
        Target("tls", "192.0.2.7", 5061, "192.0.2.7", "192.0.2.7")]
    # a port but a name: A/AAAA only (§4.2), no NAPTR/SRV
    assert targets_from_records(SipUri.parse("sip:b.example.org:5999"), ("tls",), NAPTR, SRV, ADDRS, seq(0)) == [
        Target("udp", "192.0.2.2", 5999, "b.example.org", "b.example.org")]
    # transport but no port: SRV of that transport
    assert targets_from_records(SipUri.parse("sip:example.org;transport=tcp"), ("udp",), [], SRV, ADDRS,
                                seq(0))[0] == Target("tcp", "192.0.2.1", 5060, "a.example.org", "example.org")


def test_no_naptr_queries_srv_per_transport_then_a_records() -> None:
    uri = SipUri.parse("sip:example.org")
    got = targets_from_records(uri, ("tcp", "udp"), [], SRV, ADDRS, seq(0))
    assert [(t.proto, t.address) for t in got] == [("tcp", "192.0.2.1"), ("tcp", "2001:db8::1"),
                                                    ("udp", "192.0.2.1"), ("udp", "2001:db8::1")]
    assert targets_from_records(uri, ("tls",), [], {}, ADDRS, seq(0)) == [
        Target("tls", "192.0.2.9", 5061, "example.org", "example.org")]
    assert targets_from_records(SipUri.parse("sips:example.org"), ("tls", "udp"), NAPTR, SRV, ADDRS, seq(0))[0] \
        .proto == "tls"


def test_split_hostport() -> None:
    assert split_hostport("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_hostport("[::1]:5353") == ("::1", 5353)
    assert split_hostport("::1") == ("::1", 53)
    assert split_hostport("ns.example.org") == ("ns.example.org", 53)


async def test_resolver_against_dnsmasq(tmp_path: Path) -> None:
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    with Dnsmasq(tmp_path, naptr=[("lab.test", 10, 10, "s", "SIPS+D2T", "_sips._tcp.lab.test"),
                                  ("lab.test", 20, 10, "s", "SIP+D2U", "_sip._udp.lab.test")],
                 srv=[("_sips._tcp.lab.test", "kam1.lab.test", 5071, 10, 50),
                      ("_sips._tcp.lab.test", "kam2.lab.test", 5081, 20, 50),
                      ("_sip._udp.lab.test", "kam1.lab.test", 5070, 10, 0)],
                 hosts={"kam1.lab.test": "127.0.0.1", "kam2.lab.test": "127.0.0.2"}) as dns:
        resolver = Resolver(dns.nameserver, rng=seq(0.5))
        assert await resolver.resolve(SipUri.parse("sip:lab.test")) == [
            Target("tls", "127.0.0.1", 5071, "kam1.lab.test", "lab.test"),
            Target("tls", "127.0.0.2", 5081, "kam2.lab.test", "lab.test"),
            Target("udp", "127.0.0.1", 5070, "kam1.lab.test", "lab.test")]
        assert [t.port for t in await resolver.resolve(SipUri.parse("sip:lab.test"), ("udp",))] == [5070]
        assert await resolver.resolve(SipUri.parse("sip:kam2.lab.test:5000")) == [
            Target("udp", "127.0.0.2", 5000, "kam2.lab.test", "kam2.lab.test")]
        from softphone.sip.errors import TransportError
        with pytest.raises(TransportError, match="cannot resolve"):
            await resolver.resolve(SipUri.parse("sip:nothing.lab.test"))
        assert dns.matching(r"query\[NAPTR\] lab.test")


class _Server:
    """A UDP SIP stub answering every request with ``status`` (None: never answers)."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.seen = 0
        self.transport: object = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        from softphone.sip.message import Request, make_response, parse_message
        msg = parse_message(data)
        if isinstance(msg, Request) and msg.method != "ACK":
            self.seen += 1
            if self.status is not None:
                self.transport.sendto(make_response(msg, self.status).encode(), addr)  # type: ignore[attr-defined]

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


async def test_requests_fail_over_on_timeout_and_503(tmp_path: Path) -> None:
    """Three SRV targets: one never answers, one says 503, the third 200; OPTIONS gets the 200."""
    import asyncio

    from softphone.sip.transaction import Timers
    from softphone.sip.ua import UAConfig, UserAgent
    require_tool("dnsmasq")
    from lab.dns import Dnsmasq
    loop = asyncio.get_running_loop()
    servers = [_Server(None), _Server(503), _Server(200)]
    transports = []
    ports = []
    for server in servers:
        t, _ = await loop.create_datagram_endpoint(lambda s=server: s, local_addr=("127.0.0.1", 0))
        transports.append(t)
        ports.append(t.get_extra_info("sockname")[1])
    try:
        with Dnsmasq(tmp_path, srv=[("_sip._udp.lab.test", f"s{i}.lab.test", port, 10 + i, 0)
                                    for i, port in enumerate(ports)],
                     hosts={f"s{i}.lab.test": "127.0.0.1" for i in range(3)}) as dns:
            cfg = UAConfig(aor="sip:alice@lab.test", nameserver=dns.nameserver, timers=Timers(t1=0.02, t2=0.1, t4=0.1))
            async with UserAgent(cfg) as ua:
                started = loop.time()
                resp = await ua.options("sip:lab.test", timeout=3)
                assert resp.status == 200
                assert [s.seen >= 1 for s in servers] == [True, True, True]
                assert loop.time() - started < 3     # Timer F is 64*T1 = 1.28 s on the silent one
    finally:
        for t in transports:
            t.close()
