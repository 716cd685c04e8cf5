"""Interop with baresip (no MIKEY) under the interop-sdes profile: SDES keys, speech both ways.

We call baresip: our offer lists AEAD_AES_128_GCM then AES_CM_128_HMAC_SHA1_80 and baresip answers
GCM. baresip calls us: its offer leads with AES_CM_128_HMAC_SHA1_80, which we accept. Each side
plays speech and records; both recordings must match what the other side played.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import ifaddr
import numpy as np
import pytest

from lab.audiocheck import compare
from lab.baresip import Baresip
from softphone.calls.events import CallEvent, IceChanged
from softphone.calls.phone import Phone, PhoneSettings
from softphone.calls.profile import load_profile
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.media.ice import IceSettings
from softphone.sip.transaction import Timers
from softphone.sip.ua import UAConfig
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


class RecordingBaresip(Baresip):
    """baresip that also writes what it decodes to ``workdir/snd/*-dec.wav`` (its sndfile filter)."""

    def _config(self) -> str:
        (self.workdir / "snd").mkdir(parents=True, exist_ok=True)
        return super()._config() + f"module sndfile.so\nsnd_path {self.workdir / 'snd'}\n"

    def decoded(self) -> np.ndarray:
        files = sorted((self.workdir / "snd").glob("*dec*.wav"))
        assert files, "baresip wrote no decoded-audio file"
        return read_wav(files[-1])


def _phone(user: str) -> Phone:
    return Phone(PhoneSettings(uri=f"sip:{user}@lab.test", profile=load_profile("interop-sdes"),
                               ua=UAConfig(aor=f"sip:{user}@lab.test", timers=Timers(t1=0.1, t2=0.4, t4=0.5))))


def _check(played: np.ndarray, recorded: np.ndarray) -> None:
    match = compare(played, recorded)
    assert match.ok(), match       # speech present (G.711 through two resamplers; quality is benchmarked)


async def test_we_call_baresip_gcm_speech_both_ways(tmp_path: Path, speech8k) -> None:
    require_tool("baresip")
    wav, samples = speech8k
    sink = ArraySink()
    with RecordingBaresip(tmp_path / "bs", user="bob", mediaenc="srtp-mand", audio_file=wav, codecs="pcmu") as bs:
        async with _phone("alice") as alice:
            call = await alice.call(bs.uri, ArraySource(samples), sink, timeout=10)
            assert call.negotiated is not None
            assert call.negotiated.security == "SDES" and call.negotiated.suite == "AEAD_AES_128_GCM"
            assert call.negotiated.codec.name == "PCMU"
            await asyncio.sleep(len(samples) / 48000 + 0.8)
            status = call.status()
            assert status["packets_received"] > 100 and status["srtp_failures"] == 0
            await call.hangup()
            # baresip also hangs up at the end of its file
            await asyncio.to_thread(bs.wait_for, r"terminated|session closed")
        heard_by_baresip = bs.decoded()
    _check(samples, sink.samples())
    _check(samples, heard_by_baresip)


async def test_baresip_calls_us_aes_cm_speech_both_ways(tmp_path: Path, speech8k) -> None:
    require_tool("baresip")
    wav, samples = speech8k
    sink = ArraySink()
    with RecordingBaresip(tmp_path / "bs", user="bob", mediaenc="srtp-mand", audio_file=wav, codecs="pcmu") as bs:
        async with _phone("alice") as alice:
            await asyncio.to_thread(bs.command, "dial", f"sip:alice@127.0.0.1:{alice.ua.port}")
            incoming = await alice.next_incoming(10)
            assert incoming.answerer.current is not None
            assert incoming.answerer.current.suite == "AES_CM_128_HMAC_SHA1_80"
            call = await incoming.accept(ArraySource(samples), sink)
            await asyncio.sleep(len(samples) / 48000 + 0.8)
            status = call.status()
            assert status["packets_received"] > 100 and status["srtp_failures"] == 0
            await call.hangup()
            # baresip also hangs up at the end of its file
            await asyncio.to_thread(bs.wait_for, r"terminated|session closed")
        heard_by_baresip = bs.decoded()
    _check(samples, sink.samples())
    _check(samples, heard_by_baresip)


_HOSTS = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str) and ip.ip != "127.0.0.1"]


@pytest.mark.skipif(not _HOSTS, reason="ICE host candidates need a non-loopback IPv4 interface")
async def test_baresip_calls_us_over_ice_speech_both_ways(tmp_path: Path, speech8k) -> None:
    """baresip's own ICE (its ``ice`` module, full ICE, controlling) over SDES: its offer has two components
    and no rtcp-mux, our answer two components and ``a=rtcp``; the checks nominate a host pair. Before, we
    answered one rtcp-muxed component and baresip gave up ICE while we waited: "ICE failed: timed out"."""
    require_tool("baresip")
    wav, samples = speech8k
    sink = ArraySink()
    events: list[CallEvent] = []
    with RecordingBaresip(tmp_path / "bs", user="bob", mediaenc="srtp-mand", audio_file=wav, codecs="pcmu",
                          medianat="ice", interface=_HOSTS[0]) as bs:
        plain = _phone("alice")
        async with Phone(replace(plain.settings, ice=IceSettings()), on_event=events.append) as alice:
            await asyncio.to_thread(bs.command, "dial", f"sip:alice@127.0.0.1:{alice.ua.port}")
            incoming = await alice.next_incoming(10)
            offered = incoming.answerer.current
            assert offered is not None and offered.ice is not None and not offered.ice.rtcp_mux
            call = await incoming.accept(ArraySource(samples), sink)
            await asyncio.sleep(len(samples) / 48000 + 0.8)
            status = call.status()
            assert status["ice"] == "host" and status["security"] == "SDES"
            assert status["packets_received"] > 100 and status["srtp_failures"] == 0
            await call.hangup()
            await asyncio.to_thread(bs.wait_for, r"terminated|session closed")
        assert not bs.proc.matching("ICE not supported by peer")
        heard_by_baresip = bs.decoded()
    connected = [e for e in events if isinstance(e, IceChanged) and e.state == "connected"]
    assert len(connected) == 1 and connected[0].controlling is False
    _check(samples, sink.samples())
    _check(samples, heard_by_baresip)
