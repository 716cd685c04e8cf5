"""Two media sessions through SRTP: speech both ways, attacks rejected, bad networks survived.

Most calls run in simulated time (``sim_call``: a virtual clock and a seeded in-memory network), so every
counter is exact and the audio is the same on every run; the real-time tests over loopback UDP assert only
what scheduling cannot change. Quality figures (PESQ under load) are measured by ``scripts/bench media``.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.impair import ImpairError, Impairment, ImpairmentRelay
from softphone.errors import SoftphoneError
from softphone.media.audio import ArraySink, ArraySource, AudioError, WavSink, WavSource, read_wav, write_wav
from softphone.media.codecs import PCMA, PCMU, CodecError
from softphone.media.dtmf import DtmfError
from softphone.media.rtcp import RtcpError
from softphone.media.rtp import RtpError, is_rtcp
from softphone.media.session import MediaError, MediaSession
from softphone.media.srtp import SrtpError, SrtpSuite
from softphone.media.transport import Link
from tests.media.conftest import SimCall, aligned_corr, configs, pesq_wb, sim_call, sim_configs


def _counters(session: MediaSession) -> dict[str, object]:
    """The counters scheduling and codec versions cannot change (no octets, floats or RTT)."""
    st = session.stats()
    return {k: getattr(st, k) for k in (
        "packets_sent", "packets_received", "packets_lost", "concealed_frames", "fec_recovered", "underruns",
        "late_packets", "duplicates", "srtp_failures", "srtcp_failures", "malformed", "jitter_buffer_ms",
        "late_ticks", "ticks", "rtcp_sent", "rtcp_received", "dtmf_received", "bye_received")}


def test_media_errors_have_one_root() -> None:
    for error in (CodecError, SrtpError, RtpError, RtcpError, DtmfError, AudioError):
        assert issubclass(error, MediaError) and issubclass(error, ValueError)
    assert issubclass(MediaError, SoftphoneError)


async def test_20s_call_at_5pct_loss_40ms_jitter_exact_and_repeatable(speech: np.ndarray) -> None:
    gap = np.zeros(24000, np.int16)
    talk = np.concatenate([speech, gap, speech, gap, speech])[: 20 * 48000]
    runs: list[SimCall] = []
    arrived: list[int] = []

    def forge_every_100th(call: SimCall, data: bytes, src: tuple[str, int]) -> None:
        arrived.append(len(data))
        if len(arrived) % 100 == 0:  # a forged copy first, then the genuine packet
            call.network.deliver(data[:-1] + bytes([data[-1] ^ 0x80]), src, call.b.config.local_addr)
        call.network.deliver(data, src, call.b.config.local_addr)

    for _ in range(2):
        arrived.clear()
        a, b = sim_configs(rtcp_interval=1.0)
        runs.append(await sim_call(a, b, talk, talk[::-1].copy(), 20.0, a_to_b=Link(loss=0.05, jitter_ms=40),
                                   seed=13, taps={b.local_addr: forge_every_100th}))
    call, again = runs
    assert _counters(call.a) == {
        "packets_sent": 1006, "packets_received": 950, "packets_lost": 51, "concealed_frames": 5,
        "fec_recovered": 50, "underruns": 4, "late_packets": 0, "duplicates": 0, "srtp_failures": {},
        "srtcp_failures": {}, "malformed": 0, "jitter_buffer_ms": 60, "late_ticks": 0, "ticks": 1006,
        "rtcp_sent": 21, "rtcp_received": 19, "dtmf_received": (), "bye_received": True}
    assert _counters(call.b) == {
        "packets_sent": 1001, "packets_received": 946, "packets_lost": 54, "concealed_frames": 4,
        "fec_recovered": 53, "underruns": 3, "late_packets": 0, "duplicates": 0, "srtp_failures": {"auth_failed": 9},
        "srtcp_failures": {}, "malformed": 0, "jitter_buffer_ms": 60, "late_ticks": 0, "ticks": 1001,
        "rtcp_sent": 21, "rtcp_received": 19, "dtmf_received": (), "bye_received": False}
    ab = call.network.stats(call.a.config.local_addr, call.b.config.local_addr)
    assert (ab.sent, ab.dropped, ab.delivered) == (1006 + 21, 54, 971) and len(arrived) == 971  # 9 forged
    for s in (call.a, call.b):  # every lost packet was recovered from FEC or concealed, none twice
        st = s.stats()
        assert st.fec_recovered + st.concealed_frames - st.underruns == st.packets_lost
    assert call.a.stats() == again.a.stats() and call.b.stats() == again.b.stats()
    assert np.array_equal(call.heard_by_b.samples(), again.heard_by_b.samples())
    assert np.array_equal(call.heard_by_a.samples(), again.heard_by_a.samples())
    mos_b, mos_a = pesq_wb(talk, call.heard_by_b.samples()), pesq_wb(talk[::-1].copy(), call.heard_by_a.samples())
    assert mos_b == pytest.approx(4.16, abs=0.02) and mos_a == pytest.approx(4.13, abs=0.02)  # 3.86/3.78 at 40 kbit/s
    assert min(mos_a, mos_b) > 3.8  # the bar for 5 % loss + 40 ms jitter


async def test_speech_both_ways_over_srtp_gcm_with_mki(speech: np.ndarray) -> None:
    a, b = sim_configs(mki=b"\x00\x00\x00\x2a", rtcp_interval=1.0)
    reply = speech[::-1].copy()
    call = await sim_call(a, b, speech, reply, len(speech) / 48000 + 0.5, a_to_b=Link(delay_ms=10))
    assert aligned_corr(speech, call.heard_by_b.samples())[0] > 0.9
    assert aligned_corr(reply, call.heard_by_a.samples())[0] > 0.9
    sa, sb = call.a.stats(), call.b.stats()
    assert (sa.packets_sent, sb.packets_received, sb.packets_lost) == (435, 429, 0)  # 6 after B stopped
    assert (sb.packets_sent, sa.packets_received, sa.packets_lost) == (430, 430, 0)
    assert sa.srtp_failures == sb.srtp_failures == {} and sa.srtcp_failures == sb.srtcp_failures == {}
    assert sb.rtt_ms == pytest.approx(20.0, abs=0.02) and sa.rtt_ms == pytest.approx(20.0, abs=0.02)
    assert sa.bye_received and not sb.bye_received  # B hung up first


async def test_speech_both_ways_over_udp_loopback(speech: np.ndarray, tmp_path) -> None:
    """Real sockets and the real clock: assert only what scheduling cannot change."""
    a, b = configs(mki=b"\x00\x00\x00\x2a", rtcp_interval=0.5)
    clip = speech[: 2 * 48000]
    src = tmp_path / "in.wav"
    write_wav(src, clip)
    sink_a, sink_b = WavSink(tmp_path / "a.wav"), WavSink(tmp_path / "b.wav")
    sa = MediaSession(a, WavSource(src), sink_a)
    sb = MediaSession(b, ArraySource(clip[::-1].copy()), sink_b)
    await sa.start()
    await sb.start()
    try:
        await asyncio.sleep(len(clip) / 48000 + 0.5)
    finally:
        await sb.stop()
        await sa.stop()
    heard_by_b = compare(clip, read_wav(tmp_path / "b.wav"))
    heard_by_a = compare(clip[::-1], read_wav(tmp_path / "a.wav"))
    assert heard_by_b.ok() and heard_by_a.ok(), (heard_by_b, heard_by_a)  # speech present, whatever its quality
    st_a, st_b = sa.stats(), sb.stats()
    assert st_a.srtp_failures == st_b.srtp_failures == {} and st_a.malformed == st_b.malformed == 0
    assert st_b.packets_received > 0 and st_a.packets_received > 0 and st_b.rtcp_received > 0
    assert st_b.packets_received <= st_a.packets_sent and sa.stats().bye_received  # B hung up first


async def test_forged_replayed_truncated_rejected_and_audio_continues(speech: np.ndarray) -> None:
    a, b = sim_configs(rtcp_interval=0.3)
    captured: list[bytes] = []

    def attack(call: SimCall, data: bytes, src: tuple[str, int]) -> None:
        captured.append(data)
        # every 10th packet and every RTCP; forgeries first: libsrtp checks replay before authenticity
        if len(captured) % 10 == 0 or is_rtcp(data):
            forged = bytearray(data)
            forged[-20] ^= 0x01
            for copy in (bytes(forged), data[:-5], data, data):  # tampered, truncated, genuine, replayed
                call.network.deliver(copy, src, b.local_addr)
        else:
            call.network.deliver(data, src, b.local_addr)

    clip = speech[: 3 * 48000]
    call = await sim_call(a, b, clip, clip, 3.0, taps={b.local_addr: attack})
    rtcp_sent = [d for d in captured if is_rtcp(d)]
    rtp_attacked = sum(1 for i, d in enumerate(captured, 1) if i % 10 == 0 and not is_rtcp(d))
    assert (len(captured), len(rtcp_sent), rtp_attacked) == (166, 10, 16)
    st = call.b.stats()
    assert st.srtp_failures == {"auth_failed": 2 * 16, "replay": 16}
    assert st.srtcp_failures == {"auth_failed": 2 * 10, "replay": 10}
    assert st.packets_received == 151 == len(captured) - len(rtcp_sent) - 5  # every genuine packet but the
    assert st.packets_lost == 0 and st.malformed == 0                        # 5 sent after B stopped
    assert aligned_corr(clip[: 2 * 48000], call.heard_by_b.samples())[0] > 0.9


async def test_survives_20pct_loss_100ms_jitter_reordering_duplicates(speech: np.ndarray) -> None:
    a, b = sim_configs(rtcp_interval=0.5)
    clip = speech[: 4 * 48000]
    call = await sim_call(a, b, clip, clip, 4.5, a_to_b=Link(loss=0.2, jitter_ms=100, duplicate=0.02), seed=7)
    assert _counters(call.a) == {
        "packets_sent": 230, "packets_received": 184, "packets_lost": 42, "concealed_frames": 8,
        "fec_recovered": 36, "underruns": 3, "late_packets": 0, "duplicates": 0, "srtp_failures": {"replay": 5},
        "srtcp_failures": {"replay": 1}, "malformed": 0, "jitter_buffer_ms": 120, "late_ticks": 0, "ticks": 230,
        "rtcp_sent": 10, "rtcp_received": 10, "dtmf_received": (), "bye_received": True}
    assert _counters(call.b) == {
        "packets_sent": 226, "packets_received": 185, "packets_lost": 38, "concealed_frames": 10,
        "fec_recovered": 33, "underruns": 5, "late_packets": 1, "duplicates": 0, "srtp_failures": {"replay": 2},
        "srtcp_failures": {}, "malformed": 0, "jitter_buffer_ms": 120, "late_ticks": 0, "ticks": 226,
        "rtcp_sent": 10, "rtcp_received": 7, "dtmf_received": (), "bye_received": False}
    ab = call.network.stats(a.local_addr, b.local_addr)
    assert (ab.sent, ab.dropped, ab.duplicated) == (240, 41, 2)  # duplicates die as SRTP replays
    for s, sink in ((call.a, call.heard_by_a), (call.b, call.heard_by_b)):
        assert aligned_corr(clip, sink.samples())[0] > 0.5  # audio continues, recognisably the same
        assert s.stats().remote_fraction_lost is not None and s.stats().remote_fraction_lost > 0.2


@pytest.mark.parametrize("codec, suite", [(PCMU, SrtpSuite.AES_CM_128_HMAC_SHA1_80),
                                          (PCMA, SrtpSuite.AEAD_AES_128_GCM)])
async def test_g711_fallback_and_aes_cm_interop_suite(speech: np.ndarray, codec, suite) -> None:
    a, b = sim_configs(codec=codec, suite=suite, dtmf_payload_type=101)
    clip = speech[: 48000]
    call = await sim_call(a, b, clip, clip, 1.0, events=((0.2, lambda c: c.a.send_dtmf("7", 80)),
                                                         (0.5, lambda c: c.a.send_dtmf("#", 80))))
    sb = call.b.stats()
    assert sb.dtmf_received == ("7", "#") and sb.packets_received == 51 and sb.packets_lost == 0
    assert sb.srtp_failures == {} and sb.malformed == 0
    assert aligned_corr(clip, call.heard_by_b.samples())[0] > 0.6  # two DTMF events replace ~0.3 s of 1 s
    assert aligned_corr(clip, call.heard_by_a.samples())[0] > 0.9


async def test_hold_stops_sending_and_resume_restarts(speech: np.ndarray) -> None:
    counts: dict[str, int] = {}

    def hold(call: SimCall) -> None:
        call.a.hold()
        counts["held"] = call.a.stats().packets_sent

    def resume(call: SimCall) -> None:
        counts["after"] = call.a.stats().packets_sent
        call.a.resume()

    a, b = sim_configs()
    call = await sim_call(a, b, speech, speech, 1.0, events=((0.3, hold), (0.7, resume)))
    assert counts == {"held": 15, "after": 15}  # ticks at 0, 20, ..., 280 ms; none during the 400 ms hold
    assert call.a.stats().packets_sent == 56 - 20 and call.a.stats().ticks == 56  # runs to 1.1 s
    assert call.b.stats().packets_received == 31 and call.b.stats().rtcp_received == 1  # RTCP went on


async def test_bind_failure_is_a_media_error(speech: np.ndarray) -> None:
    a, b = configs()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(a.local_addr)
    try:
        with pytest.raises(MediaError, match="cannot bind"):
            await MediaSession(a, ArraySource(speech), ArraySink()).start()
    finally:
        blocker.close()
    assert "send_key" not in repr(a.srtp) and a.srtp.send_key.hex() not in repr(a)


def _drain(rx: socket.socket) -> list[int]:
    got = []
    while True:
        try:
            got.append(int.from_bytes(rx.recv(16), "big"))
        except BlockingIOError:
            return got


async def _settle(relay: ImpairmentRelay, rx: socket.socket, sent: int, got: list[int]) -> None:
    """Wait (polling, up to 10 s) until the relay has read all ``sent`` packets and we have all it forwarded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        await asyncio.sleep(0.01)
        got += _drain(rx)
        if relay.ab.stats.received == sent and relay.in_flight == 0 and len(got) >= relay.ab.stats.forwarded:
            return


