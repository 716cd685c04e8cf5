"""Capture reading: link types, IPv4 fragments, IPv6, and the RFC 3550 counters."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dpkt

from lab.captures import request, sdp, vector_imessage
from softphone.analyze.pcap import LINKTYPE_ETHERNET, LINKTYPE_SLL, Packet, read_packets, write_pcap
from softphone.analyze.reassembly import sip_events
from softphone.analyze.stats import RtpStats


def _ipv4_fragments(payload: bytes, src: str, dst: str, sport: int, dport: int, mtu: int = 576) -> list[bytes]:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    step = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(udp), step):
        chunk = udp[off:off + step]
        more = 0x2000 if off + step < len(udp) else 0
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(chunk), 0x1234, more | (off // 8), 64, 17, 0,
                          socket.inet_aton(src), socket.inet_aton(dst))
        out.append(hdr + chunk)
    return out


def test_fragmented_udp_invite_over_ethernet(tmp_path: Path) -> None:
    invite = request("INVITE", 1, sdp(40000, 1, 1, vector_imessage()))
    frags = _ipv4_fragments(invite, "10.0.0.1", "10.0.0.2", 5060, 5060)
    assert len(frags) >= 3
    path = tmp_path / "eth.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=LINKTYPE_ETHERNET)
        for i, frag in enumerate(reversed(frags)):  # last fragment first
            eth = b"\x00" * 12 + b"\x81\x00\x00\x05\x08\x00" + frag  # with an 802.1Q tag
            w.writepkt(eth, ts=100.0 + i)
    pkts = read_packets(path)
    assert len(pkts) == 1 and pkts[0].payload == invite and pkts[0].src == ("10.0.0.1", 5060)
    (ev,) = sip_events(pkts)
    assert ev.message.method == "INVITE"  # type: ignore[attr-defined]


def test_linux_cooked_ipv6_pcapng(tmp_path: Path) -> None:
    src, dst = ("::1", 5060), ("::1", 5070)
    raw = tmp_path / "raw.pcap"
    with raw.open("wb") as f:
        write_pcap(f, [Packet(1.5, "udp", src, dst, b"OPTIONS sip:x SIP/2.0\r\n\r\n")])
    ip6 = next(iter(dpkt.pcap.Reader(raw.open("rb"))))[1]
    path = tmp_path / "sll.pcapng"
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f, linktype=LINKTYPE_SLL)
        w.writepkt(b"\x00\x00\x03\x04\x00\x06" + b"\x00" * 8 + b"\x86\xdd" + ip6, ts=1.5)
    (p,) = read_packets(path)
    assert (p.transport, p.src, p.dst, p.time) == ("udp", src, dst, 1.5)


def test_rtp_stats_wrap_duplicates_reordering_and_jitter() -> None:
    s = RtpStats(8000)
    seqs = [65533, 65534, 65535, 0, 2, 1, 1, 4]  # across the wrap: 1 late, 1 duplicate, 3 never arrives
    for i, seq in enumerate(seqs):
        s.add(seq, (seq if seq > 100 else seq + 65536) * 160, i * 0.02)
    assert (s.packets, s.duplicates, s.reordered) == (8, 1, 1)
    assert (s.expected, s.lost, s.max_ext) == (8, 1, 65536 + 4)
    steady = RtpStats(8000)
    for i in range(50):
        steady.add(i, i * 160, 10.0 + i * 0.02)
    assert steady.jitter_ms == 0.0
    wobbly = RtpStats(8000)
    for i in range(500):
        wobbly.add(i, i * 160, i * 0.02 + (0.004 if i % 2 else 0.0))
    # RFC 3550: |D| = 4 ms every packet, so J converges to 4 ms
    assert abs(wobbly.jitter_ms - 4.0) < 0.01


def test_offer_answer_pairs_tell_the_callers_and_callees_cseq_apart() -> None:
    from lab.captures import A_SIP, B_SIP, response
    from softphone.analyze.dialogs import build_dialogs

    a, b = sdp(40000, 1, 1, None), sdp(40002, 2, 1, None)
    a2, b2 = sdp(40000, 1, 2, None), sdp(40002, 2, 2, None)
    msgs = [(A_SIP, B_SIP, request("INVITE", 1, a)), (B_SIP, A_SIP, response(200, "OK", "INVITE", 1, b)),
            (A_SIP, B_SIP, request("ACK", 1)),
            (B_SIP, A_SIP, request("INVITE", 1, b2, from_callee=True)),  # the callee's own CSeq 1
            (A_SIP, B_SIP, response(200, "OK", "INVITE", 1, a2, to_callee=True)),
            (B_SIP, A_SIP, request("ACK", 1, from_callee=True))]
    pkts = [Packet(10.0 + i, "udp", s, d, m) for i, (s, d, m) in enumerate(msgs)]
    (dlg,) = build_dialogs(sip_events(pkts))
    pairs = [(x.offer.number, x.answer.number if x.answer else None) for x in dlg.exchanges()]
    assert pairs == [(1, 2), (4, 5)]
    assert [(x.offer.sender, x.offer.receiver) for x in dlg.exchanges()] == [
        ("sip:alice@streamwide.com", "sip:bob@streamwide.com"), ("sip:bob@streamwide.com", "sip:alice@streamwide.com")]
