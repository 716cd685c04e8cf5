"""Group-call media: one m-line to the focus, our own per-sender key out, every other member's stream in.

In a group call (TS 33.180 §7.4.2, GROUP-MESSAGING.md §1.4–1.6) each member sends with its own SRTP key
derived from the group's GMK and its GUK-ID, and the focus forwards every member's packets unchanged to
all others. So a member receives several SSRCs and MKIs on one m-line:

* send: AEAD_AES_128_GCM with our key, a random SSRC per call, and ``MKI(8) ‖ ROC(4)`` appended after the
  tag (RCCm3: the ROC travels in every packet, so a late joiner opens the first packet it gets);
* receive: read MKI and ROC without a key (:func:`crypto.srtp_aead.split`), ask ``resolve(mki)`` for that
  sender's key (the call layer looks it up with :func:`softphone.keys.groups.key_for_mki`: media never
  sees a GMK), open with the carried ROC, then a jitter buffer and decoder per sender; the senders'
  frames are summed (clipped) into the one sink.

Counters per sender (packets, auth failures, replays) and for the call (unknown MKI, malformed) are in
:meth:`GroupMediaSession.group_stats`. The lifecycle (start/stop, media thread, hold, mute) is
:class:`~softphone.media.session.MediaSession`'s. RTCP is not sent in group calls (SRTCP under a GMK is
not specified by TS 33.180 for the media plane; the focus would only forward it); received RTCP is counted
and dropped.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crypto.srtp_aead import Aead, SrtpAeadError, split
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.clock import Clock
from softphone.media.codecs import FRAME_SAMPLES, CodecSpec, make_codec
from softphone.media.errors import MediaError
from softphone.media.jitter import JitterBuffer
from softphone.media.rtp import RtpError, RtpPacket, SequenceTracker, is_rtcp
from softphone.media.session import MediaConfig, MediaSession, MediaStats, SrtpKeys
from softphone.media.srtp import SrtpSuite
from softphone.media.transport import Address, DatagramTap, Network

MKI_LEN = 8
REPLAY_WINDOW = 128
MAX_SENDERS = 64  # streams tracked per call; more are counted as ``too_many`` and dropped


@dataclass(frozen=True)
class SenderKey:
    """A sender's SRTP master key/salt and MKI; ``member`` is who the keys say it is (URI or None)."""

    master_key: bytes = field(repr=False)
    master_salt: bytes = field(repr=False)
    mki: bytes
    member: str | None = None


#: ``resolve(mki)`` → the sender's key, or None when no usable GMK has that GMK-ID.
Resolver = Callable[[bytes], SenderKey | None]


@dataclass(frozen=True)
class GroupMediaConfig:
    """What the call layer set up for a group call: our address, the focus leg, codec and keys."""

    local_addr: Address
    remote_addr: Address
    codec: CodecSpec
    own: SenderKey
    resolve: Resolver
    jitter_min_ms: int = 20
    jitter_max_ms: int = 400


@dataclass
class SenderStats:
    """One sender as this member saw it (by MKI): who it is, what came, what failed."""

    mki: str
    member: str | None
    ssrcs: list[int] = field(default_factory=list)
    packets: int = 0
    auth_failures: int = 0
    replays: int = 0
    frames_played: int = 0


@dataclass(frozen=True)
class GroupStats:
    """Counters of a group call's receive side."""

    senders: dict[str, SenderStats]   # by MKI (hex)
    unknown_mki: int
    malformed: int
    rtcp_dropped: int
    too_many: int
    packets_sent: int

    @property
    def auth_failures(self) -> int:
        return sum(s.auth_failures for s in self.senders.values())

    def heard(self) -> dict[str, int]:
        """Member URI (or ``?mki``) → packets that authenticated."""
        return {(s.member or f"?{s.mki}"): s.packets for s in self.senders.values() if s.packets}


