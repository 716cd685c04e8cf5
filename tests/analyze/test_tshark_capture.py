"""The analyser on a real tshark capture (pcapng, Ethernet on loopback): a synthesised call sent over UDP
sockets on 127.0.0.1 in real time, captured by tshark, then analysed."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from lab.captures import ALICE, BOB, Impairments, build_call
from lab.tshark import start_capture, stop_capture
from softphone.analyze import analyse
from softphone.analyze.audio import read_wav
from softphone.analyze.pcap import read_packets
from tests.analyze.test_analyze import correlation, ring
from tests.conftest import require_tool

pytestmark = pytest.mark.needs_tool("tshark")
FRAMES = 100




def test_tshark_loopback_capture(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        addrs = tuple(s.getsockname() for s in socks)
        by_addr = dict(zip(addrs, socks, strict=True))
        call = build_call(frames=FRAMES, rekey_frame=40, addrs=addrs,  # type: ignore[arg-type]
                          a_imp=Impairments(drop_every=20, tamper=(30,), duplicate=(45,)))
        pcap = tmp_path / "lo.pcapng"
        proc = start_capture(tshark, pcap, " or ".join(f"udp port {a[1]}" for a in addrs))
        try:
            packets = sorted(call.packets, key=lambda p: p.time)
            start, first = time.monotonic(), packets[0].time
            for p in packets:
                delay = start + (p.time - first) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                by_addr[p.src].sendto(p.payload, p.dst)
            time.sleep(0.5)
        finally:
            stop_capture(proc)
    finally:
        for s in socks:
            s.close()
    assert pcap.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # tshark writes pcapng
    assert len(read_packets(pcap)) == len(call.packets)
    a = analyse(pcap, ring("bob"), tmp_path / "out")
    assert [e.label for e in a.dialogs[0].entries] == ["INVITE", "200 OK", "ACK", "INVITE", "200 OK", "ACK", "BYE",
                                                       "200 OK"]
    assert [r.verdict.description["valid"] for r in a.imessages] == [True, True]
    s1, s2 = a.streams
    lost = len(range(7, FRAMES, 20))
    assert (s1.stats.packets, s1.stats.lost, s1.stats.duplicates, s1.auth_failures, s1.replays) == (
        FRAMES - lost + 1, lost, 1, 1, 1)
    assert (s2.stats.packets, s2.stats.lost, s2.auth_failures, s2.replays) == (FRAMES, 0, 0, 0)
    # the vendor vector's T is from 2025: the capture is much later
    assert any(re.fullmatch(r"INVITE #1: T is \d+ s old at capture time \(receivers accept ±300 s\)", f)
               for f in a.findings)
    assert f"stream 1 ({ALICE} → {BOB}): 1 packet failed SRTP authentication" in a.findings
    for st, who in zip(a.streams, ("alice", "bob"), strict=True):
        assert st.wav is not None
        _, corr = correlation(read_wav(Path(st.wav)), call.audio[who])
        assert corr > 0.9, (who, corr)
