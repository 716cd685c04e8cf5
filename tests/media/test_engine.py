"""The media thread: sessions keep sending and playing while the asyncio thread is blocked."""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable

import numpy as np

from softphone.media.audio import ArraySink, ArraySource
from softphone.media.engine import MediaEngine
from softphone.media.session import MediaSession
from tests.media.conftest import configs

FRAME = 960


def _contiguous(entries: list[tuple[int, float]], what: str) -> None:
    """One frame per 20 ms slot and none skipped: consecutive RTP timestamps."""
    stamps = [ts for ts, _ in entries]
    assert all((b - a) & 0xFFFFFFFF == FRAME for a, b in itertools.pairwise(stamps)), (what, stamps)


def _hold_the_loop(done: Callable[[], bool], *, busy: bool, limit: float = 20.0) -> bool:
    """Block the asyncio thread (sleeping, or spinning in Python so the GIL is contended) until ``done()`` or
    ``limit`` seconds. Nothing on the loop can run meanwhile, so only the media thread can make ``done()`` true."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if done():
            return True
        if busy:
            for _ in range(2000):
                pass
        else:
            time.sleep(0.005)
    return False


def _advanced(sa: MediaSession, sb: MediaSession, sent0: int, played0: int) -> bool:
    return len(sa.trace_sent) - sent0 >= 15 and len(sb.trace_played) - played0 >= 15


async def test_blocking_the_event_loop_leaves_no_gap_in_sent_or_played_audio(speech: np.ndarray) -> None:
    """While the loop is blocked, A keeps sending and B keeps playing: 15 frames each (300 ms of audio), with
    contiguous timestamps. The old path (media on the loop) sent 0 frames in any blocked window, so this failed.
    How evenly the frames are paced in time depends on the machine's load; that is measured in benchmarks."""
    a, b = configs(trace=True, rtcp_interval=0.5)
    sink_b = ArraySink()
    sa = MediaSession(a, ArraySource(speech), ArraySink())
    sb = MediaSession(b, ArraySource(speech), sink_b)
    await sa.start()
    await sb.start()
    windows: list[tuple[str, list[tuple[int, float]], list[tuple[int, float]]]] = []
    try:
        await asyncio.sleep(0.5)
        assert threading.current_thread() is threading.main_thread()
        for kind, busy in (("sleep", False), ("busy", True)):
            sent0, played0 = len(sa.trace_sent), len(sb.trace_played)
            ok = _hold_the_loop(functools.partial(_advanced, sa, sb, sent0, played0), busy=busy)
            windows.append((kind, list(sa.trace_sent)[sent0:], list(sb.trace_played)[played0:]))
            assert ok, (kind, len(sa.trace_sent) - sent0, len(sb.trace_played) - played0)
        await asyncio.sleep(0.3)
    finally:
        await sb.stop()
        await sa.stop()
    for kind, sent, played in windows:
        _contiguous(sent, f"A sent during {kind}")
        _contiguous(played, f"B played during {kind}")
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
