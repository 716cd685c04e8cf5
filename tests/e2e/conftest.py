"""End-to-end fixtures (the per-module ``lab`` lives in tests/conftest.py, shared with the GUI tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
