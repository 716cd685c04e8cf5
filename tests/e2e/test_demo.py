"""scripts/demo's flow (lab.demo) as a test: exit 0 and a final JSON line saying the call matched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_demo_call_matches(tmp_path: Path) -> None:
    require_tool("kamailio")
    require_tool("espeak-ng")
    out = subprocess.run([sys.executable, "-m", "lab.demo", "--keep", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=90, cwd=REPO)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(lines[-1])
    assert result["call"] == "ok" and result["mikey"] == "verified" and result["srtp"] == "AEAD_AES_128_GCM"
    assert result["packets_received"] > 100 and result["loss"] < 0.05
    assert result["pesq_mos"] >= 2.5 and 0 < result["setup_ms"] < 2000
    assert (tmp_path / "demo" / "bob-recording.wav").stat().st_size > 100_000
    assert "Traceback" not in out.stderr
