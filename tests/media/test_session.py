"""Two media sessions on loopback through SRTP: speech both ways, attacks rejected, bad networks survived."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import numpy as np
import pytest

from lab.impair import ImpairError, Impairment, ImpairmentRelay
from softphone.media.audio import ArraySink, ArraySource, WavSink, WavSource, read_wav, write_wav
from softphone.media.codecs import PCMA, PCMU
from softphone.media.session import MediaConfig, MediaError, MediaSession
from softphone.media.srtp import SrtpSuite
from tests.media.conftest import aligned_corr, configs, pesq_wb


async def _call(a: MediaConfig, b: MediaConfig, audio_a: np.ndarray, audio_b: np.ndarray, seconds: float,
                during=None) -> tuple[MediaSession, MediaSession, ArraySink, ArraySink]:
    sink_a, sink_b = ArraySink(), ArraySink()
    sa = MediaSession(a, ArraySource(audio_a), sink_a)
    sb = MediaSession(b, ArraySource(audio_b), sink_b)
    await sa.start()
    try:
        await sb.start()
        try:
            if during is not None:
                await during(sa, sb)
            await asyncio.sleep(seconds)
        finally:
            await sb.stop()
    finally:
        await sa.stop()
    return sa, sb, sink_a, sink_b


@pytest.mark.slow
async def test_speech_both_ways_over_srtp_gcm_with_mki(speech: np.ndarray, tmp_path) -> None:
    a, b = configs(mki=b"\x00\x00\x00\x2a", rtcp_interval=1.0)
    src = tmp_path / "in.wav"
    write_wav(src, speech)
    sink_a, sink_b = WavSink(tmp_path / "a.wav"), WavSink(tmp_path / "b.wav")
    sa = MediaSession(a, WavSource(src), sink_a)
    sb = MediaSession(b, ArraySource(speech[::-1].copy()), sink_b)
    await sa.start()
    await sb.start()
    try:
        await asyncio.sleep(len(speech) / 48000 + 0.5)
    finally:
        await sb.stop()
        await sa.stop()
    heard_by_b = read_wav(tmp_path / "b.wav")
    heard_by_a = read_wav(tmp_path / "a.wav")
    assert pesq_wb(speech, heard_by_b) >= 3.8
    assert pesq_wb(speech[::-1].copy(), heard_by_a) >= 3.8
    st = sb.stats()
    assert st.packets_lost == 0 and st.srtp_failures == {} and st.rtt_ms is not None
    assert sa.stats().packets_received >= len(speech) // 960 and sa.stats().bye_received  # B hung up first


async def test_forged_replayed_truncated_rejected_and_audio_continues(speech: np.ndarray) -> None:
    a, b = configs(rtcp_interval=0.3)
    tap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tap.bind(("127.0.0.1", 0))
    tap.setblocking(False)
    relay_to_b = (b.local_addr)
    a = dataclasses.replace(a, remote_addr=tap.getsockname())  # A's packets reach the test first
    captured: list[bytes] = []

    async def attack(sa: MediaSession, sb: MediaSession) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.5
        while loop.time() < deadline:
            try:
                data = tap.recv(2048)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            captured.append(data)
            if len(captured) % 10 == 0 or 192 <= data[1] <= 223:  # every 10th packet, every RTCP; forgeries first: libsrtp checks replay before authenticity
                forged = bytearray(data)
                forged[-20] ^= 0x01
                tap.sendto(bytes(forged), relay_to_b)  # tampered
                tap.sendto(data[:-5], relay_to_b)  # truncated
                tap.sendto(data, relay_to_b)  # the genuine packet
                tap.sendto(data, relay_to_b)  # replay
            else:
                tap.sendto(data, relay_to_b)

    try:
        sa, sb, _, sink_b = await _call(a, b, speech, speech, 0.3, attack)
    finally:
        tap.close()
    st = sb.stats()
    rtcp_sent = [d for d in captured if 192 <= d[1] <= 223]
    rtp_sent = [d for i, d in enumerate(captured) if not 192 <= d[1] <= 223]
    rtp_attacked = sum(1 for i, d in enumerate(captured, 1) if i % 10 == 0 and not 192 <= d[1] <= 223)
    assert rtp_attacked >= 5 and len(rtcp_sent) >= 3
    assert st.srtp_failures == {"auth_failed": 2 * rtp_attacked, "replay": rtp_attacked}
    assert st.srtcp_failures == {"auth_failed": 2 * len(rtcp_sent), "replay": len(rtcp_sent)}
    assert st.packets_received == len(rtp_sent)  # every genuine packet, nothing else
    corr, _ = aligned_corr(speech[: 2 * 48000], sink_b.samples())
    assert corr > 0.8


@pytest.mark.slow
async def test_survives_20pct_loss_100ms_jitter_reordering(speech: np.ndarray) -> None:
    a, b = configs(rtcp_interval=0.5)
    imp = Impairment(loss=0.2, jitter_ms=100, reorder=0.05, duplicate=0.02)
    async with ImpairmentRelay(a.local_addr, b.local_addr, imp, seed=7, max_seconds=30) as relay:
        a2 = dataclasses.replace(a, remote_addr=relay.a_addr)
        b2 = dataclasses.replace(b, remote_addr=relay.b_addr)
        clip = speech[: 4 * 48000]
        sa, sb, sink_a, sink_b = await _call(a2, b2, clip, clip, 4.5)
    for s, sink in ((sa, sink_a), (sb, sink_b)):
        st = s.stats()
        assert st.packets_received > 0.7 * st.ticks * 0.8
        assert st.packets_lost > 0.1 * st.packets_received
        assert st.fec_recovered > 0 and st.concealed_frames > 0
        assert st.jitter_buffer_ms >= 60 and st.late_ticks == 0
        assert st.remote_fraction_lost is not None and st.remote_fraction_lost > 0.1
        assert aligned_corr(clip, sink.samples())[0] > 0.3  # audio continues, recognisably the same
    assert relay.ab.stats.dropped > 0 and relay.ab.stats.reordered > 0


@pytest.mark.parametrize("codec, suite", [(PCMU, SrtpSuite.AES_CM_128_HMAC_SHA1_80), (PCMA, SrtpSuite.AEAD_AES_128_GCM)])
async def test_g711_fallback_and_aes_cm_interop_suite(speech: np.ndarray, codec, suite) -> None:
    a, b = configs(codec=codec, suite=suite, dtmf_payload_type=101)
    clip = speech[: 48000]

    async def dial(sa: MediaSession, sb: MediaSession) -> None:
        await asyncio.sleep(0.2)
        sa.send_dtmf("7", 80)
        await asyncio.sleep(0.3)
        sa.send_dtmf("#", 80)

    sa, sb, _, sink_b = await _call(a, b, clip, clip, 1.0, dial)
    assert aligned_corr(clip, sink_b.samples())[0] > 0.5  # two DTMF events replace ~0.3 s of the 1 s of speech
    assert sb.stats().dtmf_received == ("7", "#")


async def test_hold_stops_sending_and_resume_restarts(speech: np.ndarray) -> None:
    a, b = configs()
    counts: dict[str, int] = {}

    async def hold(sa: MediaSession, sb: MediaSession) -> None:
        await asyncio.sleep(0.3)
        sa.hold()
        counts["held"] = sa.stats().packets_sent
        await asyncio.sleep(0.4)
        counts["after"] = sa.stats().packets_sent
        sa.resume()
        await asyncio.sleep(0.3)

    sa, sb, _, _ = await _call(a, b, speech, speech, 0.0, hold)
    assert counts["after"] == counts["held"] > 5
    assert sa.stats().packets_sent > counts["after"] + 5


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
                await asyncio.sleep(0.2)
                got = []
                while True:
                    try:
                        got.append(int.from_bytes(rx.recv(16), "big"))
                    except BlockingIOError:
                        break
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
        got: set[int] = set()

        def drain() -> None:
            while True:
                try:
                    got.add(int.from_bytes(rx.recv(16), "big"))
                except BlockingIOError:
                    return

        async with ImpairmentRelay(("127.0.0.1", 9), rx.getsockname(), imp, seed=3) as relay:
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(400):
                tx.sendto(i.to_bytes(2, "big"), relay.a_addr)
                if i % 20 == 19:
                    await asyncio.sleep(0.002)  # let the relay forward, then empty our socket
                    drain()
            tx.close()
            await asyncio.sleep(0.1)
            drain()
    finally:
        rx.close()
    lost = [i for i in range(400) if i not in got]
    runs = sum(1 for i in lost if i - 1 not in lost)
    assert relay.ab.stats.received == 400 and len(lost) == relay.ab.stats.dropped > 20
    assert len(lost) / runs > 2.5  # losses cluster (independent 5 % loss would give runs of ~1.05)
