"""Interop with a pjsua2 peer (SDES SRTP mandatory, AES-CM only) under the interop-sdes profile:
we call it and it calls us; speech both ways, both recordings checked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.audiocheck import compare
from lab.pjsua_peer import PjsuaPeer
from softphone.calls.phone import Phone, PhoneSettings
from softphone.calls.profile import load_profile
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.sip.transaction import Timers
from softphone.sip.ua import UAConfig

pytestmark = pytest.mark.slow


def _phone() -> Phone:
    return Phone(PhoneSettings(uri="sip:alice@lab.test", profile=load_profile("interop-sdes"),
                               ua=UAConfig(aor="sip:alice@lab.test", timers=Timers(t1=0.1, t2=0.4, t4=0.5))))


@pytest.mark.parametrize("direction", ["we-call", "it-calls"])
async def test_pjsua_speech_both_ways(direction: str, tmp_path: Path, speech8k) -> None:
    wav, samples = speech8k
    peer = PjsuaPeer(srtp=True, play=wav, record=tmp_path / "pjsua-heard.wav")
    sink = ArraySink()
    await asyncio.to_thread(peer.start)
    try:
        async with _phone() as alice:
            if direction == "we-call":
                call = await alice.call(peer.uri, ArraySource(samples), sink, timeout=10)
            else:
                peer.send(f"dial sip:alice@127.0.0.1:{alice.ua.port}")
                call = await (await alice.next_incoming(10)).accept(ArraySource(samples), sink)
            assert call.negotiated is not None and call.negotiated.security == "SDES"
            assert call.negotiated.suite == "AES_CM_128_HMAC_SHA1_80"       # pjsua2 has no GCM
            await asyncio.sleep(len(samples) / 48000 + 0.8)
            status = call.status()
            assert status["packets_received"] > 100 and status["srtp_failures"] == 0
            await call.hangup()
    finally:
        await asyncio.to_thread(peer.stop)
    assert compare(samples, sink.samples()).ok()  # speech present both ways
    assert peer.record is not None
    assert compare(samples, read_wav(peer.record)).ok()
