"""SIP messages out of captured packets: one per UDP datagram, TCP streams put back in order and framed.

A UDP datagram is SIP when it starts like a SIP message; a TCP flow is SIP when its first bytes do.
TCP segments are ordered by sequence number with retransmitted bytes dropped, then cut into messages
by Content-Length (:class:`softphone.sip.message.StreamFramer`). A message is stamped with the time
of the segment that completed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from softphone.analyze.pcap import Addr, Packet
from softphone.analyze.tls import TlsStream, is_client_hello, open_connection
from softphone.sip.errors import ParseError
from softphone.sip.message import Message, StreamFramer, parse_message

_SIP_START = re.compile(rb"^(?:[A-Z]+ \S+ SIP/2\.0\r?\n|SIP/2\.0 \d{3} )")


@dataclass(frozen=True, slots=True)
class SipEvent:
    """One SIP message as captured."""

    time: float
    transport: str  # "udp" | "tcp" | "tls"
    src: Addr
    dst: Addr
    message: Message


def looks_like_sip(data: bytes) -> bool:
    return bool(_SIP_START.match(data[:200].lstrip(b"\r\n")))


def _udp(pkt: Packet) -> SipEvent | None:
    if not looks_like_sip(pkt.payload):
        return None
    try:
        msg = parse_message(pkt.payload)
    except ParseError:
        return None
    return SipEvent(pkt.time, "udp", pkt.src, pkt.dst, msg)


def _tcp_flow(segments: list[Packet], transport: str = "tcp") -> list[SipEvent]:
    """Messages of one direction of one TCP connection."""
    isn = next((s.seq for s in segments if s.syn), None)
    base = (isn + 1) if isn is not None else min(s.seq for s in segments)

    def rel(s: Packet) -> int:
        return (s.seq - base) & 0xFFFFFFFF

    ordered = sorted((s for s in segments if s.payload), key=lambda s: (rel(s), s.time))
    framer = StreamFramer()
    out: list[SipEvent] = []
    have = 0  # bytes of the stream fed so far
    for seg in ordered:
        start = rel(seg)
        if start > have:  # a hole: bytes missing from the capture; the rest cannot be framed
            break
        fresh = seg.payload[have - start:]
        if not fresh:
            continue
        if have == 0 and not looks_like_sip(fresh):
            return []
        have += len(fresh)
        try:
            msgs = framer.feed(fresh)
        except ParseError:
            break
        out.extend(SipEvent(seg.time, transport, seg.src, seg.dst, m) for m in msgs)
    return out


def _first_bytes(segments: list[Packet]) -> bytes:
    isn = next((s.seq for s in segments if s.syn), None)
    with_data = [s for s in segments if s.payload]
    if not with_data:
        return b""
    base = (isn + 1) if isn is not None else min(s.seq for s in with_data)
    return min(with_data, key=lambda s: (s.seq - base) & 0xFFFFFFFF).payload


def _framed(stream: TlsStream) -> list[SipEvent]:
    framer = StreamFramer()
    out: list[SipEvent] = []
    for t, chunk in stream.chunks:
        try:
            msgs = framer.feed(chunk)
        except ParseError:
            break
        out.extend(SipEvent(t, "tls", stream.src, stream.dst, m) for m in msgs)
    return out


def sip_events(packets: list[Packet], keylog: dict[tuple[str, bytes], bytes] | None = None,
               notes: list[str] | None = None) -> list[SipEvent]:
    """Every SIP message in ``packets``, in time order (UDP, TCP, and TLS 1.3 with a key log).

    TLS connections that cannot be opened are described in ``notes``.
    """
    events: list[SipEvent] = []
    flows: dict[tuple[Addr, Addr], list[Packet]] = {}
    for pkt in packets:
        if pkt.transport == "udp":
            ev = _udp(pkt)
            if ev is not None:
                events.append(ev)
        else:
            flows.setdefault((pkt.src, pkt.dst), []).append(pkt)
    done: set[tuple[Addr, Addr]] = set()
    for (src, dst), segments in flows.items():
        if (src, dst) in done:
            continue
        if is_client_hello(_first_bytes(segments)):
            done.update({(src, dst), (dst, src)})
            where = f"TLS connection {src[0]}:{src[1]} → {dst[0]}:{dst[1]}"
            if keylog is None:
                if notes is not None:
                    notes.append(f"{where} not opened: no TLS key log given (--keylog)")
                continue
            opened = open_connection(segments, flows.get((dst, src), []) or [], keylog)
            if isinstance(opened, str):
                if notes is not None:
                    notes.append(f"{where} not opened: {opened}")
                continue
            for direction in opened:
                events.extend(_framed(direction))
                if direction.error and notes is not None:
                    notes.append(f"{where}: {direction.error}")
            continue
        events.extend(_tcp_flow(segments))
    events.sort(key=lambda e: e.time)
    return events
