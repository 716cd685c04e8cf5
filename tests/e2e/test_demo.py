"""scripts/demo's flow (lab.demo) as a test: exit 0 and a final JSON line saying the call passed, judged on
what scheduling cannot change; and a failure that always says why, ``--quiet`` included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lab.demo
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_call_passes(tmp_path: Path) -> None:
    require_tool("kamailio")
    require_tool("espeak-ng")
    out = subprocess.run([sys.executable, "-m", "lab.demo", "--keep", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=90, cwd=REPO)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(lines[-1])
    assert result["call"] == "ok" and "reason" not in result
    assert result["mikey"] == "verified" and result["srtp"] == "AEAD_AES_128_GCM"
    assert result["packets_received"] > 0 and result["packets_back"] > 0
    assert result["speech"] >= lab.demo.MIN_CORRELATION   # speech present; correlation and PESQ only reported
    assert isinstance(result["pesq_mos"], float) and result["setup_ms"] > 0
    assert (tmp_path / "demo" / "bob-recording.wav").stat().st_size > 100_000
    assert "Traceback" not in out.stderr and out.stderr == ""


def test_demo_failure_says_why_even_quiet(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(lab.demo.shutil, "which", lambda _name: None)  # no espeak-ng: fails before the lab
    assert lab.demo.main(["--quiet", "--keep", str(tmp_path / "demo")]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert len(out.strip().splitlines()) == 1
    assert result["call"] == "failed" and result["reason"] == "LabError: espeak-ng is not installed (scripts/setup " \
                                                              "installs it)"
    assert err.count("\n") == 1 and err.startswith("demo: FAILED in ") and result["reason"] in err


@pytest.mark.parametrize("change, reason", [
    ({"mikey": "not verified"}, "the call did not connect with a verified MIKEY-SAKKE I_MESSAGE"),
    ({"packets_received": 0}, "bob received no SRTP packets (alice sent 500)"),
    ({"packets_back": 0}, "alice received no SRTP packets from bob"),
    ({"speech": 0.05}, "bob's recording does not carry alice's speech (speech 0.05, needs 0.3)"),
    ({"speech": None}, "bob's recording does not carry alice's speech (speech None, needs 0.3)"),
    ({"pesq_mos": 1.2, "correlation": 0.2, "loss": 0.0}, None),  # quality is reported, never judged
])
def test_demo_judges_what_scheduling_cannot_change(change: dict[str, object], reason: str | None) -> None:
    result = lab.demo.new_result() | {"mikey": "verified", "packets_sent": 500, "packets_received": 480,
                                      "packets_back": 490, "speech": 0.9, "correlation": 0.45, "pesq_mos": 3.4} | change
    assert lab.demo.judge(result) == reason
