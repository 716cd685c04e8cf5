"""Adaptive jitter buffer: reorders, drops late packets, grows under jitter and shrinks back.

The target depth follows the 95th percentile of recent arrival delays (arrival time minus RTP timestamp,
relative to the fastest packet seen in the window, cf. RFC 3550 §6.4.1's transit). When the next frame is
missing but later ones have arrived, it is recovered from the following packet's Opus in-band FEC if
possible, else concealed (PLC). When nothing newer has arrived (underrun) playout stalls one frame with
PLC, which grows the delay. A depth above target for half a second shrinks it by one frame, dropped in
silence: the buffer waits for a quiet decoded frame and skips it (decoding it first, so the decoder's
state stays continuous); only after :attr:`JitterBuffer.FORCE_SHRINK_TICKS` without one does it drop
a frame of speech.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from softphone.media.codecs import FRAME_MS, FRAME_SAMPLES, Codec, CodecError

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


@dataclass(slots=True)
class JitterStats:
    """Counters since the buffer was created."""

    played: int = 0
    late: int = 0
    duplicates: int = 0
    concealed: int = 0
    fec_recovered: int = 0
    underruns: int = 0
    shrinks: int = 0
    shrinks_in_speech: int = 0  # of ``shrinks``: forced, no quiet frame came in time
    decode_errors: int = 0
    resets: int = 0


class JitterBuffer:
    """Per-source playout buffer; :meth:`put` on arrival, :meth:`pull` once per 20 ms tick."""

    SHRINK_AFTER_TICKS = 25  # 0.5 s above target before dropping a frame (in silence)
    FORCE_SHRINK_TICKS = 100  # 2 s above target: drop one even in speech
    QUIET_RMS = 300  # int16 RMS (about -40 dBFS) below which a decoded frame counts as silence
    RESET_AFTER_UNDERRUNS = 50  # 1 s without packets: start buffering afresh
    WINDOW = 150  # arrival delays kept (3 s at 50 packets/s)

    def __init__(self, codec: Codec, min_ms: int = 20, max_ms: int = 400) -> None:
        self.codec = codec
        self.min_frames = max(1, min_ms // FRAME_MS)
        self.max_frames = max(self.min_frames, max_ms // FRAME_MS)
        self.target = self.min_frames
        self.stats = JitterStats()
        self.last_timestamp: int | None = None  # RTP timestamp of the frame pull() just decoded
        self._buf: dict[int, tuple[int, bytes]] = {}
        self._next: int | None = None
        self._highest = -1
        self._started = False
        self._first_arrival = 0.0
        self._delays: deque[float] = deque(maxlen=self.WINDOW)
        self._excess_ticks = 0
        self._underrun_run = 0
        self._since_target = 0

    @property
    def target_ms(self) -> int:
        return self.target * FRAME_MS

    @property
    def depth(self) -> int:
        """Frames buffered ahead of the playout point (including gaps)."""
        if self._next is None:
            return len(self._buf)
        return max(0, self._highest - self._next + 1)

    def put(self, ext_seq: int, timestamp: int, payload: bytes, arrival: float, clock_rate: int) -> None:
        """Store one arrived packet (extended sequence number from :class:`SequenceTracker`)."""
        if self._next is not None and ext_seq < self._next:
            self.stats.late += 1
            self._delays.append(arrival - timestamp / clock_rate)  # its delay widens the window at once
            self._retarget()
            return
        if self._next is not None and ext_seq - self._next > 4 * self.max_frames:
            self._reset()  # sender jumped far ahead: resynchronise
        if ext_seq in self._buf:
            self.stats.duplicates += 1
            return
        if not self._buf and not self._started:
            self._first_arrival = arrival
        self._buf[ext_seq] = (timestamp, payload)
        self._highest = max(self._highest, ext_seq)
        self._delays.append(arrival - timestamp / clock_rate)
        self._since_target += 1
        if self._since_target >= 5:
            self._retarget()

    def _retarget(self) -> None:
        self._since_target = 0
        if len(self._delays) < 2:
            return
        ordered = sorted(self._delays)
        spread = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] - ordered[0]
        frames = math.ceil(spread * 1000 / FRAME_MS - 1e-6) + 1  # (float noise in a zero spread is no jitter)
        self.target = max(self.min_frames, min(self.max_frames, frames))

    def _reset(self) -> None:
        self._buf.clear()
        self._next = None
        self._highest = -1
        self._started = False
        self._underrun_run = 0
        self.stats.resets += 1

    def pull(self, now: float) -> np.ndarray:
        """The next 20 ms of audio (decoded, recovered, concealed or silence)."""
        self.last_timestamp = None
        if not self._started:
            if not self._buf:
                return _SILENCE
            lowest = min(self._buf)
            if self._highest - lowest + 1 < self.target and now - self._first_arrival < self.target_ms / 1000:
                return _SILENCE
            self._started = True
            self._next = lowest
        assert self._next is not None
        depth = self._highest - self._next + 1
        if depth > self.target + 1:
            self._excess_ticks += 1
        else:
            self._excess_ticks = 0
        frame, decoded = self._play_next()
        if (self._excess_ticks >= self.SHRINK_AFTER_TICKS and decoded and self._highest > self._next
                and (self._quiet(frame) or self._excess_ticks >= self.FORCE_SHRINK_TICKS)):
            if not self._quiet(frame):
                self.stats.shrinks_in_speech += 1
            self._excess_ticks = 0
            self.stats.shrinks += 1
            self.stats.played -= 1  # decoded (decoder state stays continuous) but not played
            frame, _ = self._play_next()
        return frame

    def _quiet(self, frame: np.ndarray) -> bool:
        return float(np.sqrt(np.mean(frame.astype(np.float32) ** 2))) < self.QUIET_RMS

    def _play_next(self) -> tuple[np.ndarray, bool]:
        """The frame at the playout point and whether it was decoded from its own packet."""
        assert self._next is not None
        entry = self._buf.pop(self._next, None)
        if entry is not None:
            self._underrun_run = 0
            self._next += 1
            self.stats.played += 1
            try:
                frame = self.codec.decode(entry[1])
            except CodecError:
                self.stats.decode_errors += 1
                return self._conceal(), False
            self.last_timestamp = entry[0]
            return frame, True
        if self._highest < self._next:  # underrun: nothing newer has arrived; stall (grows delay)
            self.stats.underruns += 1
            self._underrun_run += 1
            if self._underrun_run >= self.RESET_AFTER_UNDERRUNS:
                self._reset()
                return _SILENCE, False
            return self._conceal(), False
        self._underrun_run = 0
        following = self._buf.get(self._next + 1)
        self._next += 1
        if following is not None:
            recovered = self.codec.recover(following[1])
            if recovered is not None:
                self.stats.fec_recovered += 1
                return recovered, False
        return self._conceal(), False

    def _conceal(self) -> np.ndarray:
        self.stats.concealed += 1
        return self.codec.conceal()
