"""Echo cancellation, noise suppression, gain control and high-pass filtering: the WebRTC audio processing
module (AEC3, NS, AGC, HPF) from the ``livekit`` wheel (``livekit.rtc.AudioProcessingModule``).

The module works on 10 ms frames; :class:`AudioProcessor` splits each 20 ms, 48 kHz mono frame in two.
The far end (what the loudspeaker plays) goes to :meth:`AudioProcessor.far_end` at the moment it is played
(a sound-device sink calls it from its PortAudio callback); the microphone's frames go through
:meth:`AudioProcessor.near_end` before encoding, with the render + capture delay (``delay_ms``) given to
``set_stream_delay_ms`` so AEC3 starts its search near the true echo delay.

:class:`DspSettings` says which parts are on; ``None`` means "automatic": on for sound devices, off for
WAV/array I/O (where there is no acoustic path to cancel and the audio must stay bit-exact).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from softphone.media.codecs import FRAME_SAMPLES, SAMPLE_RATE
from softphone.media.errors import MediaError

HALF = FRAME_SAMPLES // 2  # 10 ms at 48 kHz


@dataclass(frozen=True)
class DspSettings:
    """Which processing runs on the microphone; ``None``: on for sound devices, off for files/arrays."""

    aec: bool | None = None
    ns: bool | None = None
    agc: bool | None = None
    hpf: bool | None = None

    def resolve(self, devices: bool) -> DspSettings:
        """Every ``None`` replaced by ``devices``."""
        return DspSettings(*(devices if v is None else v for v in (self.aec, self.ns, self.agc, self.hpf)))

    @property
    def any(self) -> bool:
        return bool(self.aec or self.ns or self.agc or self.hpf)


OFF = DspSettings(False, False, False, False)


def _apm_module() -> Any:
    try:
        from livekit import rtc
    except ImportError as exc:  # pragma: no cover - livekit is a dependency
        raise MediaError(f"audio processing unavailable (livekit not installed: {exc})") from None
    return rtc


class AudioProcessor:
    """One WebRTC APM instance for one call's microphone and loudspeaker (thread-safe: the far end may be
    fed from the audio device's thread while the media thread processes the near end)."""

    def __init__(self, settings: DspSettings, delay_ms: int = 0) -> None:
        rtc = _apm_module()
        self.settings = settings
        self._frame = rtc.AudioFrame
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=bool(settings.aec), noise_suppression=bool(settings.ns),
            high_pass_filter=bool(settings.hpf), auto_gain_control=bool(settings.agc))
        self._lock = threading.Lock()
        self.delay_ms = delay_ms
        self.far_frames = 0
        self.near_frames = 0

    def far_end(self, frame: np.ndarray) -> None:
        """Tell the echo canceller what the loudspeaker is playing now (20 ms, 48 kHz mono int16)."""
        if not self.settings.aec:
            return
        data = np.ascontiguousarray(frame, dtype=np.int16)
        with self._lock:
            for i in (0, HALF):
                self._apm.process_reverse_stream(self._frame(data[i:i + HALF].tobytes(), SAMPLE_RATE, 1, HALF))
            self.far_frames += 1

    def near_end(self, frame: np.ndarray) -> np.ndarray:
        """The microphone frame with echo removed, noise suppressed, gain controlled (a new array)."""
        data = np.ascontiguousarray(frame, dtype=np.int16)
        out = np.empty(FRAME_SAMPLES, dtype=np.int16)
        with self._lock:
            for i in (0, HALF):
                f = self._frame(data[i:i + HALF].tobytes(), SAMPLE_RATE, 1, HALF)
                if self.settings.aec:
                    self._apm.set_stream_delay_ms(max(0, int(self.delay_ms)))
                self._apm.process_stream(f)
                out[i:i + HALF] = np.frombuffer(f.data, dtype=np.int16)
            self.near_frames += 1
        return out
