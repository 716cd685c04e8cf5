"""Codecs (Opus RFC 6716 with FEC/PLC, G.711) and the adaptive jitter buffer."""

from __future__ import annotations

import numpy as np
import pytest

from softphone.media.codecs import (
    _ALAW_DEC,
    _ULAW_DEC,
    FRAME_SAMPLES,
    OPUS,
    PCMA,
    PCMU,
    CodecError,
    CodecSpec,
    G711Codec,
    OpusCodec,
    _alaw_encode,
    _ulaw_encode,
    make_codec,
)
from softphone.media.jitter import JitterBuffer


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_g711_reference_points() -> None:
    # ITU-T G.711: zero encodes to 0xFF (µ-law) and 0xD5 (A-law); full scale to 0x80 / 0xAA
    x = np.array([0, 32767, -32768], dtype=np.int16)
    assert list(_ulaw_encode(x)) == [0xFF, 0x80, 0x00]
    assert list(_alaw_encode(x)) == [0xD5, 0xAA, 0x2A]
    assert _ULAW_DEC[0x80] == 32124 and _ALAW_DEC[0xAA] == 32256
    codes = np.arange(256)
    assert (_alaw_encode(_ALAW_DEC) == codes).all()
    assert (_ulaw_encode(_ULAW_DEC)[codes != 0x7F] == codes[codes != 0x7F]).all()  # 0x7F is µ-law's -0


@pytest.mark.parametrize("spec", [PCMU, PCMA, OPUS])
def test_codec_round_trip_preserves_a_tone(spec: CodecSpec) -> None:
    codec = make_codec(spec)
    tone = _tone(1.0)
    out = np.concatenate([codec.decode(codec.encode(tone[i:i + FRAME_SAMPLES]))
                          for i in range(0, len(tone), FRAME_SAMPLES)])
    lag = int(np.argmax(np.correlate(out[4800:9600].astype(float), tone[4800:6000].astype(float))))
    assert np.corrcoef(out[4800 + lag:40000 + lag], tone[4800:40000])[0, 1] > 0.99
    if spec is not OPUS:
        assert len(codec.encode(tone[:FRAME_SAMPLES])) == 160


def test_opus_fec_and_plc() -> None:
    codec = OpusCodec(expected_loss_percent=20)
    tone = _tone(0.2)
    payloads = [codec.encode(tone[i:i + FRAME_SAMPLES]) for i in range(0, len(tone), FRAME_SAMPLES)]
    for p in payloads[:5]:
        codec.decode(p)
    recovered = codec.recover(payloads[6])
    assert recovered is not None and np.abs(recovered.astype(int)).max() > 1000  # FEC carries the tone
    assert len(codec.conceal()) == FRAME_SAMPLES
    with pytest.raises(CodecError):
        make_codec(CodecSpec(9, "G722", 8000))
    with pytest.raises(CodecError):
        G711Codec(OPUS)


class _Tagged:
    """A codec whose payload is the frame number, to watch the buffer's choices."""

    samples_per_frame = FRAME_SAMPLES

    def __init__(self) -> None:
        self.log: list[str] = []

    def decode(self, payload: bytes) -> np.ndarray:
        self.log.append(payload.decode())
        return np.full(FRAME_SAMPLES, int(payload), dtype=np.int16)

    def conceal(self) -> np.ndarray:
        self.log.append("plc")
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def recover(self, next_payload: bytes) -> np.ndarray | None:
        self.log.append(f"fec<{next_payload.decode()}")
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def set_expected_loss(self, percent: int) -> None:
        pass


def test_jitter_buffer_reorders_recovers_and_drops_late() -> None:
    codec = _Tagged()
    jb = JitterBuffer(codec, min_ms=40)  # type: ignore[arg-type]
    for seq in (0, 2, 1, 4, 5):  # 1 reordered, 3 lost
        jb.put(seq, seq * 960, str(seq).encode(), 0.0, 48000)
    for tick in range(6):
        jb.pull(tick * 0.02)
    jb.put(3, 3 * 960, b"3", 0.2, 48000)  # arrives after its slot: late
    assert codec.log == ["0", "1", "2", "fec<4", "4", "5"]
    assert (jb.stats.late, jb.stats.fec_recovered, jb.stats.played) == (1, 1, 5)


