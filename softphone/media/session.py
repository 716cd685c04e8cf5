"""One RTP/SRTP audio stream pair (RFC 3550, RFC 3711, RFC 7714) on an injectable clock and network.

A :class:`MediaSession` sends one encoded 20 ms frame from its :class:`AudioSource` and plays one frame
from its jitter buffer into its :class:`AudioSink` per tick, on an absolute 20 ms schedule; RTCP SR/RR go
out every ``rtcp_interval`` seconds and a BYE on :meth:`MediaSession.stop`. RTCP is multiplexed on the
RTP port (RFC 5761) unless separate RTCP addresses are given.

Time and datagrams come from a :class:`~softphone.media.clock.Clock` and a
:class:`~softphone.media.transport.Network`: by default the running asyncio loop and UDP sockets; a
:class:`~softphone.media.clock.VirtualClock` and :class:`~softphone.media.transport.SimNetwork` run the
same code in simulated time, deterministically. See docs/interfaces-media.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import secrets
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from softphone.media import rtcp
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.clock import Clock, Handle, LoopClock
from softphone.media.codecs import FRAME_MS, FRAME_SAMPLES, CodecSpec, make_codec
from softphone.media.dsp import AudioProcessor, DspSettings
from softphone.media.dtmf import DtmfError, DtmfReceiver, event_payloads
from softphone.media.engine import MediaEngine, on_loop
from softphone.media.errors import MediaError
from softphone.media.jitter import JitterBuffer
from softphone.media.rtp import RtpError, RtpPacket, SequenceTracker, is_rtcp
from softphone.media.srtp import SrtpReceiver, SrtpSender, SrtpSuite
from softphone.media.transport import Address, DatagramTap, Endpoint, Network, TappedNetwork

FRAME_S = FRAME_MS / 1000

__all__ = ["MediaConfig", "MediaError", "MediaSession", "MediaStats", "SrtpKeys"]


@dataclass(frozen=True)
class SrtpKeys:
    """Master keys for both directions; ``send_*`` protect what we send, ``recv_*`` what the peer sends."""

    suite: SrtpSuite
    send_key: bytes = field(repr=False)
    send_salt: bytes = field(repr=False)
    recv_key: bytes = field(repr=False)
    recv_salt: bytes = field(repr=False)
    send_mki: bytes | None = field(default=None, repr=False)
    recv_mki: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MediaConfig:
    """Everything the call layer negotiated for one audio stream."""

    local_addr: Address
    remote_addr: Address
    codec: CodecSpec
    srtp: SrtpKeys
    dtmf_payload_type: int | None = 101
    local_rtcp_addr: Address | None = None  # None: RTCP multiplexed on the RTP port (RFC 5761)
    remote_rtcp_addr: Address | None = None
    rtcp_interval: float = 5.0
    jitter_min_ms: int = 20
    jitter_max_ms: int = 400
    dsp: DspSettings = DspSettings()  # AEC/NS/AGC/HPF; None fields: on for sound devices, off for WAV/arrays
    trace: bool = False  # keep (rtp timestamp, time) of sent and played frames, for latency measurement
    # symmetric RTP latching (RFC 4961 use, as SBCs do): send to where authenticated SRTP really comes from,
    # so a peer behind a NAT that advertised its private address still hears us. Only packets that pass
    # SRTP authentication and replay checks move the target, so an off-path forger cannot redirect media.
    latch: bool = True


@dataclass(frozen=True)
class MediaStats:
    """A snapshot of one session's counters (see docs/interfaces-media.md for each field)."""

    packets_sent: int
    octets_sent: int
    packets_received: int
    octets_received: int
    packets_lost: int
    jitter_ms: float
    rtt_ms: float | None
    remote_fraction_lost: float | None
    remote_jitter_ms: float | None
    srtp_failures: dict[str, int]
    srtcp_failures: dict[str, int]
    malformed: int
    late_packets: int
    duplicates: int
    concealed_frames: int
    fec_recovered: int
    underruns: int
    jitter_buffer_ms: int
    late_ticks: int
    ticks: int
    rtcp_sent: int
    rtcp_received: int
    dtmf_received: tuple[str, ...]
    bye_received: bool
    latched: int = 0  # times symmetric RTP moved the send target to a packet's real source


