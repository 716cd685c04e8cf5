"""The media thread: sessions keep sending and playing while the asyncio thread is blocked."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import numpy as np

from softphone.media.audio import ArraySink, ArraySource
from softphone.media.engine import MediaEngine
from softphone.media.session import MediaSession
from tests.media.conftest import configs

FRAME = 960


def _in_window(trace: list[tuple[int, float]], t0: float, t1: float) -> list[tuple[int, float]]:
    return [(ts, t) for ts, t in trace if t0 <= t <= t1]


def _check_paced(entries: list[tuple[int, float]], what: str) -> None:
    """One frame per 20 ms slot: consecutive RTP timestamps, spaced in time, never a burst after a gap."""
    assert len(entries) >= 12, (what, len(entries))  # 15 slots in 300 ms; a loaded machine may shave a few
    stamps = [ts for ts, _ in entries]
    assert all((b - a) & 0xFFFFFFFF == FRAME for a, b in itertools.pairwise(stamps)), (what, stamps)
    times = [t for _, t in entries]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.1, (what, gaps)  # no stall
    # paced: frame k goes out near first + k*20 ms, never far behind its slot
    assert max(t - (times[0] + k * 0.02) for k, t in enumerate(times)) < 0.1, (what, times)


async def test_blocking_the_event_loop_leaves_no_gap_in_sent_or_played_audio(speech: np.ndarray) -> None:
    a, b = configs(trace=True, rtcp_interval=0.5)
    sink_b = ArraySink()
    sa = MediaSession(a, ArraySource(speech), ArraySink())
    sb = MediaSession(b, ArraySource(speech), sink_b)
    await sa.start()
    await sb.start()
    try:
        await asyncio.sleep(0.5)
        assert threading.current_thread() is threading.main_thread()
        t0 = time.monotonic()
        time.sleep(0.3)  # the loop is blocked (a modal dialog, a blocking call)
        t1 = time.monotonic()
        end = t1 + 0.3
        n = 0
        while time.monotonic() < end:  # the loop is busy in Python, holding the GIL between switches
            n += 1
        t2 = time.monotonic()
        await asyncio.sleep(0.3)
    finally:
        await sb.stop()
        await sa.stop()
    for lo, hi, kind in ((t0, t1, "sleep"), (t1, t2, "busy")):
        _check_paced(_in_window(list(sa.trace_sent), lo, hi), f"A sent during {kind}")
        _check_paced(_in_window(list(sb.trace_played), lo, hi), f"B played during {kind}")
    st = sb.stats()
    assert st.srtp_failures == {} and st.malformed == 0 and st.packets_received > 50
    assert not MediaEngine.shared().running  # the last session's stop ended the media thread


async def test_callbacks_come_back_on_the_loop_and_commands_cross_threads() -> None:
    a, b = configs()
    got: list[tuple[str, bool]] = []
    loop_thread = threading.current_thread()
    sa = MediaSession(a, ArraySource(np.zeros(48000, np.int16)), ArraySink())
    sb = MediaSession(b, ArraySource(np.zeros(48000, np.int16)), ArraySink(),
                      on_dtmf=lambda d: got.append((d, threading.current_thread() is loop_thread)))
    await sa.start()
    await sb.start()
    try:
        sa.send_dtmf("7", 60)
        await asyncio.sleep(0.3)
        sa.hold()
        await asyncio.sleep(0.05)
        held = sa.stats().packets_sent
        await asyncio.sleep(0.1)
        assert sa.stats().packets_sent == held  # hold, given on the loop thread, took effect on the media thread
        sa.resume()
        await asyncio.sleep(0.1)
        assert sa.stats().packets_sent > held
    finally:
        await sb.stop()
        await sa.stop()
    assert got == [("7", True)]


class _RecordingTap:
    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, int], tuple[str, int], bytes, str]] = []

    def udp(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.seen.append((src, dst, data, threading.current_thread().name))


def _rtp(seen: list[tuple[tuple[str, int], tuple[str, int], bytes, str]], src: tuple[str, int],
         dst: tuple[str, int]) -> int:
    return sum(1 for s, d, data, _ in seen if s == src and d == dst and not 192 <= data[1] <= 223)


async def test_a_capture_tap_sees_every_datagram_where_the_engine_sends_and_receives_it() -> None:
    a, b = configs(rtcp_interval=0.2)
    tap = _RecordingTap()
    sa = MediaSession(a, ArraySource(np.zeros(48000, np.int16)), ArraySink(), tap=tap)
    sb = MediaSession(b, ArraySource(np.zeros(48000, np.int16)), ArraySink())
    await sa.start()
    await sb.start()
    here, there = sa.local_addr, sb.local_addr
    try:
        await asyncio.sleep(0.5)
    finally:
        await sb.stop()
        await sa.stop()
    engine = MediaEngine.shared()
    assert {t for *_, t in tap.seen} == {engine.name}  # on the media thread, never the event loop's
    sent, received = sa.stats(), sb.stats()
    assert sent.packets_sent > 10 and _rtp(tap.seen, here, there) == sent.packets_sent
    assert _rtp(tap.seen, there, here) == sa.stats().packets_received
    assert any(192 <= data[1] <= 223 for *_, data, _t in tap.seen)  # RTCP (SRTCP) is captured too
    assert received.srtp_failures == {}  # the tapped datagrams went out unchanged
