"""``scripts/demo messages`` (lab.demo_messages) as a test: exit 0 and a final JSON line with the counts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.audiocheck import SPEECH_PRESENT
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_messages_passes(tmp_path: Path) -> None:
    require_tool("kamailio")
    out = subprocess.run([sys.executable, "-m", "lab.demo_messages", "--keep", str(tmp_path / "demo")],
                         capture_output=True, text=True, timeout=90, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["messages"] == "ok" and "reason" not in result
    assert result["delivered"] == result["stored_offline"] == 3 and result["store_sees_plaintext"] is False
    assert result["receipts"] == {"delivered": 3, "read": 3} and result["refused"] == {"replay": 1}
    assert out.stderr == ""
    if shutil.which("espeak-ng"):
        assert result["voice_message"] == "ok" and result["voice_octets"] <= 16 * 1024
        assert result["speech"] >= SPEECH_PRESENT and isinstance(result["pesq_mos"], float)
