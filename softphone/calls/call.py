"""One secure call: the SIP INVITE session joined to its negotiated SRTP media session.

A :class:`Call` is made by :class:`softphone.calls.phone.Phone` (outgoing: after the 2xx; incoming: after
the offer verified). It owns the :class:`~softphone.media.session.MediaSession` and restarts it with
new keys when a re-INVITE carries a new I_MESSAGE (rekey, TS 33.180 §7.4); hold/resume re-offers keep
the keys (RFC 3264 §8.4). Events go to the phone's callback as :mod:`softphone.calls.events` values.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from softphone.calls.errors import CallError
from softphone.calls.events import (
    CallEvent,
    CallKeys,
    CallStatus,
    Dtmf,
    Ended,
    Failed,
    Held,
    IceChanged,
    MediaCounters,
    MediaStarted,
    PeerAssurance,
    PeerSending,
    Rekeyed,
    Resumed,
    StatusEvent,
    ice_path,
)
from softphone.calls.negotiation import Answerer, Negotiated, NegotiationError, Offerer
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.dsp import DspSettings
from softphone.media.ice import IceAgent, IceError
from softphone.media.session import MediaConfig, MediaError, MediaSession
from softphone.media.transport import DatagramTap, Network
from softphone.sip.errors import SipError
from softphone.sip.message import Request
from softphone.sip.session import CallState, InviteSession, Reject

log = logging.getLogger(__name__)


__all__ = ["Call", "CallError", "CallEvent", "EventSink", "OfferVerifier", "reserve_port", "verify_in_thread"]

EventSink = Callable[[CallEvent], None]
#: Verifies an offer off the event loop, one at a time through the phone's replay cache (``Phone.verify_offer``).
OfferVerifier = Callable[[Answerer, bytes, "str | None"], Awaitable[Negotiated]]


async def verify_in_thread(answerer: Answerer, body: bytes, claimed: str | None) -> Negotiated:
    """An :data:`OfferVerifier` for a call on its own (no phone): the check still runs in a thread."""
    return await asyncio.to_thread(answerer.process_offer, body, claimed)


def reserve_port(host: str) -> int:
    """A UDP port free on ``host`` now (for the SDP before the media session binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Shared:
    """Source/sink wrapper that survives a media restart (rekey): ``close`` is deferred to the call's end."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def read(self) -> np.ndarray | None:
        return self.inner.read()

    def write(self, frame: np.ndarray) -> None:
        self.inner.write(frame)

    def close(self) -> None:
        """Kept open across media restarts; :meth:`Call._finish` closes the real one."""

    def __getattr__(self, name: str) -> Any:  # is_device, latency_ms, set_played_hook of a sound device
        return getattr(self.inner, name)


class Call:
    """A confirmed (or confirming) secure call. Use :meth:`hold`, :meth:`resume`, :meth:`rekey`,
    :meth:`send_dtmf`, :meth:`hangup`, :meth:`status`; ``await ended()`` waits for the end."""

    def __init__(self, session: InviteSession, host: str, port: int, source: AudioSource, sink: AudioSink,
                 emit: EventSink, *, offerer: Offerer | None = None, answerer: Answerer | None = None,
                 trace: bool = False, verify: OfferVerifier = verify_in_thread,
                 dsp: DspSettings | None = None, network: Network | None = None,
                 tap: DatagramTap | None = None, ice_agent: IceAgent | None = None) -> None:
        self.dsp = dsp or DspSettings()
        self.session = session
        self.host = host
        self.port = port
        self.offerer = offerer
        self.answerer = answerer
        self.negotiated: Negotiated | None = None
        self.media: MediaSession | None = None
        self.held = False
        self.invite_sent_at: float | None = None
        self.early_body: bytes | None = None     # the 183's SDP when early media ran before the answer
        self.trace = trace
        self.network = network
        self.tap = tap  # the phone's own capture: sees the session's datagrams where the engine sends them
        self.ice_agent = ice_agent  # gathered; connected at the first start_media when the peer does ICE too
        self.ice_path: str | None = None
        self._verify = verify
        self._source = source
        self._sink = sink
        self._emit_cb = emit
        self._ended = asyncio.Event()
        self._hanging_up = False
        self._watch: asyncio.Task[None] | None = None
        self._restart: asyncio.Task[None] | None = None
        self._first_packet: asyncio.Task[None] | None = None
        session.on_offer = self._on_reoffer
        self.on_refer: Callable[[Call, Request], None] | None = None   # the phone's transfer handler
        session.on_refer = self._refer_received
        self._audio_released = False

    def __repr__(self) -> str:
        neg = self.negotiated
        return (f"<Call {self.call_id!r} {self.session.state.value} "
                f"{neg.security + ' ' + neg.suite if neg else 'unkeyed'}>")

    @property
    def call_id(self) -> str:
        return self.session.call_id

    @property
    def peer(self) -> str:
        msg = self.session.invite
        uri = msg.to.uri if self.session.outgoing else msg.from_.uri
        return f"{uri.scheme}:{uri.user}@{uri.host}" if uri.user else str(uri)

    def emit(self, event: CallEvent) -> None:
        self._emit_cb(event)

    def _emit_status(self, kind: type[StatusEvent]) -> None:
        self.emit(kind(self.call_id, self.snapshot()))

    # --- media -------------------------------------------------------------------------------------
    async def start_media(self, negotiated: Negotiated, *, rebind: bool = False) -> None:
        """Start SRTP media for ``negotiated`` (restarting on the same port if keys changed; ``rebind``:
        the port was this call's before, retry while it is being released)."""
        old = self.media
        self.negotiated = negotiated
        if old is not None:
            await old.stop(send_bye=False)
        network, remote = self.network, negotiated.remote_addr
        if self.ice_agent is not None:
            network, remote = await self._connect_ice(negotiated)
        cfg = MediaConfig(local_addr=(self.host, self.port), remote_addr=remote,
                          codec=negotiated.codec, srtp=negotiated.srtp,
                          dtmf_payload_type=negotiated.dtmf_payload_type, trace=self.trace, dsp=self.dsp,
                          latch=self.ice_path is None)  # with ICE the nominated pair decides
        self.media = MediaSession(cfg, _Shared(self._source), _Shared(self._sink),
                                  on_dtmf=lambda d: self.emit(Dtmf(self.call_id, d)), network=network,
                                  tap=self.tap)
        for attempt in range(20):  # a restarted session rebinds the port the old one is releasing
            try:
                await self.media.start()
                break
            except MediaError as exc:
                if (old is None and not rebind) or attempt == 19:
                    self.media = None
                    raise CallError(str(exc)) from None
                await asyncio.sleep(0.01)
        self._apply_direction(negotiated.direction)
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_session())
        if self._first_packet is not None:
            self._first_packet.cancel()
            self._first_packet = None
        if negotiated.peer_assurance is PeerAssurance.KEYED_TO:
            self._first_packet = asyncio.get_running_loop().create_task(self._await_peer_sending(self.media))
        self._emit_status(MediaStarted)

    async def _connect_ice(self, negotiated: Negotiated) -> tuple[Network | None, tuple[str, int]]:
        """Run ICE once (the first media start) when both sides offered it; a peer without ICE gets plain
        SRTP to its ``c=``/``m=`` address with latching, and our agent is closed."""
        agent = self.ice_agent
        assert agent is not None
        if self.ice_path is not None:  # restart after a rekey: same nominated pair
            state = agent.state()
            assert state.remote_addr is not None
            return agent.network(), state.remote_addr
        ice = negotiated.ice
        if ice is None:
            self.ice_agent = None
            await agent.close()
            return self.network, negotiated.remote_addr
        self.emit(IceChanged(self.call_id, "checking", agent.controlling))
        try:
            await agent.set_remote(ice.ufrag, ice.pwd, [c.to_sdp() for c in ice.candidates], lite=ice.lite)
            state = await agent.connect()
        except IceError as exc:
            self.emit(IceChanged(self.call_id, "failed", agent.controlling))
            raise CallError(str(exc)) from None
        assert state.remote_addr is not None
        self.ice_path = ice_path(state.local_type, state.remote_type)
        self.emit(IceChanged(self.call_id, "connected", agent.controlling, self.ice_path, state.local_type,
                             state.remote_type))
        return agent.network(), state.remote_addr

    async def _await_peer_sending(self, media: MediaSession, poll_s: float = 0.02) -> None:
        """Emit :class:`PeerSending` once ``media`` has authenticated a packet from the peer (its public stats)."""
        while self.media is media and not self._ended.is_set():
            if media.stats().packets_received > 0:
                self._emit_status(PeerSending)
                return
            await asyncio.sleep(poll_s)

    def _apply_direction(self, direction: str) -> None:
        if self.media is None:
            return
        if direction in ("sendrecv", "sendonly") and not self.held:
            self.media.resume()
        else:
            self.media.hold()

    async def _watch_session(self) -> None:
        await self.session.wait_state(CallState.TERMINATED, timeout=float("inf"))
        if self._hanging_up:
            return  # our own BYE/CANCEL ended the session: hangup() reports it
        await self._finish("remote hangup" if self.session.history[-1] is CallState.TERMINATED else "")

    async def _finish(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self._ended.set()
        if self._first_packet is not None:
            self._first_packet.cancel()
        last = self.snapshot()
        if self.media is not None:
            await self.media.stop()
        if self.ice_agent is not None:
            await self.ice_agent.close()
        if not self._audio_released:
            for end in (self._source, self._sink):
                end.close()
        self.emit(Ended(self.call_id, reason, last))

    # --- transfer ------------------------------------------------------------------------------------
    def _refer_received(self, req: Request) -> None:
        if self.on_refer is not None and not self._ended.is_set():
            self.on_refer(self, req)

    async def handover_audio(self) -> tuple[AudioSource, AudioSink]:
        """Stop this call's media and give its audio ends to the call that takes over (transfer,
        Replaces); the ends stay open when this call ends."""
        self._audio_released = True
        if self.media is not None:
            await self.media.stop(send_bye=False)
            self.media = None
        return self._source, self._sink

    async def reclaim_audio(self) -> None:
        """Take the audio ends back after :meth:`handover_audio` when the call that was to take over failed
        (a blind transfer to a busy or absent target): media restarts on the same keys and port under a
        new random SSRC (so no SRTP nonce of the earlier stream is reused). Nothing if the call ended."""
        if self._ended.is_set() or not self._audio_released or self.negotiated is None:
            return
        self._audio_released = False
        await self.start_media(self.negotiated, rebind=True)

    async def ended(self, timeout: float | None = None) -> None:
        """Wait until the call is over (either side hung up)."""
        await asyncio.wait_for(self._ended.wait(), timeout)

    @property
    def is_ended(self) -> bool:
        return self._ended.is_set()

    # --- in-call actions ---------------------------------------------------------------------------
    def _ensure_offerer(self) -> Offerer:
        if self.offerer is None:
            raise CallError("this call cannot send re-offers (no key set for the peer)")
        return self.offerer

    async def _reoffer(self, direction: str, rekey: bool) -> Negotiated:
        offerer = self._ensure_offerer()
        try:
            body = offerer.offer(direction, rekey=rekey)
            resp = await self.session.reinvite(body, timeout=10)
            negotiated = offerer.apply_answer(resp.body)
        except (TimeoutError, SipError, NegotiationError) as exc:
            raise CallError(f"re-INVITE failed: {exc}") from None
        return negotiated

    async def hold(self) -> None:
        """Put the peer on hold (a=sendonly, same keys) and stop sending audio."""
        negotiated = await self._reoffer("sendonly", rekey=False)
        self.held = True
        await self._adopt(negotiated)
        self._emit_status(Held)

    async def resume(self) -> None:
        """Take the call off hold (a=sendrecv, same keys)."""
        negotiated = await self._reoffer("sendrecv", rekey=False)
        self.held = False
        await self._adopt(negotiated)
        self._emit_status(Resumed)

    async def _adopt(self, negotiated: Negotiated) -> None:
        """Apply a re-negotiation: same keys → new remote/direction; new keys (our first offer as the
        original callee carries a fresh I_MESSAGE) → restart media with them."""
        if self.negotiated is not None and negotiated.srtp != self.negotiated.srtp:
            await self.start_media(negotiated)
            return
        self.negotiated = negotiated
        if self.media is not None and self.ice_path is None:
            self.media.set_remote(negotiated.remote_addr)
        self._apply_direction(negotiated.direction)

    async def rekey(self) -> None:
        """Send a re-INVITE with a new I_MESSAGE (new PCK) or new SDES keys; media restarts with them."""
        negotiated = await self._reoffer("sendonly" if self.held else "sendrecv", rekey=True)
        await self.start_media(negotiated)
        self._emit_status(Rekeyed)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 DTMF events."""
        if self.media is None:
            raise CallError("no media yet")
        try:
            for digit in digits:
                self.media.send_dtmf(digit, duration_ms)
        except ValueError as exc:
            raise CallError(str(exc)) from None

    async def hangup(self) -> None:
        """BYE (or CANCEL before the answer) and stop media."""
        self._hanging_up = True
        try:
            if self.session.state is CallState.CONFIRMED:
                await self.session.bye(timeout=5)
            elif self.session.outgoing and self.session.state in (CallState.CALLING, CallState.PROCEEDING,
                                                                    CallState.EARLY):
                await self.session.cancel()
        except (SipError, TimeoutError) as exc:
            log.info("hangup: %s", exc)
        finally:
            await self._finish("local hangup")

    def _on_reoffer(self, body: bytes) -> bytes:
        """A re-INVITE from the peer: same I_MESSAGE → hold/resume with the same keys; new → rekey.

        A new I_MESSAGE is verified like an initial offer — in a thread, under the phone's verify lock that
        guards the shared replay cache — never on the event loop. This handler must answer at once, so it
        answers (the answer carries no MIKEY response) and keeps the old keys until the check is done: media
        restarts with the new keys if it verifies; otherwise the call is hung up (a :class:`Failed` says why).
        """
        if self.answerer is None:
            raise Reject(488, "re-offer without a MIKEY responder for this call")
        if self._restart is not None and not self._restart.done():
            raise Reject(491, "a rekey is still being verified")
        try:
            if self.answerer.carries_new_key(body):
                answer = self.answerer.answer_for(body)
                self._restart = asyncio.get_running_loop().create_task(self._verify_rekey(body))
                return answer
        except NegotiationError as exc:
            raise Reject(exc.status, exc.warning) from None
        before = self.negotiated
        try:
            negotiated = self.answerer.process_offer(body, self.peer)  # no crypto: the keys are the current ones
        except NegotiationError as exc:
            raise Reject(exc.status, exc.warning) from None
        answer = self.answerer.answer()
        if before is not None and negotiated.srtp == before.srtp:
            self.negotiated = negotiated
            if self.media is not None and self.ice_path is None:
                self.media.set_remote(negotiated.remote_addr)
            self._apply_direction(negotiated.direction)
            self._emit_status(Held if negotiated.direction in ("recvonly", "inactive") else Resumed)
        else:
            self._restart = asyncio.get_running_loop().create_task(self._rekeyed(negotiated))
        return answer

    async def _verify_rekey(self, body: bytes) -> None:
        assert self.answerer is not None
        try:
            negotiated = await self._verify(self.answerer, body, self.peer)
        except NegotiationError as exc:
            self.emit(Failed(self.call_id, f"rekey refused: {exc.warning}"))
            await self.hangup()
            return
        if not self.is_ended:
            await self._rekeyed(negotiated)

    async def _rekeyed(self, negotiated: Negotiated) -> None:
        try:
            await self.start_media(negotiated)
        except CallError as exc:
            self.emit(Failed(self.call_id, str(exc)))
            await self.hangup()
            return
        self._emit_status(Rekeyed)

    # --- status ------------------------------------------------------------------------------------
    def snapshot(self) -> CallStatus:
        """What a status line shows: state, peer identity and how sure we are of it, codec, suite, key id,
        packets, loss, jitter."""
        neg = self.negotiated
        keys = counters = None
        s = self.media.stats() if self.media is not None else None
        if neg is not None:
            assurance = neg.peer_assurance
            if assurance is PeerAssurance.KEYED_TO and s is not None and s.packets_received > 0:
                assurance = PeerAssurance.PEER_SENDING  # packets_received counts only SRTP-authenticated ones
            keys = CallKeys(neg.security, neg.security_label, neg.peer_identity, neg.codec.name, neg.suite, neg.key_id,
                            assurance)
        if s is not None:
            total = s.packets_received + s.packets_lost
            counters = MediaCounters(s.packets_sent, s.packets_received,
                                     round(s.packets_lost / total, 4) if total > 0 else 0.0,
                                     round(s.jitter_ms, 2), sum(s.srtp_failures.values()))
        return CallStatus("held" if self.held else self.session.state.value, self.peer, keys, counters,
                          ice=self.ice_path)

    def status(self) -> dict[str, Any]:
        """:meth:`snapshot` as the flat JSON-safe dict scripts and the ``--json`` events use."""
        return self.snapshot().to_json()

    def first_played_at(self) -> float | None:
        """Loop time of the first decrypted frame played (needs ``trace``)."""
        if self.media is None or not self.media.trace_played:
            return None
        return self.media.trace_played[0][1]
