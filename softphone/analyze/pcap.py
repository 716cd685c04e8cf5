"""Reading and writing captures: pcap and pcapng through dpkt, down to UDP datagrams and TCP segments.

Link types: Ethernet (with 802.1Q tags), Linux cooked (SLL, SLL2), raw IP, BSD loopback. IPv4
fragments are put back together; IPv6 extension headers other than fragments are skipped by dpkt.
Everything else (ARP, ICMP, non-IP) is ignored. Times are Unix seconds as floats.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dpkt

Addr = tuple[str, int]

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 0, 1, 101, 113, 276
LINKTYPE_IPV4, LINKTYPE_IPV6 = 228, 229


class CaptureError(ValueError):
    """The file is not a pcap/pcapng capture this reader understands."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One UDP datagram or TCP segment (``seq``/``syn``/``fin`` only for TCP)."""

    time: float
    transport: str  # "udp" | "tcp"
    src: Addr
    dst: Addr
    payload: bytes
    seq: int = 0
    syn: bool = False
    fin: bool = False


def _ntoa(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


class _Fragments:
    """IPv4 reassembly keyed on (src, dst, id, proto) (RFC 791); bounded in number of datagrams."""

    def __init__(self, limit: int = 1024) -> None:
        self._parts: dict[tuple[bytes, bytes, int, int], dict[int, tuple[bytes, bool]]] = {}
        self._limit = limit

    def add(self, key: tuple[bytes, bytes, int, int], offset: int, more: bool, chunk: bytes) -> bytes | None:
        if key not in self._parts and len(self._parts) >= self._limit:
            self._parts.pop(next(iter(self._parts)))
        parts = self._parts.setdefault(key, {})
        parts[offset] = (chunk, more)
        data = bytearray()
        for off in sorted(parts):
            piece, more_follow = parts[off]
            if off != len(data):
                return None
            data += piece
            if not more_follow:
                del self._parts[key]
                return bytes(data)
        return None


def _transport(t: float, proto: int, src: str, dst: str, data: bytes) -> Packet | None:
    if proto == dpkt.ip.IP_PROTO_UDP and len(data) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", data)
        end = length if 8 <= length <= len(data) else len(data)
        return Packet(t, "udp", (src, sport), (dst, dport), bytes(data[8:end]))
    if proto == dpkt.ip.IP_PROTO_TCP and len(data) >= 20:
        sport, dport, seq, _ack, off_flags = struct.unpack_from("!HHIIH", data)
        hlen = (off_flags >> 12) * 4
        flags = off_flags & 0x3F
        return Packet(t, "tcp", (src, sport), (dst, dport), bytes(data[hlen:]), seq,
                      bool(flags & dpkt.tcp.TH_SYN), bool(flags & dpkt.tcp.TH_FIN))
    return None


def _ip_packet(t: float, raw: bytes, frags: _Fragments) -> Packet | None:
    if len(raw) < 20:
        return None
    version = raw[0] >> 4
    if version == 4:
        hl = (raw[0] & 0x0F) * 4
        total, ident, off = struct.unpack_from("!HHH", raw, 2)
        proto, src, dst = raw[9], raw[12:16], raw[16:20]
        payload = raw[hl: total if hl <= total <= len(raw) else len(raw)]
        if off & 0x3FFF:  # MF set or a non-zero fragment offset
            whole = frags.add((src, dst, ident, proto), (off & 0x1FFF) * 8, bool(off & 0x2000), payload)
            if whole is None:
                return None
            payload = whole
        return _transport(t, proto, _ntoa(src), _ntoa(dst), payload)
    if version == 6 and len(raw) >= 40:
        nxt, src, dst = raw[6], raw[8:24], raw[24:40]
        (plen,) = struct.unpack_from("!H", raw, 4)
        if nxt in (dpkt.ip.IP_PROTO_UDP, dpkt.ip.IP_PROTO_TCP):
            return _transport(t, nxt, _ntoa(src), _ntoa(dst), raw[40: 40 + plen])
        try:  # extension headers: let dpkt walk them
            ip6 = dpkt.ip6.IP6(raw)
        except (dpkt.UnpackError, struct.error, ValueError):
            return None
        body = ip6.data if isinstance(ip6.data, bytes) else bytes(ip6.data)
        return _transport(t, ip6.p, _ntoa(src), _ntoa(dst), body)
    return None


def _network(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside one link-layer frame, or ``None``."""
    if linktype == LINKTYPE_ETHERNET:
        off, etype = 14, struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            etype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
        return frame[off:] if etype in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    if linktype == LINKTYPE_SLL:
        return frame[16:] if len(frame) >= 16 and struct.unpack_from("!H", frame, 14)[0] in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_SLL2:
        return frame[20:] if len(frame) >= 20 and struct.unpack_from("!H", frame, 0)[0] in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_NULL:
        return frame[4:] if len(frame) >= 4 else None
    return None


def _frames(stream: BinaryIO) -> Iterator[tuple[float, int, bytes]]:
    magic = stream.read(4)
    stream.seek(0)
    try:
        if magic == b"\x0a\x0d\x0d\x0a":
            ng = dpkt.pcapng.Reader(stream)
            # dpkt gives the first interface's link type; pcapng files from one capture use one.
            link = ng.datalink()
            for ts, buf in ng:
                yield float(ts), link, bytes(buf)
        else:
            pc = dpkt.pcap.Reader(stream)
            link = pc.datalink()
            for ts, buf in pc:
                yield float(ts), link, bytes(buf)
    except (dpkt.NeedData, dpkt.UnpackError, ValueError) as exc:
        raise CaptureError(f"not a pcap/pcapng capture ({exc or type(exc).__name__})") from None


def read_packets(path: Path) -> list[Packet]:
    """Every UDP datagram and TCP segment in ``path``, in capture order."""
    frags = _Fragments()
    out: list[Packet] = []
    try:
        with path.open("rb") as stream:
            for t, link, frame in _frames(stream):
                raw = _network(link, frame)
                pkt = _ip_packet(t, raw, frags) if raw is not None else None
                if pkt is not None:
                    out.append(pkt)
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror}") from None
    return out


# --- writing ------------------------------------------------------------------------------------

def _ip_bytes(transport: str, src: Addr, dst: Addr, payload: bytes, seq: int, flags: int) -> bytes:
    v6 = ":" in src[0]
    if transport == "udp":
        l4: dpkt.Packet = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=payload)
        l4.ulen = 8 + len(payload)
        proto = dpkt.ip.IP_PROTO_UDP
    else:
        l4 = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq, flags=flags, win=65535, data=payload)
        proto = dpkt.ip.IP_PROTO_TCP
    if v6:
        ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src[0]), dst=socket.inet_pton(socket.AF_INET6, dst[0]),
                           nxt=proto, hlim=64, data=l4)
        ip6.plen = len(bytes(l4))
        return bytes(ip6)
    ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=proto, ttl=64, data=l4)
    ip.len = 20 + len(bytes(l4))
    return bytes(ip)


def write_pcap(stream: BinaryIO, packets: Iterable[Packet]) -> None:
    """Write ``packets`` as a raw-IP pcap (link type 101; checksums left zero)."""
    writer = dpkt.pcap.Writer(stream, linktype=LINKTYPE_RAW)
    for p in packets:
        flags = (dpkt.tcp.TH_SYN if p.syn else 0) | (dpkt.tcp.TH_FIN if p.fin else 0) | dpkt.tcp.TH_ACK
        writer.writepkt(_ip_bytes(p.transport, p.src, p.dst, p.payload, p.seq, flags), ts=p.time)
