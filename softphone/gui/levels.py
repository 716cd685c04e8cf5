"""Audio taps for the in-call view: level meters (dBFS, decaying peak) and microphone mute.

They wrap any :class:`~softphone.media.audio.AudioSource` / ``AudioSink`` so the call core is unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from softphone.media.audio import AudioSink, AudioSource

FLOOR_DB = -60.0


def level_db(frame: np.ndarray) -> float:
    """RMS level of an int16 frame in dBFS, floored at :data:`FLOOR_DB`."""
    if frame.size == 0:
        return FLOOR_DB
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float64))))) / 32768.0
    return max(FLOOR_DB, 20.0 * math.log10(rms)) if rms > 0 else FLOOR_DB


class _Meter:
    def __init__(self) -> None:
        self.level = FLOOR_DB
        self.frames = 0

    def _measure(self, frame: np.ndarray) -> None:
        self.frames += 1
        now = level_db(frame)
        # fast attack, ~300 ms release at 50 frames/s
        self.level = now if now > self.level else max(FLOOR_DB, self.level - 1.2)

    def fraction(self) -> float:
        """0..1 for a progress-bar meter."""
        return (self.level - FLOOR_DB) / -FLOOR_DB


class MeteredSource(_Meter):
    """Microphone tap: meters what is captured and sends silence while ``muted``."""

    def __init__(self, inner: AudioSource) -> None:
        super().__init__()
        self.inner = inner
        self.muted = False

    def read(self) -> np.ndarray | None:
        frame = self.inner.read()
        if frame is None:
            return None
        if self.muted:
            self._measure(frame[:0])
            return np.zeros_like(frame)
        self._measure(frame)
        return frame

    def close(self) -> None:
        self.inner.close()


class MeteredSink(_Meter):
    """Speaker tap: meters what is played."""

    def __init__(self, inner: AudioSink) -> None:
        super().__init__()
        self.inner = inner

    def write(self, frame: np.ndarray) -> None:
        self._measure(frame)
        self.inner.write(frame)

    def close(self) -> None:
        self.inner.close()
