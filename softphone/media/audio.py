"""Audio sources and sinks: 20 ms frames of 48 kHz mono int16 (``numpy.ndarray``).

WAV files (stdlib ``wave``, 16-bit PCM) for headless use and tests; sounddevice (PortAudio) streams for
real devices. PortAudio runs its callback on its own thread: frames cross between that thread and asyncio
through bounded ``collections.deque`` objects, whose append/popleft are atomic, so neither side ever
blocks or waits for the other; an empty queue yields silence, a full one drops the oldest frame.
"""

from __future__ import annotations

import wave
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from softphone.media.codecs import FRAME_SAMPLES, SAMPLE_RATE


class AudioError(ValueError):
    """Unreadable/unsupported audio file or an unavailable audio device."""


class AudioSource(Protocol):
    """Produces one frame per call, ``None`` when exhausted (the session then sends silence)."""

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class AudioSink(Protocol):
    """Consumes one frame per 20 ms tick."""

    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited-enough linear-interpolation resampling (for loading WAV files of other rates)."""
    if src_rate == dst_rate or len(x) == 0:
        return x.astype(np.int16, copy=False)
    n = int(round(len(x) * dst_rate / src_rate))
    t = np.arange(n) * (src_rate / dst_rate)
    return np.clip(np.rint(np.interp(t, np.arange(len(x)), x.astype(np.float64))), -32768, 32767).astype(np.int16)


def read_wav(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 16-bit PCM WAV file as mono int16 at ``rate``; raises :class:`AudioError`."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise AudioError(f"{path}: only 16-bit PCM WAV is supported")
            channels, src_rate = w.getnchannels(), w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"{path}: not a readable WAV file ({exc})") from None
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return resample(data, src_rate, rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono int16 ``samples`` as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


class ArraySource:
    """Frames from an in-memory int16 array (last frame zero-padded)."""

    def __init__(self, samples: np.ndarray) -> None:
        self._samples = samples.astype(np.int16, copy=False)
        self._pos = 0

    def read(self) -> np.ndarray | None:
        if self._pos >= len(self._samples):
            return None
        chunk = self._samples[self._pos:self._pos + FRAME_SAMPLES]
        self._pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        return chunk

    def close(self) -> None:
        self._pos = len(self._samples)


class WavSource(ArraySource):
    """Frames from a WAV file (any rate/channel count, 16-bit PCM)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(read_wav(path))


class ArraySink:
    """Collects played frames in memory; :meth:`samples` returns them concatenated."""

    def __init__(self) -> None:
        self._frames: list[np.ndarray] = []

    def write(self, frame: np.ndarray) -> None:
        self._frames.append(frame)

    def samples(self) -> np.ndarray:
        return np.concatenate(self._frames) if self._frames else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        pass


class WavSink(ArraySink):
    """Collects played frames and writes them to a WAV file on :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    def close(self) -> None:
        write_wav(self.path, self.samples())


# --- sounddevice (PortAudio) ------------------------------------------------------------------------

def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # PortAudio library missing
        raise AudioError(f"audio devices unavailable: {exc}") from None
    return sounddevice


def list_devices() -> list[dict[str, Any]]:
    """PortAudio devices: index, name, host API, input/output channel counts, default sample rate."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise AudioError(f"cannot list audio devices: {exc}") from None
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "hostapi": apis[d["hostapi"]]["name"],
            "max_input_channels": d["max_input_channels"],
            "max_output_channels": d["max_output_channels"],
            "default_samplerate": d["default_samplerate"],
        }
        for d in devices
    ]


class SoundDeviceSource:
    """Microphone capture through a PortAudio input stream (``device``: index or name, ``None`` = default)."""

    def __init__(self, device: int | str | None = None, queue_frames: int = 10) -> None:
        sd = _sounddevice()
        self._queue: deque[np.ndarray] = deque(maxlen=queue_frames)
        self.overflows = 0
        try:
            self._stream = sd.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                                          blocksize=FRAME_SAMPLES, device=device, callback=self._callback,
                                          latency="low")
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open input device {device!r}: {exc}") from None

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        self._queue.append(indata[:, 0].copy())

    def read(self) -> np.ndarray | None:
        try:
            return self._queue.popleft()
        except IndexError:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class SoundDeviceSink:
    """Playback through a PortAudio output stream; an empty queue plays silence (counted in ``underflows``)."""

    def __init__(self, device: int | str | None = None, queue_frames: int = 10) -> None:
        sd = _sounddevice()
        self._queue: deque[np.ndarray] = deque(maxlen=queue_frames)
        self.underflows = 0
        self.played = 0
        try:
            self._stream = sd.OutputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                                           blocksize=FRAME_SAMPLES, device=device, callback=self._callback,
                                          latency="low")
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open output device {device!r}: {exc}") from None

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            frame = self._queue.popleft()
        except IndexError:
            self.underflows += 1
            outdata.fill(0)
            return
        self.played += 1
        n = min(frames, len(frame))
        outdata[:n, 0] = frame[:n]
        outdata[n:, 0] = 0

    def write(self, frame: np.ndarray) -> None:
        self._queue.append(frame)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
