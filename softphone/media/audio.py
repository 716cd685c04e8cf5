"""Audio sources and sinks: 20 ms frames of 48 kHz mono int16 (``numpy.ndarray``).

WAV files (stdlib ``wave``, 16-bit PCM) for headless use and tests; sounddevice (PortAudio) streams for
real devices. PortAudio runs its callback on its own thread (or, in ``blocking`` mode, our pump thread
does blocking I/O): frames cross between that thread and asyncio through bounded ``collections.deque``
objects, whose append/popleft are atomic, so neither side ever blocks or waits for the other; an empty
queue yields silence, a full one drops the oldest frame.
"""

from __future__ import annotations

import abc
import threading
import wave
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from softphone.media.codecs import FRAME_SAMPLES, SAMPLE_RATE
from softphone.media.errors import MediaError


class AudioError(MediaError, ValueError):
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


class _DeviceStream(abc.ABC):
    """A PortAudio stream in ``callback`` mode (PortAudio's thread calls us) or ``blocking`` mode (our own
    daemon thread does blocking read/write; for backends such as ALSA's pulse plugin whose callbacks stall —
    there use ``latency="high"``). Either way frames cross threads only through a bounded deque.
    ``latency`` is PortAudio's suggested latency ("low", "high" or seconds)."""

    def __init__(self, kind: str, device: int | str | None, queue_frames: int, mode: str,
                 latency: str | float) -> None:
        if mode not in ("callback", "blocking"):
            raise AudioError(f"unknown audio stream mode {mode!r} (callback or blocking)")
        sd = _sounddevice()
        self._queue: deque[np.ndarray] = deque(maxlen=queue_frames)
        self._running = True
        self._thread: threading.Thread | None = None
        cls = sd.InputStream if kind == "input" else sd.OutputStream
        try:
            self._stream = cls(samplerate=SAMPLE_RATE, channels=1, dtype="int16", blocksize=FRAME_SAMPLES,
                               device=device, latency=latency,
                               callback=self._callback if mode == "callback" else None)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(f"cannot open {kind} device {device!r}: {exc}") from None
        if mode == "blocking":
            self._thread = threading.Thread(target=self._pump, name=f"audio-{kind}", daemon=True)
            self._thread.start()

    @abc.abstractmethod
    def _callback(self, data: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback (callback mode)."""

    @abc.abstractmethod
    def _pump(self) -> None:
        """Blocking I/O loop (blocking mode)."""

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._stream.stop()
        self._stream.close()


class SoundDeviceSource(_DeviceStream):
    """Microphone capture (``device``: index or name, ``None`` = default); ``read()`` never waits."""

    def __init__(self, device: int | str | None = None, queue_frames: int = 10, mode: str = "callback",
                 latency: str | float = "low") -> None:
        self.overflows = 0
        super().__init__("input", device, queue_frames, mode, latency)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        self._queue.append(indata[:, 0].copy())

    def _pump(self) -> None:
        while self._running:
            data, overflowed = self._stream.read(FRAME_SAMPLES)
            self.overflows += int(bool(overflowed))
            self._queue.append(data[:, 0].copy())

    def read(self) -> np.ndarray | None:
        try:
            return self._queue.popleft()
        except IndexError:
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)


class SoundDeviceSink(_DeviceStream):
    """Playback; an empty queue plays silence (counted in ``underflows``); ``write()`` never waits."""

    def __init__(self, device: int | str | None = None, queue_frames: int = 10, mode: str = "callback",
                 latency: str | float = "low") -> None:
        self.underflows = 0
        self.played = 0
        super().__init__("output", device, queue_frames, mode, latency)

    def _next(self) -> np.ndarray | None:
        try:
            frame = self._queue.popleft()
        except IndexError:
            self.underflows += 1
            return None
        self.played += 1
        return frame

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        frame = self._next()
        if frame is None:
            outdata.fill(0)
            return
        n = min(frames, len(frame))
        outdata[:n, 0] = frame[:n]
        outdata[n:, 0] = 0

    def _pump(self) -> None:
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        while self._running:
            frame = self._next()
            self._stream.write((silence if frame is None else frame).reshape(-1, 1))

    def write(self, frame: np.ndarray) -> None:
        self._queue.append(frame)
