"""Voice codecs on 20 ms frames of 48 kHz mono int16: Opus (RFC 6716/7587) and G.711 µ-law/A-law.

Every codec takes and returns ``numpy.int16`` arrays of :data:`FRAME_SAMPLES` samples; G.711 resamples to
and from 8 kHz internally. ``conceal()`` gives a packet-loss-concealment frame, and Opus ``recover()``
decodes the in-band FEC copy of a lost frame from the packet that follows it (RFC 6716 §2.1.7).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import opuslib
import opuslib.api
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder

from softphone.media.errors import MediaError

SAMPLE_RATE = 48000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
# Opus's send bitrate. Wideband SILK at 20 ms with in-band FEC for 10 % loss: in simulated calls (PESQ-WB,
# benchmarks/media.py pesq_sim_*) 40 kbit/s gave 4.22 clean / 3.90 at 5 % loss + 40 ms jitter (median of
# five network seeds), 56 kbit/s 4.44 / 4.16, 64 kbit/s 4.50 / 4.19; encoding cost is the same (≈ 175-180 µs
# per frame at complexity 5), only the packets grow (93 → 147 octets). Complexity 8-10 adds ≈ 0.05 PESQ
# for twice the encoding CPU, so it stays at 5.
OPUS_BITRATE = 64000
OPUS_MIN_BITRATE = 6000  # RFC 7587 §6.1's range for maxaveragebitrate: 6000-510000


class CodecError(MediaError, ValueError):
    """Unknown codec or an undecodable payload."""


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """An SDP rtpmap entry: ``a=rtpmap:<payload_type> <name>/<clock_rate>[/<channels>]``."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    max_bitrate: int | None = None  # the receiver's ``maxaveragebitrate`` (RFC 7587 §6.1), bit/s; None: none set


OPUS = CodecSpec(111, "opus", 48000, 2)
PCMU = CodecSpec(0, "PCMU", 8000)
PCMA = CodecSpec(8, "PCMA", 8000)


class Codec(Protocol):
    """Encoder+decoder pair for one direction of a call."""

    spec: CodecSpec
    samples_per_frame: int  # RTP timestamp units per 20 ms frame

    def encode(self, pcm: np.ndarray) -> bytes: ...

    def decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self) -> np.ndarray: ...

    def recover(self, next_payload: bytes) -> np.ndarray | None: ...

    def set_expected_loss(self, percent: int) -> None: ...


class OpusCodec:
    """Opus, 48 kHz, 20 ms, VoIP application, in-band FEC on (RFC 7587).

    The encoder is capped at wideband (8 kHz audio bandwidth, SILK mode): Opus's in-band FEC (LBRR) only
    covers the SILK layer, so at full band a recovered frame would lose everything above 8 kHz; capped,
    FEC recovers the whole signal (measured: PESQ-WB at 5 % loss 2.9 → 4.2, see benchmarks/media.py).

    Encode and decode call libopus (through opuslib's ctypes bindings, which release the GIL) on
    preallocated buffers: opuslib's own ``decode`` turns every frame into a list of 960 Python ints and
    back (measured: 81 → 38 µs per decoded frame).
    """

    MAX_PACKET = 1500

    def __init__(self, spec: CodecSpec = OPUS, bitrate: int = OPUS_BITRATE, expected_loss_percent: int = 10,
                 complexity: int = 5) -> None:
        self.spec = spec
        self.samples_per_frame = FRAME_SAMPLES
        self._enc = opuslib.Encoder(SAMPLE_RATE, 1, opuslib.APPLICATION_VOIP)
        self._enc.bitrate = bitrate
        # opuslib's ``inband_fec`` setter drops its argument; issue the CTL directly
        opuslib.api.encoder.encoder_ctl(self._enc.encoder_state, opuslib.api.ctl.set_inband_fec, 1)
        self._enc.packet_loss_perc = expected_loss_percent
        self._enc.complexity = complexity
        self._enc.max_bandwidth = opuslib.BANDWIDTH_WIDEBAND
        self._dec = opuslib.Decoder(SAMPLE_RATE, 1)
        self._packet = ctypes.create_string_buffer(self.MAX_PACKET)
        # ctypes arrays pass as the int16 pointers libopus takes without a cast; numpy views write/read them
        self._pcm_in = (ctypes.c_int16 * FRAME_SAMPLES)()
        self._pcm_in_view = np.frombuffer(memoryview(self._pcm_in), dtype=np.int16)
        self._pcm_out = (ctypes.c_int16 * FRAME_SAMPLES)()
        self._pcm_out_view = np.frombuffer(memoryview(self._pcm_out), dtype=np.int16)

    def encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) != FRAME_SAMPLES:
            raise CodecError(f"Opus encoder takes {FRAME_SAMPLES}-sample frames, got {len(pcm)}")
        self._pcm_in_view[:] = pcm
        n = opuslib.api.encoder.libopus_encode(self._enc.encoder_state, self._pcm_in, FRAME_SAMPLES,
                                               self._packet, self.MAX_PACKET)
        if n < 0:
            raise CodecError(f"Opus encoder failed ({n})")
        return ctypes.string_at(self._packet, n)

    def _decode(self, payload: bytes | None, fec: int) -> np.ndarray:
        """One 20 ms frame, a new array (``payload`` None: concealment)."""
        n = opuslib.api.decoder.libopus_decode(self._dec.decoder_state, payload, len(payload or b""),
                                               self._pcm_out, FRAME_SAMPLES, fec)
        if n < 0:
            raise CodecError(f"Opus payload rejected: {opuslib.OpusError(n)}")
        out = self._pcm_out_view.copy()
        if n < FRAME_SAMPLES:  # a shorter frame leaves silence at the end, as before
            out[n:] = 0
        return out

    def decode(self, payload: bytes) -> np.ndarray:
        return self._decode(payload, 0)

    def conceal(self) -> np.ndarray:
        return self._decode(None, 0)

    def set_expected_loss(self, percent: int) -> None:
        """Tune how much in-band FEC the encoder spends (OPUS_SET_PACKET_LOSS_PERC), e.g. from RTCP."""
        self._enc.packet_loss_perc = max(0, min(100, percent))

    def recover(self, next_payload: bytes) -> np.ndarray | None:
        try:
            return self._decode(next_payload, 1)
        except CodecError:
            return None


