"""Interop with a pjsua2 peer (SDES SRTP mandatory, AES-CM only) under the interop-sdes profile:
we call it and it calls us; speech both ways, both recordings checked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.proc import free_port
from softphone.calls.phone import Phone, PhoneSettings
from softphone.calls.profile import load_profile
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.sip.transaction import Timers
from softphone.sip.ua import UAConfig
from tests.conftest import require_tool

pytestmark = pytest.mark.slow
CHILD = Path(__file__).with_name("pjsua_srtp_peer.py")


class Peer:
    """The pjsua2 child: JSON events collected by a thread; always killed on exit."""

    def __init__(self, workdir: Path, play: Path) -> None:
        self.port = free_port()
        self.record = workdir / "pjsua-heard.wav"
        self.events: list[dict[str, Any]] = []
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "--port", str(self.port), "--play", str(play),
                                      "--record", str(self.record)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                continue

    def wait(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events:
                if ev["event"] == kind:
                    return ev
            time.sleep(0.02)
        raise TimeoutError(f"pjsua peer: no {kind!r} event (saw {self.events[-5:]})")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._thread.join(2)


@pytest.fixture
def speech8k(speech, tmp_path: Path) -> tuple[Path, np.ndarray]:
    sox = require_tool("sox")
    out = tmp_path / "speech8k.wav"
    subprocess.run([sox, str(speech[0]), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True, timeout=30)
    return out, read_wav(out)


def _phone() -> Phone:
    return Phone(PhoneSettings(uri="sip:alice@lab.test", profile=load_profile("interop-sdes"),
                               ua=UAConfig(aor="sip:alice@lab.test", timers=Timers(t1=0.1, t2=0.4, t4=0.5))))


@pytest.mark.parametrize("direction", ["we-call", "it-calls"])
async def test_pjsua_speech_both_ways(direction: str, tmp_path: Path, speech8k) -> None:
    wav, samples = speech8k
    peer = Peer(tmp_path, wav)
    sink = ArraySink()
    try:
        await asyncio.to_thread(peer.wait, "ready")
        async with _phone() as alice:
            if direction == "we-call":
                call = await alice.call(f"sip:peer@127.0.0.1:{peer.port}", ArraySource(samples), sink, timeout=10)
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
        await asyncio.to_thread(peer.close)
    assert compare(samples, sink.samples()).ok()  # speech present both ways
    assert compare(samples, read_wav(peer.record)).ok()
