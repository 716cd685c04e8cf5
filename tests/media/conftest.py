"""Media test fixtures: a speech WAV made with espeak-ng, paired session configs on loopback."""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np
import pytest

from lab.quality import align, pesq_wb
from softphone.media.audio import read_wav
from softphone.media.codecs import OPUS, CodecSpec
from softphone.media.session import MediaConfig, SrtpKeys
from softphone.media.srtp import SrtpSuite
from tests.conftest import require_tool

SENTENCE = ("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
            "It is easy to tell the depth of a well.")


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 8 s of synthetic English speech at 48 kHz mono int16."""
    espeak = require_tool("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-v", "en-us+f3", "-s", "150", "-w", str(path), SENTENCE], check=True, timeout=60,
                   capture_output=True)
    return read_wav(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_pair(suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, mki: bytes | None = None) -> tuple[SrtpKeys, SrtpKeys]:
    """Mirror-image keys for caller and callee (each sends with what the other receives with)."""
    k1, s1 = os.urandom(suite.key_len), os.urandom(suite.salt_len)
    k2, s2 = os.urandom(suite.key_len), os.urandom(suite.salt_len)
    return (SrtpKeys(suite, k1, s1, k2, s2, mki, mki), SrtpKeys(suite, k2, s2, k1, s1, mki, mki))


def configs(codec: CodecSpec = OPUS, suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, mki: bytes | None = None,
            remote_a: tuple[str, int] | None = None, remote_b: tuple[str, int] | None = None,
            **kw: object) -> tuple[MediaConfig, MediaConfig]:
    """Configs for sessions A and B on fixed free loopback ports; remotes default to each other."""
    pa, pb = free_port(), free_port()
    ka, kb = key_pair(suite, mki)
    a = MediaConfig(("127.0.0.1", pa), remote_a or ("127.0.0.1", pb), codec, ka, **kw)  # type: ignore[arg-type]
    b = MediaConfig(("127.0.0.1", pb), remote_b or ("127.0.0.1", pa), codec, kb, **kw)  # type: ignore[arg-type]
    return a, b


def aligned_corr(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation and lag (see :func:`lab.quality.align`)."""
    return align(sent, received)


__all__ = ["aligned_corr", "configs", "free_port", "key_pair", "pesq_wb", "speech"]
