"""Voice messages: Opus round trip keeps the speech, fits one secure message, long recordings refused."""

from __future__ import annotations

import numpy as np
import pytest

from lab.quality import align
from softphone.media.codecs import SAMPLE_RATE
from softphone.messaging import secure, voice


def _speechlike(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate modulation
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220, 440, 660, 1100), 1))
    return (6000 * envelope * tone).astype(np.int16)


def test_round_trip_fits_one_message() -> None:
    pcm = _speechlike(10.0)
    item = voice.encode(pcm)
    assert len(item) <= secure.MAX_ATTACHMENT
    out = voice.decode(item)
    assert len(out) == len(pcm)
    corr, _ = align(pcm, out)
    assert corr > 0.8
    label, data = voice.items(pcm)
    assert label.data == b"voice message, 10.0 s" and voice.voice_item(((2, data.data),)) == data.data


def test_too_long_and_malformed() -> None:
    with pytest.raises(voice.VoiceError, match="at most"):
        voice.encode(np.zeros(int(13 * SAMPLE_RATE), dtype=np.int16))
    with pytest.raises(voice.VoiceError):
        voice.decode(b"SCVM\x01\x14\x00\x05\x00")
