"""A UDP relay that impairs traffic between two endpoints on loopback: seeded random loss, burst loss
(Gilbert–Elliott two-state model), jitter (uniform extra delay, which also reorders), explicit reordering
and duplication. Each direction has its own seeded generator so runs are reproducible.

Side A receives from ``a_peer`` and forwards out of side B to ``b_peer``, and vice versa; so point one
endpoint's remote address at :attr:`ImpairmentRelay.a_addr` and the other's at :attr:`b_addr`.
The relay stops itself after ``max_seconds`` and holds at most ``max_queue`` packets in flight.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

Address = tuple[str, int]


class ImpairError(ValueError):
    """Bad impairment parameters or a non-loopback address."""


@dataclass(frozen=True)
class Impairment:
    """Impairment of one direction; probabilities in 0..1, times in milliseconds."""

    loss: float = 0.0
    burst_enter: float = 0.0  # P(good → bad state) per packet; in the bad state every packet is lost
    burst_exit: float = 0.5  # P(bad → good) per packet; mean burst length 1/burst_exit
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # extra delay uniform in [0, jitter_ms]
    reorder: float = 0.0  # P(hold a packet back until after the next one)
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "burst_enter", "burst_exit", "reorder", "duplicate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ImpairError(f"{name} must be within 0..1, got {v}")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ImpairError("delay and jitter must be non-negative")


@dataclass
class DirectionStats:
    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    overflow: int = 0


class _Direction:
    def __init__(self, imp: Impairment, seed: int, relay: ImpairmentRelay, out_side: str) -> None:
        self.imp = imp
        self.rng = random.Random(seed)
        self.relay = relay
        self.out_side = out_side
        self.bad = False
        self.held: bytes | None = None
        self.stats = DirectionStats()

    def handle(self, data: bytes) -> None:
        s, imp, rng = self.stats, self.imp, self.rng
        s.received += 1
        if imp.burst_enter:
            self.bad = rng.random() >= imp.burst_exit if self.bad else rng.random() < imp.burst_enter
        if self.bad or rng.random() < imp.loss:
            s.dropped += 1
            return
        copies = 2 if rng.random() < imp.duplicate else 1
        s.duplicated += copies - 1
        if self.held is None and rng.random() < imp.reorder:
            self.held = data
            s.reordered += 1
            return
        for _ in range(copies):
            self._schedule(data)
        if self.held is not None:
            held, self.held = self.held, None
            self._schedule(held)

    def _schedule(self, data: bytes) -> None:
        if self.relay.in_flight >= self.relay.max_queue:
            self.stats.overflow += 1
            return
        delay = (self.imp.delay_ms + self.rng.uniform(0, self.imp.jitter_ms)) / 1000
        self.relay.in_flight += 1
        asyncio.get_running_loop().call_later(delay, self._emit, data)

    def _emit(self, data: bytes) -> None:
        self.relay.in_flight -= 1
        if self.relay.send(self.out_side, data):
            self.stats.forwarded += 1


class _Side(asyncio.DatagramProtocol):
    def __init__(self, direction: _Direction) -> None:
        self.direction = direction

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.direction.handle(data)

    def error_received(self, exc: Exception) -> None:
        pass


def _loopback(addr: Address) -> Address:
    if addr[0] not in ("127.0.0.1", "::1"):
        raise ImpairError(f"impairment relay only runs on loopback, not {addr[0]}")
    return addr


class ImpairmentRelay:
    """Bidirectional impairing UDP relay; ``async with`` or ``start()``/``stop()``."""

    def __init__(self, a_peer: Address, b_peer: Address, a_to_b: Impairment = Impairment(),
                 b_to_a: Impairment | None = None, seed: int = 1, max_seconds: float = 120.0,
                 max_queue: int = 10000, host: str = "127.0.0.1") -> None:
        self.a_peer = _loopback(a_peer)
        self.b_peer = _loopback(b_peer)
        self.host = _loopback((host, 0))[0]
        self.max_seconds = max_seconds
        self.max_queue = max_queue
        self.in_flight = 0
        self.ab = _Direction(a_to_b, seed, self, "b")
        self.ba = _Direction(b_to_a if b_to_a is not None else a_to_b, seed + 1, self, "a")
        self._a: asyncio.DatagramTransport | None = None
        self._b: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._a, _ = await loop.create_datagram_endpoint(lambda: _Side(self.ab), local_addr=(self.host, 0))
        self._b, _ = await loop.create_datagram_endpoint(lambda: _Side(self.ba), local_addr=(self.host, 0))
        self._timer = loop.call_later(self.max_seconds, self.close)

    @property
    def a_addr(self) -> Address:
        """Where the A endpoint sends (its remote address)."""
        assert self._a is not None, "relay not started"
        return self._a.get_extra_info("sockname")[:2]

    @property
    def b_addr(self) -> Address:
        """Where the B endpoint sends."""
        assert self._b is not None, "relay not started"
        return self._b.get_extra_info("sockname")[:2]

    def send(self, side: str, data: bytes) -> bool:
        transport, peer = (self._b, self.b_peer) if side == "b" else (self._a, self.a_peer)
        if transport is None or transport.is_closing():
            return False
        transport.sendto(data, peer)
        return True

    def close(self) -> None:
        """Stop relaying (also called when ``max_seconds`` elapse)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in (self._a, self._b):
            if t is not None:
                t.close()
        self._a = self._b = None

    async def __aenter__(self) -> ImpairmentRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
