"""Decoding a stream's accepted payloads to 48 kHz mono 16-bit WAV (Opus, PCMU, PCMA).

Frames go in sequence order; a missing frame is recovered from the next packet's in-band FEC
(Opus) or concealed, as a receiver would play it. Payload types that are not the stream's audio
codec (telephone-event, comfort noise) are skipped.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from softphone.media.codecs import FRAME_SAMPLES, SAMPLE_RATE, CodecError, CodecSpec, make_codec

MAX_GAP_FRAMES = 50 * 60  # a longer hole (a minute) is cut short rather than filled


def decode_frames(spec: CodecSpec, frames: dict[int, tuple[int, bytes]]) -> np.ndarray:
    """The audio of ``frames`` (extended sequence → (payload type, payload)) as int16 at 48 kHz."""
    codec = make_codec(spec)
    audio = {ext: payload for ext, (pt, payload) in frames.items() if pt == spec.payload_type}
    if not audio:
        return np.zeros(0, dtype=np.int16)
    first, last = min(audio), max(audio)
    out: list[np.ndarray] = []
    gap = 0
    for ext in range(first, last + 1):
        payload = audio.get(ext)
        if payload is None:
            gap += 1
            if gap > MAX_GAP_FRAMES:
                continue
            nxt = audio.get(ext + 1)
            recovered = codec.recover(nxt) if nxt is not None else None
            out.append(recovered if recovered is not None else codec.conceal())
            continue
        gap = 0
        try:
            out.append(codec.decode(payload))
        except CodecError:
            out.append(codec.conceal())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> np.ndarray:
    """The samples of a WAV written by :func:`write_wav`."""
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


__all__ = ["FRAME_SAMPLES", "decode_frames", "read_wav", "write_wav"]
