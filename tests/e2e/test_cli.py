"""The ``softphone`` CLI end to end: ``answer --auto --record`` and ``call --play --duration --json`` as
two processes through the lab's Kamailio (TLS) with keys from its KMS; and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from softphone.media.audio import read_wav

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _softphone(*args: str) -> list[str]:
    return [sys.executable, "-m", "softphone", *args]


def test_cli_call_and_auto_answer(lab: Lab, speech, tmp_path: Path) -> None:
    wav, samples = speech
    bob_cfg, alice_cfg = lab.account_file("bob", tmp_path), lab.account_file("alice", tmp_path)
    recording = tmp_path / "bob.wav"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bob = subprocess.Popen(_softphone("answer", "--config", str(bob_cfg), "--auto", "--json", "--record",
                                      str(recording), "--play", str(wav), "--timeout", "60"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert lab.kamailio is not None
        lab.kamailio.wait_for(r"LAB REGISTER aor=sip:bob@lab.test .*proto=tls", timeout=30)
        alice = subprocess.run(_softphone("call", "sip:bob@lab.test", "--config", str(alice_cfg), "--json",
                                          "--play", str(wav), "--record", str(tmp_path / "alice.wav"),
                                          "--duration", str(len(samples) / 48000 + 1.0)),
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)
        assert alice.returncode == 0, alice.stderr[-2000:]
        bob_out, bob_err = bob.communicate(timeout=30)
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.communicate(timeout=10)
    assert bob.returncode == 0, bob_err[-2000:]
    a_events = [json.loads(line) for line in alice.stdout.splitlines()]
    b_events = [json.loads(line) for line in bob_out.splitlines()]
    kinds = [e["event"] for e in a_events if e["event"] != "registration"]
    assert kinds[0] == "calling" and "answered" in kinds and kinds[-1] == "ended"
    answered = next(e for e in a_events if e["event"] == "answered")
    assert answered["security"] == "MIKEY-SAKKE" and answered["srtp"] == "AEAD_AES_128_GCM"
    incoming = next(e for e in b_events if e["event"] == "incoming")
    assert incoming["verified_identity"] == "sip:alice@lab.test" and incoming["key_id"] == answered["key_id"]
    assert compare(samples, read_wav(recording)).ok()
    assert compare(samples, read_wav(tmp_path / "alice.wav")).ok()
    assert "Traceback" not in alice.stderr + bob_err


def test_cli_errors_are_one_line(lab: Lab, speech, tmp_path: Path) -> None:
    cfg = lab.account_file("alice", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cases = [
        (["call", "sip:bob@lab.test", "--config", str(tmp_path / "missing.toml")], 2, "no account file"),
        (["call", "sip:bob@lab.test", "--config", str(cfg), "--profile", "nope"], 2, "unknown profile"),
        (["call", "sip:bob@lab.test", "--config", str(cfg), "--play", str(tmp_path / "none.wav")], 2, "audio"),
        (["call", "sip:nobody@lab.test", "--config", str(cfg), "--play", str(speech[0]),
          "--record", str(tmp_path / "r.wav"), "--timeout", "10"], 1, "404"),
    ]
    started = time.monotonic()
    for argv, code, text in cases:
        out = subprocess.run(_softphone(*argv), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == code, (argv, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("softphone: ") and text in lines[0], out.stderr
    assert time.monotonic() - started < 60
