"""End-to-end fixtures: speech to send (the per-module ``lab`` is in tests/conftest.py, shared with the GUI tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from softphone.media.audio import read_wav
from tests.conftest import require_tool


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A few seconds of synthetic speech made with espeak-ng at test time."""
    espeak = require_tool("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(path),
                    "Secure Chorus test call. The quick brown fox jumps over the lazy dog."],
                   check=True, capture_output=True, timeout=30)
    return path, read_wav(path)


@pytest.fixture
def speech8k(speech: tuple[Path, np.ndarray], tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The speech as 8 kHz mono 16-bit (what the SIP peers play and record on a PCMU call)."""
    sox = require_tool("sox")
    out = tmp_path / "speech8k.wav"
    subprocess.run([sox, str(speech[0]), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True, timeout=30)
    return out, read_wav(out)


def first_line_after_registration(stream: IO[str], most: int = 5) -> str:
    """The first line a ``softphone answer`` prints after its registration-state lines (bounded)."""
    line = ""
    for _ in range(most):
        line = stream.readline()
        if not line.startswith("registration: "):
            return line
    return line
