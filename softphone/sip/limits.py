"""Per-source admission limits for inbound SIP (sans-IO: the caller passes ``now``).

A token bucket per source address bounds how fast one peer may make us work; a count per source
bounds how much of the shared server-transaction table and connection budget one peer may hold.
Sources we trust (our own proxy/registrar hop) are not limited: they carry everyone's calls.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Budgets for inbound traffic from one source address (an IP; the proxy's address is exempt).

    Requests over ``rate`` per second (``burst`` at once) are dropped without an answer: over UDP a
    source address can be forged, and an answer would make us a reflector. A source that already
    holds ``transactions`` server transactions gets 503 with Retry-After.
    """

    rate: float = 100.0                 # requests/s per source after the burst
    burst: float = 200.0
    # server transactions one source may hold (of MAX_SERVER_TRANSACTIONS = 16384): above what ``rate``
    # leaves alive for Timer J's 32 s (3200), so the rate binds first and a quarter of the table is the backstop
    transactions: int = 4096
    connections: int = 512              # inbound TCP/TLS connections, all sources (outgoing ones are apart)
    connections_per_source: int = 64
    first_message: float = 10.0         # seconds for a new inbound connection to deliver a complete message
    sources: int = 4096                 # buckets remembered (least recently seen are forgotten)


class TokenBuckets:
    """A token bucket per key: ``allow(key, now)`` takes one token if there is one."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # a forgotten source starts again with a full bucket
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class Counts:
    """How many of a shared resource each key holds, with a per-key cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        held = self._held.get(key, 0)
        if held >= self.cap:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)