class _ReplayWindow:
    """RFC 3711 §3.3.2 sliding window over the 48-bit index ROC‖SEQ."""

    def __init__(self) -> None:
        self.highest = -1
        self.mask = 0

    def check_and_set(self, index: int) -> bool:
        if index > self.highest:
            shift = index - self.highest
            self.mask = ((self.mask << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if self.highest >= 0 else 1
            self.highest = index
            return True
        back = self.highest - index
        if back >= REPLAY_WINDOW or self.mask >> back & 1:
            return False
        self.mask |= 1 << back
        return True


class _Stream:
    """One (MKI, SSRC): replay window, sequence tracker, jitter buffer and decoder of its own."""

    def __init__(self, config: GroupMediaConfig) -> None:
        self.codec = make_codec(config.codec)
        self.replay = _ReplayWindow()
        self.tracker = SequenceTracker(config.codec.clock_rate)
        self.jb = JitterBuffer(self.codec, config.jitter_min_ms, config.jitter_max_ms)


class _Sender:
    def __init__(self, key: SenderKey | None, mki: bytes) -> None:
        self.aead = Aead(key.master_key, key.master_salt) if key is not None else None
        self.stats = SenderStats(mki.hex(), key.member if key is not None else None)
        self.streams: dict[int, _Stream] = {}


class GroupMediaSession(MediaSession):
    """A group call's media; same lifecycle as :class:`MediaSession` (``await start()``/``stop()``).

    ``on_sender_frame(member_or_mki, frame)`` (optional) gets every sender's decoded frame before mixing
    (tests check each member hears each other; the GUI could show who is talking)."""

    def __init__(self, config: GroupMediaConfig, source: AudioSource, sink: AudioSink, *,
                 on_sender_frame: Callable[[str, np.ndarray], None] | None = None,
                 clock: Clock | None = None, network: Network | None = None,
                 tap: DatagramTap | None = None, rng: random.Random | None = None) -> None:
        own = config.own
        if len(own.mki) != MKI_LEN:
            raise MediaError(f"group MKI must be {MKI_LEN} octets")
        # the base class's libsrtp contexts are never used for RTP here; it needs keys of the right shape
        keys = SrtpKeys(SrtpSuite.AEAD_AES_128_GCM, own.master_key, own.master_salt, own.master_key,
                        own.master_salt)
        super().__init__(MediaConfig(config.local_addr, config.remote_addr, config.codec, keys,
                                     dtmf_payload_type=None, jitter_min_ms=config.jitter_min_ms,
                                     jitter_max_ms=config.jitter_max_ms),
                         source, sink, clock=clock, network=network, tap=tap, rng=rng)
        self.group = config
        self.on_sender_frame = on_sender_frame
        self._aead = Aead(own.master_key, own.master_salt)
        self.roc = 0  # rollover counter of our stream (RFC 3711 §3.3.1), sent in every packet
        self._senders: dict[bytes, _Sender] = {}
        self._unknown_mki = self._group_malformed = self._rtcp_dropped = self._too_many = 0

    def __repr__(self) -> str:
        return (f"GroupMediaSession(local={self.config.local_addr}, focus={self._remote}, "
                f"mki={self.group.own.mki.hex()}, ssrc={self.ssrc:#010x})")

    # --- send ---------------------------------------------------------------------------------------
    def _send_tick(self, now: float) -> None:
        frame = self.source.read()
        if self._hold or self._transport is None:
            self._ts += self._codec.samples_per_frame
            return
        if frame is None or self.muted:
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        payload = self._codec.encode(frame)
        packet = RtpPacket(self.config.codec.payload_type, self._seq, self._ts, self.ssrc, payload,
                           self._marker).serialize()
        self._marker = False
        self._transport.sendto(self._aead.protect(packet, self.roc, self.group.own.mki), self._remote)
        self._seq = (self._seq + 1) & 0xFFFF
        if self._seq == 0:
            self.roc = (self.roc + 1) & 0xFFFFFFFF
        self._ts = (self._ts + self._codec.samples_per_frame) & 0xFFFFFFFF
        self._sent += 1
        self._sent_octets += len(payload)

    def _send_rtcp(self, bye: bool = False) -> None:
        return  # see the module docstring

    # --- receive ------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: Address) -> None:
        if is_rtcp(data):
            self._rtcp_dropped += 1
            return
        try:
            header, _, mki, roc = split(data, MKI_LEN)
        except SrtpAeadError:
            self._group_malformed += 1
            return
        if mki == self.group.own.mki:
            return  # our own stream reflected back: not ours to play
        sender = self._sender(mki)
        if sender is None:
            return
        if sender.aead is None:
            self._unknown_mki += 1
            return
        ssrc = int.from_bytes(header[8:12], "big")
        stream = sender.streams.get(ssrc)
        if stream is None and len(sender.streams) >= 4:  # an SSRC change per call, not a flood of them
            self._too_many += 1
            return
        try:
            plain, roc = sender.aead.unprotect(data, MKI_LEN)
        except SrtpAeadError:
            sender.stats.auth_failures += 1
            return
        if stream is None:
            stream = sender.streams[ssrc] = _Stream(self.group)
            sender.stats.ssrcs.append(ssrc)
        try:
            pkt = RtpPacket.parse(plain)
        except RtpError:
            self._group_malformed += 1
            return
        if not stream.replay.check_and_set(roc << 16 | pkt.sequence):
            sender.stats.replays += 1
            return
        now = self._now_clock().time()
        sender.stats.packets += 1
        self._recv += 1
        self._recv_octets += len(pkt.payload)
        ext = stream.tracker.update(pkt.sequence, pkt.timestamp, now)
        if pkt.payload_type == self.config.codec.payload_type:
            stream.jb.put(ext, pkt.timestamp, pkt.payload, now, self._rate)
        else:
            self._group_malformed += 1

    def _sender(self, mki: bytes) -> _Sender | None:
        sender = self._senders.get(mki)
        if sender is None:
            if len(self._senders) >= MAX_SENDERS:
                self._too_many += 1
                return None
            sender = self._senders[mki] = _Sender(self.group.resolve(mki), mki)
        return sender

    # --- play: every sender's next frame, summed ----------------------------------------------------
    def _play_tick(self, now: float) -> None:
        mix: np.ndarray | None = None
        for sender in self._senders.values():
            for stream in sender.streams.values():
                frame = stream.jb.pull(now)
                sender.stats.frames_played += 1
                if self.on_sender_frame is not None:
                    self.on_sender_frame(sender.stats.member or f"?{sender.stats.mki}", frame)
                mix = frame.astype(np.int32) if mix is None else mix + frame
        if mix is None:
            out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        else:
            out = np.clip(mix, -32768, 32767).astype(np.int16)
        self.sink.write(out)

    # --- stats --------------------------------------------------------------------------------------
    def group_stats(self) -> GroupStats:
        with self._lock:
            return GroupStats(
                senders={mki.hex(): SenderStats(**{**vars(s.stats), "ssrcs": list(s.stats.ssrcs)})
                         for mki, s in self._senders.items() if s.aead is not None},
                unknown_mki=self._unknown_mki, malformed=self._group_malformed,
                rtcp_dropped=self._rtcp_dropped, too_many=self._too_many, packets_sent=self._sent)

    def _stats(self) -> MediaStats:
        base = super()._stats()
        auth = sum(s.stats.auth_failures for s in self._senders.values())
        failures = {k: v for k, v in (("auth_failed", auth), ("mki_mismatch", self._unknown_mki)) if v}
        jb = [st.jb.stats for s in self._senders.values() for st in s.streams.values()]
        return MediaStats(**{**vars(base), "srtp_failures": failures, "malformed": self._group_malformed,
                             "concealed_frames": sum(j.concealed for j in jb),
                             "late_packets": sum(j.late for j in jb),
                             "duplicates": sum(j.duplicates for j in jb)})
