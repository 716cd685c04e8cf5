"""``scripts/lab up|status|down``: the lab as a command; two ``softphone`` processes call through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.audiocheck import compare
from softphone.media.audio import read_wav
from tests.conftest import require_tool
from tests.e2e.conftest import first_line_after_registration

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHON=sys.executable)


def lab_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / "lab"), *args], capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_lab_up_call_down(speech, tmp_path: Path) -> None:
    require_tool("kamailio")
    wav, samples = speech
    state_dir = tmp_path / "lab"
    up = lab_cmd("up", "--dir", str(state_dir), "--users", "alice,bob")
    try:
        assert up.returncode == 0, up.stderr
        assert "softphone answer --config" in up.stdout and "softphone call sip:bob@lab.test" in up.stdout
        status = lab_cmd("status", "--dir", str(state_dir), "--json")
        state = json.loads(status.stdout)
        assert status.returncode == 0 and state["running"] is True
        pids = [state["pid"], state["kamailio"]["pid"], state["kms"]["pid"]]
        assert all(alive(p) for p in pids)
        assert lab_cmd("up", "--dir", str(state_dir)).returncode == 1  # already running
        answer_line, call_line = state["next"]
        played = ["--play", str(wav)]
        bob = subprocess.Popen([sys.executable, "-m", "softphone.cli", *answer_line.split()[1:], "--auto", *played,
                                "--record", str(tmp_path / "bob.wav")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
        try:
            assert bob.stdout is not None
            assert first_line_after_registration(bob.stdout).startswith("waiting for a call")  # registered
            alice = subprocess.run([sys.executable, "-m", "softphone.cli", *call_line.split()[1:], *played,
                                    "--record", str(tmp_path / "alice.wav"),
                                    "--duration", str(len(samples) / 48000 + 1.0)],
                                   capture_output=True, text=True, env=ENV, cwd=REPO, timeout=90)
            b_out, b_err = bob.communicate(timeout=30)
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.communicate(timeout=10)
        assert alice.returncode == 0 and bob.returncode == 0, alice.stderr + b_err
        assert "MIKEY-SAKKE" in alice.stdout and "AEAD_AES_128_GCM" in alice.stdout
        assert compare(samples, read_wav(tmp_path / "bob.wav")).ok()
        assert compare(samples, read_wav(tmp_path / "alice.wav")).ok()
    finally:
        down = lab_cmd("down", "--dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
    assert lab_cmd("status", "--dir", str(state_dir)).returncode == 3
