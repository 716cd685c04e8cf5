"""The WebRTC audio processing module (livekit's AEC3/NS/AGC) on a synthetic echo path: delay plus reverb."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from scipy.signal import fftconvolve

from lab.quality import align
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.media.codecs import FRAME_SAMPLES
from softphone.media.dsp import OFF, AudioProcessor, DspSettings
from softphone.media.session import MediaSession
from tests.conftest import require_tool
from tests.media.conftest import sim_call, sim_configs

RATE = 48000


@pytest.fixture(scope="module")
def near_talker(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A second, different voice (the local talker in double talk)."""
    path = tmp_path_factory.mktemp("near") / "near.wav"
    subprocess.run([require_tool("espeak-ng"), "-v", "en-gb+m3", "-s", "140", "-w", str(path),
                    "Rice is often served in round bowls. The juice of lemons makes fine punch."],
                   check=True, timeout=60, capture_output=True)
    return read_wav(path)


def echo_path(delay_ms: float = 40, direct: float = 0.15, tail_ms: float = 250, decay_ms: float = 50,
              seed: int = 7) -> np.ndarray:
    """A room: one direct path after ``delay_ms`` and an exponentially decaying diffuse tail (seeded)."""
    rng = np.random.default_rng(seed)
    d, n = int(delay_ms * RATE / 1000), int(tail_ms * RATE / 1000)
    h = np.zeros(d + n)
    h[d] = direct
    h[d:] += direct * 0.02 * rng.standard_normal(n) * np.exp(-np.arange(n) / (decay_ms * RATE / 1000))
    return h


def run_apm(settings: DspSettings, far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    apm = AudioProcessor(settings)
    out = np.zeros(len(mic), np.int16)
    for i in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        apm.far_end(far[i:i + FRAME_SAMPLES])  # played ...
        out[i:i + FRAME_SAMPLES] = apm.near_end(mic[i:i + FRAME_SAMPLES])  # ... and heard back
    return out


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-9))


def test_aec_removes_echo_and_keeps_near_talker_in_double_talk(speech: np.ndarray, near_talker: np.ndarray) -> None:
    far = np.concatenate([speech, speech])[: 12 * RATE]
    far = far[: len(far) - len(far) % FRAME_SAMPLES]
    echo = fftconvolve(far.astype(np.float64), echo_path())[: len(far)]
    dt = 8 * RATE  # 0-8 s the far end alone (echo only), then double talk
    near = np.zeros(len(far))
    m = min(len(near_talker), len(far) - dt)
    near[dt:dt + m] = near_talker[:m] * 0.5
    mic = np.clip(echo + near, -32768, 32767).astype(np.int16)
    out = run_apm(DspSettings(aec=True, ns=False, agc=False, hpf=False), far, mic)

    erle = power_db(mic[2 * RATE:dt]) - power_db(out[2 * RATE:dt])  # after 2 s to converge
    assert erle >= 20, erle  # the benchmark measures it (target 25 dB); this is a conservative bar

    talker = near[dt:dt + m].astype(np.int16)
    kept = out[dt:dt + m]
    corr, _ = align(talker, out[dt - RATE // 10:dt + m])
    assert power_db(kept) - power_db(talker) > -6  # the near talker is not suppressed in double talk
    assert corr > 0.5, corr
    again = run_apm(DspSettings(aec=True, ns=False, agc=False, hpf=False), far, mic)
    assert np.array_equal(out, again)  # deterministic


def test_settings_resolve_on_for_devices_off_for_files() -> None:
    auto = DspSettings()
    assert auto.resolve(devices=True) == DspSettings(True, True, True, True)
    assert auto.resolve(devices=False) == OFF and not OFF.any
    assert DspSettings(aec=False).resolve(True) == DspSettings(False, True, True, True)


async def test_array_io_is_untouched_by_default_and_processed_when_asked(speech: np.ndarray) -> None:
    a, b = sim_configs()
    plain = await sim_call(a, b, speech[:RATE], speech[:RATE], 1.5)
    assert plain.a.dsp is None and plain.b.dsp is None  # arrays/WAV: no processing unless asked
    a2, b2 = sim_configs(dsp=DspSettings(aec=True, ns=True, agc=False, hpf=True))
    s = MediaSession(a2, ArraySource(speech[:RATE]), ArraySink())
    s._start_dsp()
    assert s.dsp is not None and s.dsp.settings.aec and s._far_at_write
    processed = await sim_call(a2, b2, speech[:RATE], speech[:RATE], 1.5)
    assert processed.a.dsp is not None and processed.a.dsp.near_frames > 0 and processed.a.dsp.far_frames > 0