async def test_relay_is_seeded_and_loopback_only() -> None:
    with pytest.raises(ImpairError):
        ImpairmentRelay(("10.0.0.1", 5), ("127.0.0.1", 6))
    with pytest.raises(ImpairError):
        Impairment(loss=1.5)
    outcomes = []
    for _ in range(2):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        try:
            async with ImpairmentRelay(("127.0.0.1", 9), rx.getsockname(), Impairment(loss=0.3, duplicate=0.1),
                                       seed=42) as relay:
                tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                for i in range(200):
                    tx.sendto(i.to_bytes(2, "big"), relay.a_addr)
                tx.close()
                got: list[int] = []
                await _settle(relay, rx, 200, got)
                s = relay.ab.stats
                assert s.received == 200 and len(got) == s.forwarded == 200 - s.dropped + s.duplicated
                assert 30 < s.dropped < 90
                outcomes.append(got)
        finally:
            rx.close()
    assert outcomes[0] == outcomes[1]


async def test_relay_burst_loss_comes_in_runs() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    try:
        imp = Impairment(burst_enter=0.05, burst_exit=0.25)  # mean burst 4 packets
        got: list[int] = []
        async with ImpairmentRelay(("127.0.0.1", 9), rx.getsockname(), imp, seed=3) as relay:
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(400):
                tx.sendto(i.to_bytes(2, "big"), relay.a_addr)
                if i % 20 == 19:
                    await asyncio.sleep(0.002)  # let the relay forward, then empty our socket
                    got += _drain(rx)
            tx.close()
            await _settle(relay, rx, 400, got)
    finally:
        rx.close()
    lost = [i for i in range(400) if i not in set(got)]
    runs = sum(1 for i in lost if i - 1 not in lost)
    assert relay.ab.stats.received == 400 and len(lost) == relay.ab.stats.dropped > 20
    assert len(lost) / runs > 2.5  # losses cluster (independent 5 % loss would give runs of ~1.05)