def _frame(x: np.ndarray) -> np.ndarray:
    if len(x) == FRAME_SAMPLES:
        return x
    out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    out[: min(len(x), FRAME_SAMPLES)] = x[:FRAME_SAMPLES]
    return out


# --- G.711 (ITU-T G.711), vectorised ---------------------------------------------------------------

def _ulaw_encode(x: np.ndarray) -> np.ndarray:
    s = x.astype(np.int32)
    sign = np.where(s < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exp = np.floor(np.log2(mag)).astype(np.int32) - 7
    mant = (mag >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exp = (u >> 4) & 0x07
    mant = u & 0x0F
    mag = (((mant << 3) + 0x84) << exp) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def _alaw_encode(x: np.ndarray) -> np.ndarray:
    s = x.astype(np.int32) >> 3  # 13-bit
    sign = np.where(s >= 0, 0x80, 0x00)
    mag = np.minimum(np.where(s >= 0, s, -s - 1), 0x0FFF)
    exp = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    mant = np.where(exp == 0, mag >> 1, mag >> np.maximum(exp, 1)) & 0x0F
    return ((sign | (exp << 4) | mant) ^ 0x55).astype(np.uint8)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exp = (a >> 4) & 0x07
    mant = a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


_ULAW_DEC = _ulaw_decode_table()
_ALAW_DEC = _alaw_decode_table()


def _lowpass(cutoff: float, taps: int = 63) -> np.ndarray:
    """Windowed-sinc low-pass FIR; ``cutoff`` as a fraction of the sample rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    return h / h.sum()


_RATIO = SAMPLE_RATE // 8000
_FIR = _lowpass(3600 / SAMPLE_RATE)


class G711Codec:
    """G.711 µ-law (PCMU) or A-law (PCMA) at 8 kHz; 48 kHz↔8 kHz with a 63-tap FIR, stateful across frames."""

    def __init__(self, spec: CodecSpec = PCMU) -> None:
        if spec.name.upper() not in ("PCMU", "PCMA"):
            raise CodecError(f"not a G.711 codec: {spec.name}")
        self.spec = spec
        self.samples_per_frame = 160
        self._mu = spec.name.upper() == "PCMU"
        self._down_hist = np.zeros(len(_FIR) - 1)
        self._up_hist = np.zeros(len(_FIR) - 1)
        self._last = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._plc_gain = 1.0

    def encode(self, pcm: np.ndarray) -> bytes:
        x = np.concatenate([self._down_hist, pcm.astype(np.float64)])
        self._down_hist = x[-(len(_FIR) - 1):]
        y = np.convolve(x, _FIR, mode="valid")[::_RATIO]
        y16 = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
        return (_ulaw_encode(y16) if self._mu else _alaw_encode(y16)).tobytes()

    def _upsample(self, narrow: np.ndarray) -> np.ndarray:
        stuffed = np.zeros(len(narrow) * _RATIO)
        stuffed[::_RATIO] = narrow * _RATIO
        x = np.concatenate([self._up_hist, stuffed])
        self._up_hist = x[-(len(_FIR) - 1):]
        return np.clip(np.rint(np.convolve(x, _FIR, mode="valid")), -32768, 32767).astype(np.int16)

    def decode(self, payload: bytes) -> np.ndarray:
        codes = np.frombuffer(payload, dtype=np.uint8)
        narrow = (_ULAW_DEC if self._mu else _ALAW_DEC)[codes].astype(np.float64)
        out = _frame(self._upsample(narrow))
        self._last, self._plc_gain = out, 1.0
        return out

    def conceal(self) -> np.ndarray:
        """Repeat the last frame, fading by half each time (simple G.711 Appendix I-style PLC)."""
        self._plc_gain *= 0.5
        return (self._last * self._plc_gain).astype(np.int16)

    def recover(self, next_payload: bytes) -> np.ndarray | None:
        return None

    def set_expected_loss(self, percent: int) -> None:
        """G.711 has no FEC; nothing to tune."""


def make_codec(spec: CodecSpec) -> Codec:
    """A fresh encoder/decoder for ``spec`` (opus, PCMU or PCMA)."""
    name = spec.name.lower()
    if name == "opus":  # never above what the receiver asked for (maxaveragebitrate)
        return OpusCodec(spec, bitrate=max(OPUS_MIN_BITRATE, min(OPUS_BITRATE, spec.max_bitrate or OPUS_BITRATE)))
    if name in ("pcmu", "pcma"):
        return G711Codec(spec)
    raise CodecError(f"unsupported codec {spec.name!r}")
