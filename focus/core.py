"""The forwarding table, sans-IO: a datagram and the leg it came in on → the datagrams to send.

One leg per member, each with its own UDP port on the focus. A datagram arriving on a leg from that
member's address (latched from the first datagram if the SDP address is not the one packets come from,
as behind a NAT) goes out unchanged on every other leg that knows where its member is. Only counters are
kept; the bytes are never looked into, copied into state, or stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from focus.errors import FocusError

Address = tuple[str, int]

MAX_LEGS = 64


class UnknownLeg(FocusError):
    """A datagram or command names a leg that is not (or no longer) in the table."""


@dataclass
class LegCounters:
    """Per-member counters (packets and octets in from the member, out to the member, dropped)."""

    packets_in: int = 0
    octets_in: int = 0
    packets_out: int = 0
    octets_out: int = 0
    dropped_wrong_source: int = 0


@dataclass
class Leg:
    """One member's leg: its name (the member's URI, for counters only) and where its packets go."""

    name: str
    remote: Address | None
    latched: bool = False
    counters: LegCounters = field(default_factory=LegCounters)


@dataclass(frozen=True)
class Outgoing:
    """Send ``data`` from leg ``leg``'s port to ``dest``."""

    leg: int
    data: bytes
    dest: Address


class Forwarder:
    """Legs by id; :meth:`receive` is the whole forwarding decision (no I/O, no clock, no payload state)."""

    def __init__(self, max_legs: int = MAX_LEGS) -> None:
        self.max_legs = max_legs
        self.legs: dict[int, Leg] = {}
        self._next = 1

    def add_leg(self, name: str, remote: Address | None = None) -> int:
        """A new member leg; ``remote`` from its SDP (c=/m=), latched to the real source on first packet."""
        if len(self.legs) >= self.max_legs:
            raise FocusError(f"focus full ({self.max_legs} legs)")
        leg_id = self._next
        self._next += 1
        self.legs[leg_id] = Leg(name, remote)
        return leg_id

    def remove_leg(self, leg_id: int) -> None:
        if self.legs.pop(leg_id, None) is None:
            raise UnknownLeg(f"no leg {leg_id}")

    def receive(self, leg_id: int, data: bytes, source: Address) -> list[Outgoing]:
        """``data`` arrived on ``leg_id``'s port from ``source``: the same bytes to every other known member."""
        leg = self.legs.get(leg_id)
        if leg is None:
            raise UnknownLeg(f"no leg {leg_id}")
        if not leg.latched:  # symmetric RTP (RFC 4961): the first packet fixes where the member really is
            leg.remote, leg.latched = source, True
        elif source != leg.remote:
            leg.counters.dropped_wrong_source += 1
            return []
        leg.counters.packets_in += 1
        leg.counters.octets_in += len(data)
        out: list[Outgoing] = []
        for other_id, other in self.legs.items():
            if other_id == leg_id or other.remote is None:
                continue
            other.counters.packets_out += 1
            other.counters.octets_out += len(data)
            out.append(Outgoing(other_id, data, other.remote))
        return out

    def counters(self) -> dict[str, LegCounters]:
        """Counters by member name (a snapshot)."""
        return {leg.name: LegCounters(**vars(leg.counters)) for leg in self.legs.values()}
