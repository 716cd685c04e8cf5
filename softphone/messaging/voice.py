"""Voice messages: speech Opus-encoded into one protected payload (a secure message's BINARY item).

Layout of the item: ``b"SCVM"`` ‖ version 1 ‖ frame duration ms (1) ‖ frame count (2) ‖ per frame a
2-octet length and the Opus packet (RFC 6716, 48 kHz mono, 20 ms). The message also carries a TEXT
item naming it (``voice message, 9.8 s``).

Size: one secure message carries at most :data:`~softphone.messaging.secure.MAX_ATTACHMENT` (16 KiB)
because our SIP stack accepts at most 32 KiB per message and the base64 body costs a third more;
Kamailio's msilo keeps it as one row. At :data:`BITRATE` (10 kbit/s, wideband SILK, good for speech)
plus 2 octets per frame that is ~13 s; :data:`MAX_SECONDS` (12 s) keeps a margin for Opus's VBR.
Longer recordings are refused rather than sent as a separate file (no content server in this design).
"""

from __future__ import annotations

import struct

import numpy as np

from crypto import mcdata
from softphone.media.codecs import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, OpusCodec

MAGIC = b"SCVM"
BITRATE = 10_000
MAX_SECONDS = 12.0
LABEL_PREFIX = "voice message"
NO_ANSWER = (404, 408, 480, 486, 487, 603)   # offline (lookup failed), timeout, unavailable, busy, declined


def unanswered(status: int | None, text: str = "") -> bool:
    """An outgoing call that reached no one or was not picked up (``status`` of the final response, None
    when our own timer gave up: ``text`` then says "not answered"): a voice message may be left instead."""
    return status in NO_ANSWER or (status is None and "not answered" in text)


class VoiceError(ValueError):
    """Not a voice message item, or a recording too long for one message."""


def encode(pcm: np.ndarray) -> bytes:
    """48 kHz mono int16 → the voice item (trailing partial frame zero-padded)."""
    seconds = len(pcm) / SAMPLE_RATE
    if seconds > MAX_SECONDS:
        raise VoiceError(f"voice message is {seconds:.1f} s; one secure message holds at most {MAX_SECONDS:g} s")
    codec = OpusCodec(bitrate=BITRATE, expected_loss_percent=0)
    frames = []
    for start in range(0, len(pcm), FRAME_SAMPLES):
        chunk = pcm[start:start + FRAME_SAMPLES].astype(np.int16)
        if len(chunk) < FRAME_SAMPLES:
            chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        frames.append(codec.encode(chunk))
    body = b"".join(struct.pack(">H", len(f)) + f for f in frames)
    return MAGIC + bytes([1, FRAME_MS]) + struct.pack(">H", len(frames)) + body


def decode(item: bytes) -> np.ndarray:
    """The voice item → 48 kHz mono int16."""
    if len(item) < 8 or not item.startswith(MAGIC) or item[4] != 1 or item[5] != FRAME_MS:
        raise VoiceError("not a voice message (SCVM version 1, 20 ms frames)")
    (count,) = struct.unpack(">H", item[6:8])
    codec, pos, out = OpusCodec(), 8, []
    for _ in range(count):
        if pos + 2 > len(item):
            raise VoiceError("voice message is truncated")
        (n,) = struct.unpack(">H", item[pos:pos + 2])
        frame = item[pos + 2:pos + 2 + n]
        if len(frame) != n:
            raise VoiceError("voice message is truncated")
        out.append(codec.decode(frame))
        pos += 2 + n
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)


def items(pcm: np.ndarray) -> list[mcdata.DataItem]:
    """The data items of a voice message: its label and the Opus item."""
    data = encode(pcm)
    label = f"{LABEL_PREFIX}, {len(pcm) / SAMPLE_RATE:.1f} s"
    return [mcdata.DataItem(mcdata.ContentType.TEXT, label.encode()), mcdata.DataItem(mcdata.ContentType.BINARY, data)]


def voice_item(attachments: tuple[tuple[int, bytes], ...]) -> bytes | None:
    """The voice item among a stored message's attachments, if any."""
    return next((d for ct, d in attachments if ct == mcdata.ContentType.BINARY and d.startswith(MAGIC)), None)
