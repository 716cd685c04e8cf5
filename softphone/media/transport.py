"""Datagram transports for :class:`~softphone.media.session.MediaSession`: real UDP or a simulated network.

A :class:`Network` opens an :class:`Endpoint` bound to a local address; the endpoint sends datagrams and
hands every one that arrives to the ``receive(data, source)`` callback given to :meth:`Network.open`.
:class:`UdpNetwork` (the default) is asyncio UDP. :class:`SimNetwork` is an in-memory network on a
:class:`~softphone.media.clock.Clock` with per-direction seeded loss, delay and jitter (uniform extra
delay, which also reorders), so a call over it is reproducible packet for packet; a *tap* on an address
sees what would be delivered there and decides what is (tests of forged and replayed packets).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from softphone.media.clock import Clock
from softphone.media.errors import MediaError

Address = tuple[str, int]
Receive = Callable[[bytes, Address], None]


class Endpoint(Protocol):
    """One bound datagram socket."""

    @property
    def local_addr(self) -> Address: ...

    def sendto(self, data: bytes, addr: Address) -> None: ...

    def close(self) -> None: ...


class Network(Protocol):
    """Opens endpoints; raises ``OSError`` when the address cannot be bound."""

    async def open(self, local_addr: Address, receive: Receive) -> Endpoint: ...


class DatagramTap(Protocol):
    """Sees every datagram a session sends and receives (the phone's own capture, ``softphone.capture``)."""

    def udp(self, src: Address, dst: Address, data: bytes) -> None: ...


class _TappedEndpoint:
    def __init__(self, inner: Endpoint, tap: DatagramTap) -> None:
        self._inner = inner
        self._tap = tap
        host, port = inner.local_addr[:2]
        self._local: Address = (str(host), int(port))

    @property
    def local_addr(self) -> Address:
        return self._local

    @property
    def errors(self) -> int:
        return int(getattr(self._inner, "errors", 0))

    def sendto(self, data: bytes, addr: Address) -> None:
        self._tap.udp(self._local, addr, data)
        self._inner.sendto(data, addr)

    def close(self) -> None:
        self._inner.close()


class TappedNetwork:
    """``inner`` (any :class:`Network`: the media engine, UDP, simulated) with every datagram its endpoints
    send and receive shown to ``tap`` first, on the thread that sends or receives it. The media path is
    the inner network's, unchanged: a capture does not move media off the engine thread."""

    def __init__(self, inner: Network, tap: DatagramTap) -> None:
        self.inner = inner
        self.tap = tap

    async def open(self, local_addr: Address, receive: Receive) -> Endpoint:
        holder: list[Address] = [local_addr]

        def tapped(data: bytes, source: Address) -> None:
            self.tap.udp(source, holder[0], data)
            receive(data, source)

        endpoint = _TappedEndpoint(await self.inner.open(local_addr, tapped), self.tap)
        holder[0] = endpoint.local_addr
        return endpoint


# --- UDP (the phone) -------------------------------------------------------------------------------

class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.errors = 0

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.receive(data, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable: keep going
        self.errors += 1


class UdpEndpoint:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _UdpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @property
    def local_addr(self) -> Address:
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def errors(self) -> int:
        """ICMP errors reported for what we sent (port unreachable and the like)."""
        return self._protocol.errors

    def sendto(self, data: bytes, addr: Address) -> None:
        self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()


class UdpNetwork:
    """asyncio UDP sockets on the running loop."""

    async def open(self, local_addr: Address, receive: Receive) -> Endpoint:
        loop = asyncio.get_running_loop()
        protocol = _UdpProtocol(receive)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=local_addr)
        return UdpEndpoint(transport, protocol)


# --- simulated --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    """Impairment of one direction: loss and duplication probabilities, fixed delay and extra delay uniform in
    [0, jitter] (drawn per copy, so jitter reorders)."""

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise MediaError(f"{name} must be within 0..1, got {v}")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise MediaError("delay and jitter must be non-negative")


@dataclass
class LinkStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered: int = 0


class _Direction:
    def __init__(self, link: Link, seed: str) -> None:
        self.link = link
        self.rng = random.Random(seed)
        self.stats = LinkStats()


class SimEndpoint:
    def __init__(self, network: SimNetwork, addr: Address, receive: Receive) -> None:
        self._network = network
        self._addr = addr
        self.receive = receive
        self.closed = False

    @property
    def local_addr(self) -> Address:
        return self._addr

    def sendto(self, data: bytes, addr: Address) -> None:
        if not self.closed:
            self._network.send(self._addr, addr, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._network.endpoints.pop(self._addr, None)


class SimNetwork:
    """An in-memory network on ``clock``; every direction between two addresses is a seeded :class:`Link`."""

    def __init__(self, clock: Clock, link: Link = Link(), seed: int = 1) -> None:
        self.clock = clock
        self.default_link = link
        self.seed = seed
        self.endpoints: dict[Address, SimEndpoint] = {}
        self.taps: dict[Address, Receive] = {}
        self._links: dict[tuple[Address, Address], Link] = {}
        self._directions: dict[tuple[Address, Address], _Direction] = {}
        self._next_port = 40000

    def set_link(self, src: Address, dst: Address, link: Link) -> None:
        """Impair datagrams from ``src`` to ``dst`` with ``link`` (before any are sent)."""
        self._links[src, dst] = link

    def stats(self, src: Address, dst: Address) -> LinkStats:
        return self._direction(src, dst).stats

    def _direction(self, src: Address, dst: Address) -> _Direction:
        d = self._directions.get((src, dst))
        if d is None:
            link = self._links.get((src, dst), self.default_link)
            d = self._directions[src, dst] = _Direction(link, f"{self.seed}:{src}:{dst}")
        return d

    async def open(self, local_addr: Address, receive: Receive) -> Endpoint:
        host, port = local_addr
        if port == 0:
            while (host, self._next_port) in self.endpoints:
                self._next_port += 1
            port = self._next_port
        addr = (host, port)
        if addr in self.endpoints:
            raise OSError(98, "Address already in use")
        endpoint = self.endpoints[addr] = SimEndpoint(self, addr, receive)
        return endpoint

    def send(self, src: Address, dst: Address, data: bytes) -> None:
        """Carry one datagram through the ``src`` → ``dst`` link (dropped, or delivered after its delay)."""
        d = self._direction(src, dst)
        d.stats.sent += 1
        if d.link.loss and d.rng.random() < d.link.loss:
            d.stats.dropped += 1
            return
        copies = 2 if d.link.duplicate and d.rng.random() < d.link.duplicate else 1
        d.stats.duplicated += copies - 1
        tap = self.taps.get(dst)

        def arrive() -> None:
            d.stats.delivered += 1
            if tap is not None:
                tap(data, src)
            else:
                self.deliver(data, src, dst)

        for _ in range(copies):
            delay = d.link.delay_ms + (d.rng.uniform(0, d.link.jitter_ms) if d.link.jitter_ms else 0.0)
            self.clock.call_at(self.clock.time() + delay / 1000, arrive)

    def deliver(self, data: bytes, src: Address, dst: Address) -> None:
        """Hand ``data`` to whatever is bound at ``dst`` now, as if from ``src`` (bypassing links and taps)."""
        endpoint = self.endpoints.get(dst)
        if endpoint is not None:
            endpoint.receive(data, src)