def test_jitter_buffer_grows_under_jitter_and_shrinks_back() -> None:
    codec = _Tagged()
    jb = JitterBuffer(codec)  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    seq = 0
    t = 0.0
    pending: list[tuple[float, int]] = []
    for _ in range(150):  # 3 s with up to 100 ms of jitter, played out every 20 ms
        pending.append((t + rng.uniform(0, 0.1), seq))
        for arrival, s in sorted(p for p in pending if p[0] <= t):
            jb.put(s, s * 960, str(s).encode(), arrival, 48000)
        pending = [p for p in pending if p[0] > t]
        jb.pull(t)
        seq += 1
        t += 0.02
    grown = jb.target_ms
    assert grown >= 80 and jb.stats.resets == 0
    for _ in range(400):  # 8 s of a steady network, played out in step
        jb.put(seq, seq * 960, str(seq).encode(), t, 48000)
        jb.pull(t)
        seq += 1
        t += 0.02
    assert jb.target_ms <= 40 < grown
    assert jb.depth <= jb.target + 1 and jb.stats.shrinks > 0 and jb.stats.resets == 0


class _Levels(_Tagged):
    """Payload ``"seq:level"``: decodes to a constant ``level`` (loud speech or quiet silence)."""

    def decode(self, payload: bytes) -> np.ndarray:
        seq, level = payload.decode().split(":")
        self.log.append(seq)
        return np.full(FRAME_SAMPLES, int(level), dtype=np.int16)


def test_jitter_buffer_grows_on_jitter_and_shrinks_only_in_silence() -> None:
    codec = _Levels()
    jb = JitterBuffer(codec)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)

    def level(seq: int) -> int:  # 1.2 s talkspurts, 0.4 s pauses
        return 8000 if seq % 80 < 60 else 10

    pending: list[tuple[float, int]] = []
    targets: list[int] = []
    dropped: list[int] = []  # decoded but skipped (a pull that decoded two frames played only the second)
    for tick in range(600):  # 4 s with up to 80 ms of jitter, then 8 s of a steady network
        t = tick * 0.02
        pending.append((t + (rng.uniform(0, 0.08) if tick < 200 else 0.0), tick))
        for arrival, s in sorted(p for p in pending if p[0] <= t):
            jb.put(s, s * 960, f"{s}:{level(s)}".encode(), arrival, 48000)
        pending = [p for p in pending if p[0] > t]
        before = len(codec.log)
        jb.pull(t)
        decoded = [int(x) for x in codec.log[before:] if x.isdigit()]
        dropped += decoded[:-1]
        targets.append(jb.target_ms)
    assert max(targets[:200]) >= 80  # grew on the measured jitter
    assert targets[-1] == 20 and jb.depth <= jb.target + 1  # back to the minimum on a clean path
    assert dropped and all(level(s) == 10 for s in dropped), dropped  # shrunk in pauses only
    assert jb.stats.shrinks == len(dropped) and jb.stats.shrinks_in_speech == 0
    assert (jb.stats.shrinks, jb.stats.underruns, jb.stats.resets, max(targets)) == (3, 3, 0, 100)  # exact: seeded


def _sent_bitrate(spec: CodecSpec) -> float:
    rng = np.random.default_rng(3)
    codec = make_codec(spec)
    noise = (rng.standard_normal(FRAME_SAMPLES * 100) * 4000).astype(np.int16)
    octets = sum(len(codec.encode(noise[i:i + FRAME_SAMPLES])) for i in range(0, len(noise), FRAME_SAMPLES))
    return octets * 8 / 2.0  # 100 frames = 2 s


def test_opus_sends_64_kbit_s_unless_the_receiver_asked_for_less() -> None:
    assert 58000 < _sent_bitrate(OPUS) < 70000
    assert _sent_bitrate(CodecSpec(111, "opus", 48000, 2, max_bitrate=16000)) < 18000
    assert 58000 < _sent_bitrate(CodecSpec(111, "opus", 48000, 2, max_bitrate=510000)) < 70000  # never above ours
