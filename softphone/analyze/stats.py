"""Per-stream RTP statistics from headers in arrival order (RFC 3550 §6.4.1, A.1, A.8).

Pure: feed ``(sequence, timestamp, arrival)`` of every captured packet of one SSRC. Loss counts
sequence numbers never captured between the first and the highest; a packet whose sequence number
was already seen is a duplicate; one below the highest seen so far is reordered. Jitter is the
RFC 3550 interarrival jitter estimate, in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RtpStats:
    clock_rate: int
    packets: int = 0
    duplicates: int = 0
    reordered: int = 0
    jitter: float = 0.0  # RTP timestamp units
    first: float | None = None
    last: float | None = None
    max_ext: int = -1
    min_ext: int = -1
    seen: dict[int, float] = field(default_factory=dict)  # extended sequence → arrival
    jitter_series: list[tuple[float, float]] = field(default_factory=list)  # (arrival, jitter ms)
    _transit: float | None = None

    def extend(self, seq: int) -> int:
        """Extended sequence number of ``seq`` nearest the highest seen (RFC 3550 A.1)."""
        if self.max_ext < 0:
            return seq
        cycles = self.max_ext & ~0xFFFF
        candidates = (cycles - 0x10000 + seq, cycles + seq, cycles + 0x10000 + seq)
        return min((c for c in candidates if c >= 0), key=lambda c: abs(c - self.max_ext))

    def add(self, seq: int, timestamp: int, arrival: float) -> int:
        """Count one packet; returns its extended sequence number."""
        self.packets += 1
        self.first = arrival if self.first is None else self.first
        self.last = arrival
        ext = self.extend(seq)
        if ext in self.seen:
            self.duplicates += 1
            return ext
        self.seen[ext] = arrival
        if self.max_ext < 0:
            self.max_ext = self.min_ext = ext
        elif ext > self.max_ext:
            self.max_ext = ext
        else:
            self.reordered += 1
            self.min_ext = min(self.min_ext, ext)
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 0x80000000:  # ignore a timestamp wrap or jump
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        self.jitter_series.append((arrival, self.jitter_ms))
        return ext

    @property
    def expected(self) -> int:
        return 0 if self.max_ext < 0 else self.max_ext - self.min_ext + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - len(self.seen))

    @property
    def jitter_ms(self) -> float:
        return self.jitter / self.clock_rate * 1000.0

    def loss_series(self, bin_seconds: float = 1.0) -> list[tuple[float, int]]:
        """Lost packets per time bin (a missing packet is placed at its predecessor's arrival)."""
        if self.max_ext < 0 or self.first is None:
            return []
        bins: dict[int, int] = {}
        prev = self.first
        for ext in range(self.min_ext, self.max_ext + 1):
            t = self.seen.get(ext)
            if t is None:
                b = int((prev - self.first) // bin_seconds)
                bins[b] = bins.get(b, 0) + 1
            else:
                prev = t
        span = int(((self.last or self.first) - self.first) // bin_seconds) + 1
        return [(self.first + i * bin_seconds, bins.get(i, 0)) for i in range(span)]