class MediaSession:
    """An SRTP audio session; ``await start()``, then ``await stop()``.

    By default (no ``clock``, no ``network``) the session runs on the process's media thread
    (:meth:`MediaEngine.shared`: its own monotonic clock and UDP sockets), never on the asyncio/Qt thread;
    ``on_dtmf``/``on_bye`` are then called on the loop that ran :meth:`start`, and the public methods may be
    called from any thread. Tests pass a ``VirtualClock`` and a ``SimNetwork`` (everything runs inside
    ``clock.advance``), or a :class:`LoopClock` and a ``UdpNetwork`` to run on the event loop, and a seeded
    ``rng`` for the initial SSRC, sequence number and timestamp (default: :mod:`secrets`). A ``tap`` (the
    phone's own capture) sees every datagram sent and received, on whichever network and thread carries
    them (the engine thread by default), so capturing does not change the media path.
    """

    MAX_CATCH_UP = 5  # ticks run back-to-back to catch up; further behind, the schedule skips ahead

    def __init__(self, config: MediaConfig, source: AudioSource, sink: AudioSink, *,
                 on_dtmf: Callable[[str], None] | None = None, on_bye: Callable[[], None] | None = None,
                 clock: Clock | None = None, network: Network | None = None,
                 tap: DatagramTap | None = None, rng: random.Random | None = None) -> None:
        keys = config.srtp
        self.config = config
        self._engine: MediaEngine | None = None
        if clock is None and network is None:
            self._engine = MediaEngine.shared()
            clock = network = self._engine
        elif network is None:
            from softphone.media.transport import UdpNetwork
            network = UdpNetwork()
        self._clock_given = clock
        self._clock: Clock | None = clock
        self._network: Network = network if tap is None else TappedNetwork(network, tap)
        self._lock: contextlib.AbstractContextManager[object] = (
            self._engine.lock if self._engine is not None else contextlib.nullcontext())
        self.source = source
        self.sink = sink
        self.on_dtmf = on_dtmf
        self.on_bye = on_bye
        self._codec = make_codec(config.codec)
        self._rate = config.codec.clock_rate
        self._tx = SrtpSender(keys.suite, keys.send_key, keys.send_salt, keys.send_mki)
        self._rx = SrtpReceiver(keys.suite, keys.recv_key, keys.recv_salt, keys.recv_mki)
        # random per session (RFC 3550 §5.1, RFC 7022); ``rng`` only to make simulations repeatable
        bits = rng.getrandbits if rng is not None else secrets.randbits
        self.ssrc = bits(32)
        self.cname = f"{bits(64):016x}@softphone"
        self._seq = bits(15)
        self._ts = bits(32)
        self._marker = True
        self._sent = self._sent_octets = 0
        self._recv = self._recv_octets = 0
        self._remote_ssrc: int | None = None
        self._tracker = SequenceTracker(self._rate)
        self._jb = JitterBuffer(self._codec, config.jitter_min_ms, config.jitter_max_ms)
        self._dtmf_rx = DtmfReceiver()
        self._dtmf_tx: deque[tuple[bool, bytes]] = deque()
        self._dtmf_ts = 0
        self._dtmf_got: list[str] = []
        self._malformed = 0
        self._latched = 0
        self._late_ticks = self._ticks = 0
        self._rtcp_sent = self._rtcp_recv = 0
        self._last_sr: tuple[int, float] | None = None  # (LSR field, local arrival time)
        self._rtts: deque[float] = deque(maxlen=16)
        self._remote_report: rtcp.ReportBlock | None = None
        self._bye = False
        self._hold = False
        self.muted = False
        self._remote = config.remote_addr
        self._remote_rtcp = config.remote_rtcp_addr or config.remote_addr
        self._transport: Endpoint | None = None
        self._rtcp_transport: Endpoint | None = None
        self._timer: Handle | None = None
        self._running = False
        self._start_time = 0.0
        self._tick_no = 0
        self._next_rtcp = 0.0
        self.dsp: AudioProcessor | None = None
        self._far_at_write = False
        self.trace_sent: deque[tuple[int, float]] = deque(maxlen=20000)
        self.trace_played: deque[tuple[int, float]] = deque(maxlen=20000)

    def __repr__(self) -> str:
        return (f"MediaSession(local={self.config.local_addr}, remote={self._remote}, "
                f"codec={self.config.codec.name}, suite={self.config.srtp.suite.name}, ssrc={self.ssrc:#010x})")

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the socket(s) and begin the 20 ms send/playout schedule (first tick at once)."""
        if self._running:
            raise MediaError("media session already started")
        if self._clock_given is None:
            self._clock = LoopClock()
        self._start_dsp()
        if self._engine is not None:
            loop = asyncio.get_running_loop()
            self.on_dtmf = on_loop(self.on_dtmf, loop)
            self.on_bye = on_loop(self.on_bye, loop)
            self._engine.acquire()
        try:
            self._transport = await self._network.open(self.config.local_addr, self._on_datagram)
            if self.config.local_rtcp_addr is not None:
                self._rtcp_transport = await self._network.open(self.config.local_rtcp_addr, self._on_rtcp_datagram)
        except OSError as exc:
            self._close_transports()
            if self._engine is not None:
                self._engine.release()
            raise MediaError(f"cannot bind media socket {self.config.local_addr}: {exc.strerror or exc}") from None
        clock = self._now_clock()
        with self._lock:
            self._running = True
            self._start_time = clock.time()
            self._tick_no = 0
            self._next_rtcp = self._start_time + min(1.0, self.config.rtcp_interval)
            self._timer = clock.call_at(self._start_time, self._tick)

    def _start_dsp(self) -> None:
        devices = bool(getattr(self.source, "is_device", False) or getattr(self.sink, "is_device", False))
        settings = self.config.dsp.resolve(devices)
        if not settings.any or self.dsp is not None:
            return
        self.dsp = AudioProcessor(settings)
        hook = getattr(self.sink, "set_played_hook", None)
        if settings.aec and hook is not None:
            hook(self.dsp.far_end)  # the sink hands the far end over as the device plays it
        else:
            self._far_at_write = bool(settings.aec)  # an array/file sink "plays" when written

    def _now_clock(self) -> Clock:
        if self._clock is None:
            raise MediaError("media session not started")
        return self._clock

    @property
    def local_addr(self) -> Address:
        """The bound RTP address (useful when started on port 0)."""
        if self._transport is None:
            raise MediaError("media session not started")
        return self._transport.local_addr

    @property
    def local_rtcp_addr(self) -> Address:
        if self._rtcp_transport is None:
            return self.local_addr
        return self._rtcp_transport.local_addr

    async def stop(self, send_bye: bool = True) -> None:
        """Stop the schedule, send RTCP BYE (unless told not to), close sockets, source and sink."""
        for _ in range(2):  # two loop iterations: datagrams already waiting (a peer's BYE) are read first
            await asyncio.sleep(0)
        engine = self._engine
        if engine is not None and engine.running and self._running:
            await asyncio.wrap_future(engine.submit(lambda: self._halt(send_bye, poll=True)))
        else:
            with self._lock:
                self._halt(send_bye)
        self.source.close()
        self.sink.close()

    def _halt(self, send_bye: bool, poll: bool = False) -> None:
        was_running = self._running
        if poll and self._engine is not None:
            self._engine.poll()  # datagrams already waiting (a peer's BYE) are read first
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if send_bye and self._transport is not None:
            self._send_rtcp(bye=True)
        self._close_transports()
        if self._engine is not None and was_running:
            self._engine.release()

    def _close_transports(self) -> None:
        for t in (self._transport, self._rtcp_transport):
            if t is not None:
                t.close()
        self._transport = self._rtcp_transport = None

    @property
    def remote_addr(self) -> Address:
        """Where RTP goes now (the SDP address, or where symmetric latching moved it)."""
        return self._remote

    def set_remote(self, rtp: Address, rtcp: Address | None = None) -> None:
        """Change where RTP (and RTCP; default: multiplexed on ``rtp``) go, e.g. after an SDP answer or re-INVITE."""
        with self._lock:
            self._remote = rtp
            self._remote_rtcp = rtcp or rtp

    def hold(self) -> None:
        """Stop sending RTP (RTCP continues); received audio is still played."""
        self._hold = True

    def resume(self) -> None:
        """Send again after :meth:`hold`; the first packet carries the marker bit."""
        with self._lock:
            self._hold = False
            self._marker = True

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue one RFC 4733 event; raises :class:`DtmfError` for a bad digit or no telephone-event PT."""
        if self.config.dtmf_payload_type is None:
            raise DtmfError("telephone-event was not negotiated")
        payloads = event_payloads(digit, duration_ms, self._rate)
        with self._lock:
            self._dtmf_tx.extend(payloads)

    # --- schedule -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        """One 20 ms tick (send a frame, play a frame, RTCP when due), then schedule the next."""
        if not self._running:
            return
        clock = self._now_clock()
        now = clock.time()
        late = now - (self._start_time + self._tick_no * FRAME_S)
        if late > FRAME_S:
            self._late_ticks += 1
            behind = int(late / FRAME_S)
            if behind > self.MAX_CATCH_UP:  # starved of CPU: skip ahead instead of bursting to catch up
                self._tick_no += behind
                self._late_ticks += behind
        self._tick_no += 1
        self._timer = clock.call_at(self._start_time + self._tick_no * FRAME_S, self._tick)
        self._send_tick(now)
        self._play_tick(now)
        if now >= self._next_rtcp:
            self._send_rtcp()
            self._next_rtcp = now + self.config.rtcp_interval
        self._ticks += 1

    def _send_tick(self, now: float) -> None:
        frame = self.source.read()
        if self.dsp is not None and frame is not None:
            # render + capture delay: what the sink and source hold beyond what the device is doing now
            self.dsp.delay_ms = getattr(self.sink, "latency_ms", 0) + getattr(self.source, "latency_ms", 0)
            frame = self.dsp.near_end(frame)
        if self._hold or self._transport is None:
            self._ts += self._codec.samples_per_frame
            return
        if self._dtmf_tx:
            if self._dtmf_tx[0][0]:  # first packet of an event: its start timestamp
                self._dtmf_ts = self._ts
            marker, payload = self._dtmf_tx.popleft()
            pt, ts = self.config.dtmf_payload_type or 0, self._dtmf_ts
        else:
            if frame is None or self.muted:
                frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            payload = self._codec.encode(frame)
            marker, pt, ts = self._marker, self.config.codec.payload_type, self._ts
            self._marker = False
        if self.config.trace and pt == self.config.codec.payload_type:
            self.trace_sent.append((ts, now))
        packet = RtpPacket(pt, self._seq, ts, self.ssrc, payload, marker).serialize()
        self._transport.sendto(self._tx.protect(packet), self._remote)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + self._codec.samples_per_frame) & 0xFFFFFFFF
        self._sent += 1
        self._sent_octets += len(payload)

    def _play_tick(self, now: float) -> None:
        frame = self._jb.pull(now)
        if self.config.trace and self._jb.last_timestamp is not None:
            self.trace_played.append((self._jb.last_timestamp, now))
        if self._far_at_write and self.dsp is not None:
            self.dsp.far_end(frame)
        self.sink.write(frame)

    # --- receive ------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, source: Address) -> None:
        if is_rtcp(data):
            self._on_rtcp(data)
        else:
            self._on_rtp(data, source)

    def _on_rtcp_datagram(self, data: bytes, source: Address) -> None:
        self._on_rtcp(data)

    def _on_rtp(self, data: bytes, source: Address | None = None) -> None:
        plain = self._rx.unprotect(data)
        if plain is None:
            return
        try:
            pkt = RtpPacket.parse(plain)
        except RtpError:
            self._malformed += 1
            return
        if self.config.latch and source is not None and source != self._remote:
            self._remote = source
            if self.config.local_rtcp_addr is None:  # rtcp-mux: RTCP follows
                self._remote_rtcp = source
            self._latched += 1
        now = self._now_clock().time()
        if pkt.ssrc != self._remote_ssrc:
            self._remote_ssrc = pkt.ssrc
            self._tracker = SequenceTracker(self._rate)
            self._jb = JitterBuffer(self._codec, self.config.jitter_min_ms, self.config.jitter_max_ms)
        self._recv += 1
        self._recv_octets += len(pkt.payload)
        ext = self._tracker.update(pkt.sequence, pkt.timestamp, now)
        if pkt.payload_type == self.config.codec.payload_type:
            self._jb.put(ext, pkt.timestamp, pkt.payload, now, self._rate)
        elif pkt.payload_type == self.config.dtmf_payload_type:
            try:
                digit = self._dtmf_rx.feed(pkt.timestamp, pkt.payload)
            except DtmfError:
                self._malformed += 1
                return
            if digit is not None:
                self._dtmf_got.append(digit)
                if self.on_dtmf is not None:
                    self.on_dtmf(digit)
        else:
            self._malformed += 1

    def _on_rtcp(self, data: bytes) -> None:
        plain = self._rx.unprotect_rtcp(data)
        if plain is None:
            return
        try:
            compound = rtcp.parse(plain)
        except rtcp.RtcpError:
            self._malformed += 1
            return
        self._rtcp_recv += 1
        clock = self._now_clock()
        now = clock.time()
        arrival_ntp = rtcp.ntp_now(clock.wallclock())
        for p in compound.packets:
            if isinstance(p, rtcp.SenderReport):
                self._last_sr = (rtcp.middle32(p.ntp_timestamp), now)
            if isinstance(p, (rtcp.SenderReport, rtcp.ReceiverReport)):
                for block in p.reports:
                    if block.ssrc == self.ssrc:
                        self._remote_report = block
                        # spend Opus FEC on what the peer reports losing (at least 10 %, RFC 6716 §2.1.7)
                        self._codec.set_expected_loss(max(10, min(30, math.ceil(block.fraction_lost * 100 / 256) + 5)))
                        rtt = rtcp.rtt_seconds(block, arrival_ntp)
                        if rtt is not None:
                            self._rtts.append(rtt)
            elif isinstance(p, rtcp.Bye) and self._remote_ssrc in p.sources and not self._bye:
                self._bye = True
                if self.on_bye is not None:
                    self.on_bye()

    # --- RTCP send ----------------------------------------------------------------------------------
    def _report_blocks(self, now: float) -> tuple[rtcp.ReportBlock, ...]:
        if self._remote_ssrc is None:
            return ()
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((now - self._last_sr[1]) * 65536)
        t = self._tracker
        return (rtcp.ReportBlock(self._remote_ssrc, t.fraction_lost(), min(t.lost, 0x7FFFFF), t.extended_max,
                                 int(t.jitter), lsr, dlsr),)

    def _send_rtcp(self, bye: bool = False) -> None:
        transport = self._rtcp_transport or self._transport
        if transport is None:
            return
        clock = self._now_clock()
        blocks = self._report_blocks(clock.time())
        first: rtcp.RtcpPacket
        if self._sent:
            first = rtcp.SenderReport(self.ssrc, rtcp.ntp_now(clock.wallclock()), self._ts, self._sent,
                                      self._sent_octets, blocks)
        else:
            first = rtcp.ReceiverReport(self.ssrc, blocks)
        data = rtcp.serialize(first) + rtcp.serialize(rtcp.Sdes(((self.ssrc, self.cname),)))
        if bye:
            data += rtcp.serialize(rtcp.Bye((self.ssrc,), "hangup"))
        transport.sendto(self._tx.protect_rtcp(data), self._remote_rtcp)
        self._rtcp_sent += 1

    # --- stats --------------------------------------------------------------------------------------
    def stats(self) -> MediaStats:
        """Current counters (cheap; call as often as needed, from any thread)."""
        with self._lock:
            return self._stats()

    def _stats(self) -> MediaStats:
        rr = self._remote_report
        js = self._jb.stats
        return MediaStats(
            packets_sent=self._sent,
            octets_sent=self._sent_octets,
            packets_received=self._recv,
            octets_received=self._recv_octets,
            packets_lost=self._tracker.lost,
            jitter_ms=self._tracker.jitter_ms,
            rtt_ms=statistics.median(self._rtts) * 1000 if self._rtts else None,
            remote_fraction_lost=rr.fraction_lost / 256 if rr else None,
            remote_jitter_ms=1000 * rr.jitter / self._rate if rr else None,
            srtp_failures=dict(self._rx.failures),
            srtcp_failures=dict(self._rx.rtcp_failures),
            malformed=self._malformed,
            late_packets=js.late,
            duplicates=js.duplicates,
            concealed_frames=js.concealed,
            fec_recovered=js.fec_recovered,
            underruns=js.underruns,
            jitter_buffer_ms=self._jb.target_ms,
            late_ticks=self._late_ticks,
            ticks=self._ticks,
            rtcp_sent=self._rtcp_sent,
            rtcp_received=self._rtcp_recv,
            latched=self._latched,
            dtmf_received=tuple(self._dtmf_got),
            bye_received=self._bye,
        )
