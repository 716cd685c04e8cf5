"""The phone's own capture: its SIP and media written as a pcap file, without root.

:class:`PcapWriter` records what the phone sends and receives as synthetic IP packets (raw-IP link type)
with the real addresses: SIP datagrams as UDP, SIP stream bytes as TCP segments (one SYN, then data with
running sequence numbers per direction), media exactly as on the wire (SRTP, encrypted). SIP over TLS is
recorded as the phone sees it, in the clear, as TCP on the TLS ports; the TLS key log (``keylog_filename``
on the phone's contexts) serves captures taken by others (tcpdump, tshark).

:class:`PcapWriter` is the ``tap`` the SIP transport (``record``) and every media session (``udp``, through
:class:`~softphone.media.transport.TappedNetwork` around the media engine's sockets) are given, so media
stays on the engine thread while captured. This module imports nothing of the phone's.

The files hold secrets (the signalling carries the MIKEY keys' wrapped form and identities): they are
created mode 0600.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

Addr = tuple[str, int]
LINKTYPE_RAW = 101
_TCP_SYN, _TCP_PSH_ACK = 0x02, 0x18


def create_secret_file(path: str | Path) -> Path:
    """Create (or truncate) ``path`` with mode 0600 before anything secret is written to it."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    return path


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    if ":" in src or ":" in dst:
        return struct.pack("!IHBB", 6 << 28, len(payload), proto, 64) + socket.inet_pton(
            socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def udp_packet(src: Addr, dst: Addr, data: bytes) -> bytes:
    """One IP packet carrying ``data`` as a UDP datagram from ``src`` to ``dst``."""
    return _ip(src[0], dst[0], 17, struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data)


def tcp_packet(src: Addr, dst: Addr, seq: int, data: bytes, flags: int = _TCP_PSH_ACK) -> bytes:
    """One IP packet carrying ``data`` as a TCP segment at ``seq``."""
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0)
    return _ip(src[0], dst[0], 6, tcp + data)


class PcapWriter:
    """A pcap file written as packets happen (thread-safe: media may run on its own thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = create_secret_file(path)
        self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        self._file.flush()
        self._lock = threading.Lock()
        self._seq: dict[tuple[Addr, Addr], int] = {}
        self.packets = 0

    def __repr__(self) -> str:
        return f"PcapWriter({str(self.path)!r}, packets={self.packets})"

    def _write(self, packet: bytes, when: float | None = None) -> None:
        t = time.time() if when is None else when
        with self._lock:
            if self._file is None:
                return
            sec = int(t)
            self._file.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(packet), len(packet)) + packet)
            self._file.flush()
            self.packets += 1

    def udp(self, src: Addr, dst: Addr, data: bytes) -> None:
        """Record one datagram from ``src`` to ``dst``."""
        self._write(udp_packet(_addr(src), _addr(dst), data))

    def stream(self, src: Addr, dst: Addr, data: bytes) -> None:
        """Record ``data`` as the next bytes of the TCP (or TLS) stream from ``src`` to ``dst``."""
        src, dst = _addr(src), _addr(dst)
        with self._lock:
            seq = self._seq.get((src, dst))
            first = seq is None
            if seq is None:
                seq = 1
            self._seq[src, dst] = seq + len(data)
        if first:
            self._write(tcp_packet(src, dst, 0, b"", _TCP_SYN))
        self._write(tcp_packet(src, dst, seq, data))

    def record(self, proto: str, src: Addr, dst: Addr, data: bytes) -> None:
        """Record bytes of SIP transport ``proto`` (``udp``, ``tcp``, ``tls``)."""
        if not data:
            return
        if proto == "udp":
            self.udp(src, dst, data)
        else:
            self.stream(src, dst, data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _addr(a: Any) -> Addr:
    return str(a[0]), int(a[1])
