"""RTP fixed header (RFC 3550 §5.1) and sequence-number tracking (RFC 3550 §A.1, §A.3, §A.8).

Packets are CSRC-free on send; on receive CSRCs, a header extension and padding are parsed and skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from softphone.media.errors import MediaError

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")


class RtpError(MediaError, ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet: header fields and payload (RFC 3550 §5.1)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def serialize(self) -> bytes:
        """Encode with V=2, no padding, no extension, CC=0."""
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} out of range 0..127")
        return _HEADER.pack(
            RTP_VERSION << 6,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        ) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Decode one RTP packet; raises :class:`RtpError` for anything malformed."""
        if len(data) < _HEADER.size:
            raise RtpError(f"RTP packet too short ({len(data)} octets)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6} is not 2")
        offset = _HEADER.size + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension (RFC 3550 §5.3.1)
            if len(data) < offset + 4:
                raise RtpError("RTP header extension truncated")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:  # padding: last octet counts the padding octets
            pad = data[-1] if data else 0
            if pad == 0:
                raise RtpError("RTP padding count is zero")
            end -= pad
        if offset > end:
            raise RtpError("RTP header longer than the packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: RTCP packet types 192..223 occupy the second octet's 64..95 RTP range."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class SequenceTracker:
    """Extended sequence numbers and loss/jitter per RFC 3550 §A.1, §A.3 and §A.8 for one source."""

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self._transit: float | None = None
        self.jitter = 0.0  # in timestamp units

    def update(self, seq: int, timestamp: int, arrival: float) -> int:
        """Record a packet; return its extended sequence number (cycles + seq)."""
        if self.base_seq is None:
            self.base_seq = seq
            self.max_seq = seq
            ext = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if delta < self.MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
                ext = self.cycles + seq
            elif delta <= 0x10000 - self.MAX_MISORDER:
                # a big jump: treat as a restarted sequence (RFC 3550 §A.1 resync, simplified)
                self.base_seq = seq
                self.max_seq = seq
                self.cycles = 0
                self.received = 0
                self.expected_prior = self.received_prior = 0
                ext = seq
            else:  # duplicate or reordered within the window
                back = 0x10000 - delta
                ext = self.cycles + self.max_seq - back
        self.received += 1
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        return ext

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (RFC 3550 §A.3); duplicates can make it negative, clamp at 0."""
        return max(0, self.expected - self.received)

    def fraction_lost(self) -> int:
        """Fraction lost since the last call, as the 8-bit fixed-point RFC 3550 field."""
        expected = self.expected
        interval_expected = expected - self.expected_prior
        interval_received = self.received - self.received_prior
        self.expected_prior, self.received_prior = expected, self.received
        lost = interval_expected - interval_received
        if interval_expected <= 0 or lost <= 0:
            return 0
        return min(255, (lost << 8) // interval_expected)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate
