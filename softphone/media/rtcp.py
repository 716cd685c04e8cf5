"""RTCP sender/receiver reports and BYE (RFC 3550 §6.4.1, §6.4.2, §6.6), compound packets (§6.1).

Round-trip time from a report block: ``arrival - LSR - DLSR`` in 1/65536 s (RFC 3550 §6.4.1).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from softphone.media.errors import MediaError

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203

_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_BLOCK = struct.Struct("!IIIIII")


class RtcpError(MediaError, ValueError):
    """A datagram that is not a well-formed RTCP compound packet."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1): about source ``ssrc``."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int

    def serialize(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, (self.fraction_lost << 24) | lost, self.highest_seq & 0xFFFFFFFF,
                           self.jitter & 0xFFFFFFFF, self.lsr & 0xFFFFFFFF, self.dlsr & 0xFFFFFFFF)

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = word & 0xFFFFFF
        if lost & 0x800000:  # signed 24-bit
            lost -= 0x1000000
        return cls(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (PT 200): sender info plus report blocks."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (PT 201)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (PT 203): the listed sources are leaving."""

    sources: tuple[int, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Sdes:
    """SDES (PT 202) carrying one CNAME item per source (RFC 3550 §6.5.1); other items are skipped."""

    cnames: tuple[tuple[int, str], ...]


RtcpPacket = SenderReport | ReceiverReport | Bye | Sdes


@dataclass(slots=True)
class Compound:
    """Parsed compound RTCP; packet types this module does not model (SDES, APP, ...) are skipped."""

    packets: list[RtcpPacket] = field(default_factory=list)


def ntp_now(wallclock: float | None = None) -> int:
    """64-bit NTP timestamp of ``wallclock`` (Unix seconds; default now)."""
    t = time.time() if wallclock is None else wallclock
    secs = int(t) + _NTP_EPOCH_OFFSET
    frac = int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF
    return ((secs & 0xFFFFFFFF) << 32) | frac


def middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (the LSR field)."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtt_seconds(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time from a report block about our SR, or ``None`` if no SR has been reported yet."""
    if block.lsr == 0:
        return None
    rtt = (middle32(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt > 0x7FFFFFFF:
        return None
    return rtt / 65536.0


def _header(pt: int, count: int, body_len: int) -> bytes:
    total = 4 + body_len
    return struct.pack("!BBH", 0x80 | count, pt, total // 4 - 1)


def serialize(packet: RtcpPacket) -> bytes:
    """Encode one RTCP packet (callers concatenate into a compound)."""
    if isinstance(packet, SenderReport):
        body = struct.pack("!IQIII", packet.ssrc, packet.ntp_timestamp, packet.rtp_timestamp & 0xFFFFFFFF,
                           packet.packet_count & 0xFFFFFFFF, packet.octet_count & 0xFFFFFFFF)
        body += b"".join(b.serialize() for b in packet.reports)
        return _header(PT_SR, len(packet.reports), len(body)) + body
    if isinstance(packet, ReceiverReport):
        body = struct.pack("!I", packet.ssrc) + b"".join(b.serialize() for b in packet.reports)
        return _header(PT_RR, len(packet.reports), len(body)) + body
    if isinstance(packet, Sdes):
        body = b""
        for ssrc, cname in packet.cnames:
            text = cname.encode()[:255]
            chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
            body += chunk + b"\x00" * (-len(chunk) % 4)
        return _header(PT_SDES, len(packet.cnames), len(body)) + body
    body = b"".join(struct.pack("!I", s) for s in packet.sources)
    if packet.reason:
        reason = packet.reason.encode()[:255]
        body += bytes([len(reason)]) + reason
        body += b"\x00" * (-len(body) % 4)
    return _header(PT_BYE, len(packet.sources), len(body)) + body


def parse(data: bytes) -> Compound:
    """Decode a compound RTCP packet (RFC 3550 §6.1); raises :class:`RtcpError` when malformed."""
    out = Compound()
    offset = 0
    if len(data) < 8:
        raise RtcpError(f"RTCP packet too short ({len(data)} octets)")
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpError("RTCP header truncated")
        b0, pt, words = struct.unpack_from("!BBH", data, offset)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6} is not 2")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise RtcpError("RTCP length field exceeds the packet")
        count = b0 & 0x1F
        body = offset + 4
        if pt == PT_SR:
            if body + 24 + 24 * count > end:
                raise RtcpError("SR shorter than its report count")
            ssrc, ntp, rtp_ts, pc, oc = struct.unpack_from("!IQIII", data, body)
            blocks = tuple(ReportBlock.parse(data, body + 24 + 24 * i) for i in range(count))
            out.packets.append(SenderReport(ssrc, ntp, rtp_ts, pc, oc, blocks))
        elif pt == PT_RR:
            if body + 4 + 24 * count > end:
                raise RtcpError("RR shorter than its report count")
            (ssrc,) = struct.unpack_from("!I", data, body)
            blocks = tuple(ReportBlock.parse(data, body + 4 + 24 * i) for i in range(count))
            out.packets.append(ReceiverReport(ssrc, blocks))
        elif pt == PT_SDES:
            out.packets.append(Sdes(_parse_sdes(data, body, end, count)))
        elif pt == PT_BYE:
            if body + 4 * count > end:
                raise RtcpError("BYE shorter than its source count")
            sources = struct.unpack_from(f"!{count}I", data, body)
            reason = ""
            rpos = body + 4 * count
            if rpos < end:
                n = data[rpos]
                reason = bytes(data[rpos + 1:min(end, rpos + 1 + n)]).decode("utf-8", "replace")
            out.packets.append(Bye(tuple(sources), reason))
        offset = end
    return out


def _parse_sdes(data: bytes, pos: int, end: int, count: int) -> tuple[tuple[int, str], ...]:
    cnames = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtcpError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        pos += 4
        while True:
            if pos >= end:
                raise RtcpError("SDES items not terminated")
            item = data[pos]
            if item == 0:  # end of items; chunk padded to a 32-bit boundary
                pos += 1
                pos += -pos % 4  # chunks start 32-bit aligned within the compound
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtcpError("SDES item truncated")
            length = data[pos + 1]
            if item == 1:
                cnames.append((ssrc, bytes(data[pos + 2:pos + 2 + length]).decode("utf-8", "replace")))
            pos += 2 + length
    return tuple(cnames)
