"""A synthetic acoustic echo path (loudspeaker → room → microphone) and the echo-cancellation figures
measured through it: ERLE on the far end alone and the near talker's quality in double talk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from softphone.media.codecs import FRAME_SAMPLES
from softphone.media.dsp import AudioProcessor, DspSettings

RATE = 48000


def echo_path(delay_ms: float = 40, direct: float = 0.15, tail_ms: float = 250, decay_ms: float = 50,
              seed: int = 7) -> np.ndarray:
    """A room impulse response: one direct path after ``delay_ms`` and an exponentially decaying diffuse
    tail (seeded noise), about 16 dB below the loudspeaker signal in all."""
    rng = np.random.default_rng(seed)
    d, n = int(delay_ms * RATE / 1000), int(tail_ms * RATE / 1000)
    h = np.zeros(d + n)
    h[d] = direct
    h[d:] += direct * 0.02 * rng.standard_normal(n) * np.exp(-np.arange(n) / (decay_ms * RATE / 1000))
    return h


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-9))


def frame_attenuation_db(ref: np.ndarray, out: np.ndarray, floor_db: float = 30) -> np.ndarray:
    """Per 20 ms frame, how much quieter ``out`` is than ``ref`` (dB, > 0: attenuated), over the frames where
    ``ref`` is active (within ``floor_db`` of its loudest frame); ``ref`` and ``out`` time-aligned.

    Whatever ``out`` adds to a frame (residual echo) raises its level, so this under- rather than
    over-states attenuation."""
    n = min(len(ref), len(out)) // FRAME_SAMPLES
    r = ref[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    o = out[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    pr = 10 * np.log10(np.mean(r**2, axis=1) + 1e-9)
    po = 10 * np.log10(np.mean(o**2, axis=1) + 1e-9)
    active = pr > pr.max() - floor_db
    return np.asarray(pr[active] - po[active])


def clipping_only(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``ref`` with only the attenuation that ``out`` shows against it: in each STFT bin (20 ms Hann, half
    overlap) ``ref`` scaled by ``|out| / |ref|`` capped at 1. What ``out`` takes away (near speech suppressed
    in double talk) is kept; what it adds (residual echo, comfort noise) is left out. ``ref`` and ``out``
    time-aligned; interference of the two in a bin also reads as a little attenuation (on the raw
    microphone, no processing, this costs about 0.1 PESQ)."""
    from scipy.signal import istft, stft

    n = min(len(ref), len(out))
    _, _, r = stft(ref[:n].astype(np.float64), RATE, nperseg=FRAME_SAMPLES)
    _, _, o = stft(out[:n].astype(np.float64), RATE, nperseg=FRAME_SAMPLES)
    gain = np.minimum(1.0, np.abs(o) / np.maximum(np.abs(r), 1e-9))
    _, x = istft(r * gain, RATE, nperseg=FRAME_SAMPLES)
    return np.asarray(x[:n])


@dataclass
class EchoRun:
    far: np.ndarray  # what the loudspeaker played
    mic: np.ndarray  # echo + near talker
    near: np.ndarray  # the near talker alone (zeros before ``double_talk``)
    out: np.ndarray  # what the processor sent on
    double_talk: int  # sample where the near talker starts
    erle_db: float  # echo return loss enhancement on the far end alone, after 2 s to converge
    delay_ms: int  # the stream delay the processor was given


def run_echo(settings: DspSettings, far_speech: np.ndarray, near_speech: np.ndarray, *, seconds: float = 12,
             double_talk_s: float = 8, near_gain: float = 0.5, h: np.ndarray | None = None,
             delay_ms: int | None = None) -> EchoRun:
    """Far-end speech (repeated to ``seconds``) through the echo path into the microphone, the near talker
    joining at ``double_talk_s``; each 20 ms frame goes to the processor as it would in a call (far end as
    played, then the microphone frame that carries its echo).

    ``delay_ms`` is the stream delay given to the processor; ``None``: the echo path's bulk delay (its
    strongest tap), which is what the phone passes (render + capture latency of the devices, the part of
    the path between ``far_end`` and the microphone frame that the lab's path stands for)."""
    far = np.resize(far_speech, int(seconds * RATE))
    far = far[: len(far) - len(far) % FRAME_SAMPLES].astype(np.int16)
    h = echo_path() if h is None else h
    if delay_ms is None:
        delay_ms = int(np.argmax(np.abs(h)) * 1000 // RATE)
    echo = fftconvolve(far.astype(np.float64), h)[: len(far)]
    dt = int(double_talk_s * RATE)
    near = np.zeros(len(far))
    m = min(len(near_speech), len(far) - dt)
    near[dt:dt + m] = near_speech[:m] * near_gain
    mic = np.clip(echo + near, -32768, 32767).astype(np.int16)
    apm = AudioProcessor(settings, delay_ms)
    out = np.zeros(len(mic), np.int16)
    for i in range(0, len(mic), FRAME_SAMPLES):
        apm.far_end(far[i:i + FRAME_SAMPLES])
        out[i:i + FRAME_SAMPLES] = apm.near_end(mic[i:i + FRAME_SAMPLES])
    erle = power_db(mic[2 * RATE:dt]) - power_db(out[2 * RATE:dt])
    return EchoRun(far, mic, near.astype(np.int16), out, dt, erle, delay_ms)
