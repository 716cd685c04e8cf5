"""Capture analysis speed: ``scripts/bench analyze [--json]``.

Builds a 60-second two-way Opus call capture itself (tests/analyze/synth.py: the vendor-vector
I_MESSAGE, a re-INVITE rekey at 30 s, 5 % loss, a tampered packet and a duplicate one way) and times
``softphone.analyze.analyse`` on it: reading the pcap, SIP, both I_MESSAGEs verified (ECCSI +
SAKKE), 6000 SRTP packets opened, counted and decoded to two WAV files. ``analyze_s`` is the
median of ``--repeat`` runs; the target is under 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._util import emit
from lab.captures import Impairments, build_call, user_keys
from softphone.analyze import KeyRing, analyse

SECONDS = 60
TARGET_S = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (default 3)")
    args = parser.parse_args(argv)
    frames = SECONDS * 50
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        call = build_call(frames=frames, rekey_frame=frames // 2,
                          a_imp=Impairments(drop_every=20, tamper=(500,), duplicate=(600,)))
        pcap = call.write(d / "call.pcap")
        build_s = time.perf_counter() - t0
        ring = KeyRing()
        ring.add([user_keys("alice")])
        ring.add([user_keys("bob")])
        samples = []
        result = None
        for i in range(max(1, args.repeat)):
            t = time.perf_counter()
            result = analyse(pcap, ring, d / f"out{i}")
            samples.append(time.perf_counter() - t)
        assert result is not None
        streams = result.streams
        emit({
            "call_seconds": SECONDS,
            "packets": result.packets,
            "capture_bytes": pcap.stat().st_size,
            "streams": len(streams),
            "srtp_packets_opened": sum(s.stats.packets - s.auth_failures - s.replays for s in streams),
            "wav_files": sum(1 for s in streams if s.wav),
            "build_s": round(build_s, 3),
            "analyze_s": round(statistics.median(samples), 3),
            "target_s": TARGET_S,
            "within_target": statistics.median(samples) < TARGET_S,
        }, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
