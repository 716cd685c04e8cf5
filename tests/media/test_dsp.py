"""The WebRTC audio processing module (livekit's AEC3/NS/AGC) on a synthetic echo path: delay plus reverb."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from lab.echo import clipping_only, frame_attenuation_db, power_db, run_echo
from lab.quality import align, pesq_wb
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.media.dsp import OFF, DspSettings
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


def test_aec_removes_echo_and_keeps_near_talker_in_double_talk(speech: np.ndarray, near_talker: np.ndarray) -> None:
    aec_only = DspSettings(aec=True, ns=False, agc=False, hpf=False)
    run = run_echo(aec_only, speech, near_talker)  # 40 ms + reverb echo; far end alone 0-8 s, then double talk
    assert run.erle_db >= 20, run.erle_db  # the benchmark measures it (target 25 dB); a conservative bar

    dt, m = run.double_talk, min(len(near_talker), len(run.mic) - run.double_talk)
    talker = run.near[dt:dt + m]
    kept = run.out[dt:dt + m]
    corr, _ = align(talker, run.out[dt - RATE // 10:dt + m])
    assert power_db(kept) - power_db(talker) > -6  # the near talker is not suppressed in double talk
    assert corr > 0.5, corr
    again = run_echo(aec_only, speech, near_talker)
    assert np.array_equal(run.out, again.out)  # deterministic


def test_run_echo_gives_the_apm_the_echo_paths_delay(speech: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from livekit import rtc
    seen: list[int] = []
    real = rtc.AudioProcessingModule.set_stream_delay_ms

    def spy(self: rtc.AudioProcessingModule, delay_ms: int) -> None:
        seen.append(delay_ms)
        real(self, delay_ms)

    monkeypatch.setattr(rtc.AudioProcessingModule, "set_stream_delay_ms", spy)
    aec_only = DspSettings(aec=True, ns=False, agc=False, hpf=False)
    run = run_echo(aec_only, speech[:RATE], speech[:RATE], seconds=2.4, double_talk_s=2.2)
    assert run.delay_ms == 40 and set(seen) == {40} and len(seen) == 240  # the lab path's 40 ms, every 10 ms
    seen.clear()
    h = np.zeros(RATE // 10)
    h[int(0.025 * RATE)] = 0.2  # a path 25 ms long: the phone would pass its devices' 25 ms
    assert run_echo(aec_only, speech[:RATE], speech[:RATE], seconds=2.4, double_talk_s=2.2, h=h).delay_ms == 25
    assert set(seen) == {25}
    assert run_echo(aec_only, speech[:RATE], speech[:RATE], seconds=2.4, double_talk_s=2.2, delay_ms=0).delay_ms == 0


def test_apm_is_transparent_to_the_near_talker_when_the_far_end_is_silent(near_talker: np.ndarray) -> None:
    aec_only = DspSettings(aec=True, ns=False, agc=False, hpf=False)
    run = run_echo(aec_only, np.zeros(RATE, np.int16), near_talker, seconds=6, double_talk_s=2.5)
    talker = run.near[run.double_talk:]
    assert pesq_wb(talker, run.out[run.double_talk:]) > 4  # the APM's own baseline (bench: ~4.4)


def test_frame_attenuation_counts_the_quieter_frames_of_the_active_ones() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(960 * 40) * 1000
    ref[: 960 * 4] = 0  # silent frames: not counted
    out = ref.copy()
    out[960 * 10:960 * 20] *= 0.1  # 10 of the 36 active frames 20 dB down
    out[960 * 30:960 * 40] += rng.standard_normal(960 * 10) * 5000  # added energy: not attenuation
    att = frame_attenuation_db(ref, out)
    assert len(att) == 36 and np.sum(att > 6) == 10 and np.allclose(att[6:16], 20)
    assert np.all(att[26:] < 0)


def test_clipping_only_keeps_what_was_taken_away_and_leaves_out_what_was_added() -> None:
    rng = np.random.default_rng(0)
    spectrum, freq = np.fft.rfft(rng.standard_normal(RATE)), np.fft.rfftfreq(RATE, 1 / RATE)
    ref = np.fft.irfft(spectrum * (freq < 4000)) * 1000  # the talker below 4 kHz
    echo = np.fft.irfft(spectrum * (freq > 8000)) * 3000  # something added above 8 kHz
    assert np.sqrt(np.mean((clipping_only(ref, ref + echo) - ref) ** 2)) < 0.01 * np.std(ref)  # ignored
    assert np.allclose(clipping_only(ref, 0.25 * ref), 0.25 * ref)  # taken away: kept
    mixed = clipping_only(ref, np.concatenate([ref[: RATE // 2], 0 * ref[RATE // 2:]]))
    assert np.allclose(mixed[: RATE // 4], ref[: RATE // 4]) and not np.any(mixed[3 * RATE // 4:])


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
