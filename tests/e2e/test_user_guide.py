"""docs/USER-GUIDE.md's two-phone walkthrough, run as written.

The command blocks after ``<!-- walkthrough: run -->`` run in order (each to completion) and the one
after ``<!-- walkthrough: background -->`` runs in the background (it waits for the call), all in a
fresh directory. The only substitution is the one the guide names as a placeholder: the state
directory ``build/lab`` becomes a temporary one. ``softphone`` on PATH is this source tree's CLI.
"""

from __future__ import annotations

import os
import re
import stat
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
GUIDE = REPO / "docs" / "USER-GUIDE.md"
PLACEHOLDER = "build/lab"
_BLOCK = re.compile(r"<!-- walkthrough: (run|background) -->\s*```sh\n(.*?)```", re.S)


def walkthrough() -> list[tuple[str, list[str]]]:
    """(mode, command lines) for each marked block, in the guide's order."""
    blocks = [(mode, [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")])
              for mode, body in _BLOCK.findall(GUIDE.read_text())]
    assert blocks, "no <!-- walkthrough --> blocks in docs/USER-GUIDE.md"
    return blocks


def test_walkthrough_blocks_are_marked() -> None:
    modes = [mode for mode, _ in walkthrough()]
    assert modes.count("background") == 1 and modes[0] == "run" and modes[-1] == "run"
    text = " ".join(" ".join(lines) for _, lines in walkthrough())
    assert "scripts/lab up" in text and "softphone call" in text and "scripts/lab down" in text


def test_walkthrough(tmp_path: Path) -> None:
    require_tool("kamailio")
    require_tool("espeak-ng")
    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    (work / "scripts").symlink_to(REPO / "scripts")  # the guide runs from the source checkout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "softphone"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m softphone.cli \"$@\"\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO),
               PYTHON=sys.executable)
    background: subprocess.Popen[str] | None = None
    outputs: list[str] = []
    try:
        for mode, lines in walkthrough():
            for line in lines:
                command = line.replace(PLACEHOLDER, str(state))
                if mode == "background":
                    background = subprocess.Popen(["bash", "-c", command], cwd=work, env=env, text=True,
                                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    assert background.stdout is not None
                    first = first_line_after_registration(background.stdout)  # bounded by the answer's --timeout
                    assert first.startswith("waiting for a call"), first
                    continue
                done = subprocess.run(["bash", "-c", command], cwd=work, env=env, text=True, capture_output=True,
                                      timeout=120)
                assert done.returncode == 0, (command, done.stdout, done.stderr)
                assert "Traceback" not in done.stderr
                outputs.append(done.stdout)
                if "softphone call" in command:
                    assert background is not None
                    b_out, b_err = background.communicate(timeout=30)
                    assert background.returncode == 0, b_err
                    outputs.append(b_out)
    finally:
        if background is not None and background.poll() is None:
            background.kill()
            background.communicate(timeout=10)
        subprocess.run([str(REPO / "scripts" / "lab"), "down", "--dir", str(state)], env=env, timeout=60,
                       capture_output=True)
    call_out = next(o for o in outputs if "calling sip:bob@lab.test" in o)
    assert "Secure Chorus (MIKEY-SAKKE) AEAD_AES_128_GCM" in call_out and "call ended (local hangup)" in call_out
    assert any("call ended (remote hangup)" in o for o in outputs)
    for heard, said in (("bob-heard.wav", "alice-says.wav"), ("alice-heard.wav", "bob-says.wav")):
        match = compare(read_wav(work / said), read_wav(work / heard))
        assert match.ok(), (heard, match)
    deadline = time.monotonic() + 10
    while (state / "lab.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (state / "lab.pid").exists()