async def test_symmetric_latching_reaches_a_peer_that_advertised_a_private_address(speech: np.ndarray) -> None:
    """A was told B is at a private address (B behind a NAT); A latches onto where B's authenticated SRTP
    comes from, and B hears A. A forged copy and a replay from an attacker's address move nothing."""
    from dataclasses import replace
    attacker = ("198.51.100.66", 9)
    seen: list[int] = []

    def replay_from_attacker(call: SimCall, data: bytes, src: tuple[str, int]) -> None:
        seen.append(1)
        call.network.deliver(data, src, call.a.config.local_addr)
        if len(seen) in (20, 40):
            call.network.deliver(data, attacker, call.a.config.local_addr)  # replay
            call.network.deliver(data[:-1] + bytes([data[-1] ^ 1]), attacker, call.a.config.local_addr)

    for latch in (True, False):
        a, b = sim_configs()
        a = replace(a, remote_addr=("10.0.0.9", 7000), latch=latch)
        call = await sim_call(a, b, speech, speech, 2.0, taps={a.local_addr: replay_from_attacker})
        sa, sb = call.a.stats(), call.b.stats()
        if latch:
            assert sa.latched == 1 and call.a.remote_addr == b.local_addr
            assert sb.packets_received == sb.ticks - 1  # only A's first packet went to the private address
            assert sa.srtp_failures == {"replay": 4}  # libsrtp checks the index before the tag
        else:
            assert sa.latched == 0 and call.a.remote_addr == ("10.0.0.9", 7000)
            assert sb.packets_received == 0
        seen.clear()


def test_warm_up_exercises_the_media_stack_once_per_process() -> None:
    from softphone.media import warmup

    warmup.warm_up()
    assert warmup.warm()
    warmup.warm_up()  # a second phone's start: returns at once
    assert warmup.warm()
