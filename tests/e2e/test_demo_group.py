"""``scripts/demo group`` (lab.demo_group) as a test: exit 0 and the final JSON line's verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_group_passes() -> None:
    require_tool("kamailio")
    require_tool("espeak-ng")
    out = subprocess.run([sys.executable, "-m", "lab.demo_group", "--quiet"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["call"] == "ok" and "reason" not in result
    assert result["members_heard_all"] is True and result["pairs_checked"] == 12
    assert result["removed_member_locked_out"] is True and result["focus_held_bytes"] == 0
    assert isinstance(result["setup_ms"], float) and out.stderr == ""
