"""DTMF as RTP telephone-event payloads (RFC 4733 §2.3, events 0–15 from §3.2).

Payload: event (8) ‖ E (1) ‖ R (1) ‖ volume (6) ‖ duration (16, timestamp units). A sender emits one
packet per 20 ms with the event's start timestamp, the marker bit on the first, and the final (E=1)
packet three times (§2.5.1.4). The receiver reports each event once, keyed by its start timestamp.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from softphone.media.errors import MediaError

EVENTS = "0123456789*#ABCD"


class DtmfError(MediaError, ValueError):
    """Not a DTMF digit, or a malformed telephone-event payload."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event payload."""

    event: int
    end: bool
    volume: int
    duration: int

    def serialize(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F),
                           min(self.duration, 0xFFFF))

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        if len(data) < 4:
            raise DtmfError(f"telephone-event payload too short ({len(data)} octets)")
        event, flags, duration = struct.unpack_from("!BBH", data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


def event_code(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit ``0-9 * # A-D``."""
    code = EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return code


def event_payloads(digit: str, duration_ms: int, clock_rate: int, volume: int = 10,
                   packet_ms: int = 20) -> list[tuple[bool, bytes]]:
    """``(marker, payload)`` for each packet of one event, all sent with the event's start timestamp."""
    if not 40 <= duration_ms <= 5000:
        raise DtmfError(f"DTMF duration {duration_ms} ms outside 40..5000")
    code = event_code(digit)
    step = clock_rate * packet_ms // 1000
    total = clock_rate * duration_ms // 1000
    out: list[tuple[bool, bytes]] = []
    dur = step
    while dur < total:
        out.append((not out, TelephoneEvent(code, False, volume, dur).serialize()))
        dur += step
    final = TelephoneEvent(code, True, volume, total).serialize()
    out.extend([(not out, final), (False, final), (False, final)])
    return out


class DtmfReceiver:
    """Turns telephone-event packets into digits, once per event (dedup on start timestamp)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._order: list[int] = []

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        """A digit when an event is first seen, else ``None``; raises :class:`DtmfError` if malformed."""
        ev = TelephoneEvent.parse(payload)
        if timestamp in self._seen or ev.digit is None:
            return None
        self._seen.add(timestamp)
        self._order.append(timestamp)
        if len(self._order) > 64:
            self._seen.discard(self._order.pop(0))
        return ev.digit
