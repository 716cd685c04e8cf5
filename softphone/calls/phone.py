"""The phone: one account's UA, keys and calls, UI-agnostic (CLI and GUI drive it alike).

    phone = Phone(PhoneSettings(...), on_event=print)       # or iterate ``phone.events()``
    await phone.start(); await phone.register()
    call = await phone.call("sip:bob@example.org", WavSource(p), WavSink(q))
    incoming = await phone.next_incoming()                  # offer already verified (MIKEY before alerting)
    call = await incoming.accept(source, sink)              # or await incoming.reject()

Incoming INVITEs are checked *before* 180 Ringing: the I_MESSAGE must verify (ECCSI signature from
the identity in From, our identity and key period, timestamp window, no replay) and the sender must
not be revoked; otherwise 488 with a Warning naming the reason (SDP-SRTP.md §1). Revoked identities
are the operator's local ``revoked`` set plus the KMS's signed revocation list, which a phone with a
KMS fetches at start and every ``revocation_refresh_s`` into its keystore (docs/REVOCATION.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from crypto.mikey.build import Initiator
from crypto.mikey.verify import ReplayCache, Responder
from softphone.calls.call import Call, reserve_port
from softphone.calls.errors import CallError
from softphone.calls.events import (
    Answered,
    CallEvent,
    Calling,
    CallWaiting,
    EarlyMedia,
    Failed,
    Incoming,
    PeerAssurance,
    RegistrationChanged,
    Rejected,
    Ringing,
    Transfer,
)
from softphone.calls.group import GroupCall, group_answer, group_offer, own_sender_key
from softphone.calls.negotiation import Answerer, LocalIce, Negotiated, NegotiationError, Offerer
from softphone.calls.profile import Keying, Profile, ProfileError, SecurityLevel, load_profile
from softphone.capture import PcapWriter, create_secret_file
from softphone.config import DEFAULT_CONFIG, Account, ConfigError
from softphone.keys.errors import KeysError
from softphone.keys.groups import GroupKey, NoActiveGroupKey, active_key
from softphone.keys.keystore import Keystore, KeystoreError
from softphone.keys.kms_client import KmsClient, KmsClientError, refresh, refresh_revocations
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.dsp import DspSettings
from softphone.media.ice import IceAgent, IceError, IcePolicy, IceSettings
from softphone.media.transport import Network
from softphone.media.warmup import warm_up
from softphone.sip.errors import CallFailed, ParseError, SipError
from softphone.sip.ice import Candidate as IceCandidate
from softphone.sip.ice import IceDescription
from softphone.sip.invite import sipfrag_status
from softphone.sip.message import Request, Response
from softphone.sip.registration import RegistrationStatus
from softphone.sip.resolve import uri_transport
from softphone.sip.session import CallState, InviteSession
from softphone.sip.ua import UAConfig, UserAgent
from softphone.sip.uri import NameAddr, SipUri

log = logging.getLogger(__name__)

#: Seconds the first REGISTER may take before the phone reports the registrar unreachable.
REGISTER_TIMEOUT = 8.0


@dataclass
class PhoneSettings:
    """What a phone needs: identity, SIP settings, profile, keys, and identities to refuse."""

    uri: str
    ua: UAConfig
    profile: Profile
    keystore: Keystore | None = None
    revoked: frozenset[str] = frozenset()
    trace_media: bool = False
    kms: KmsClient | None = None          # fetch the signed revocation list from here …
    revocation_refresh_s: float = 900.0   # … at start and this often
    audio_processing: bool | None = None  # AEC/NS/AGC forced on or off; None: the profile's (auto by default)
    ice: IceSettings | None = None        # offer/answer with ICE (STUN/TURN) when set; None: plain SDP + latching
    accept_transfers: bool = True         # follow a peer's REFER (call its Refer-To); False: NOTIFY 603

    def dsp(self) -> DspSettings:
        """Audio processing for this phone's calls: the override, else the profile's (None: per device)."""
        if self.audio_processing is not None:
            on = self.audio_processing
            return DspSettings(on, on, on, on)
        p = self.profile
        return DspSettings(aec=p.aec, ns=p.ns, agc=p.agc, hpf=p.ns)

    #: Write the TLS session keys here (NSS SSLKEYLOGFILE format; 0600): secrets, off by default.
    keylog: Path | None = None
    #: Write the phone's own SIP and media here as pcap (0600): holds secrets, off by default.
    capture: Path | None = None


class IncomingCall:
    """An INVITE whose offer verified; the phone is alerting. :meth:`accept` or :meth:`reject`."""

    def __init__(self, phone: Phone, session: InviteSession, answerer: Answerer, received_at: float) -> None:
        self.phone = phone
        self.session = session
        self.answerer = answerer
        self.received_at = received_at
        self.call: Call | None = None           # set by early_media(): media already runs
        self.early_body: bytes | None = None    # the SDP answer the 183 carried (the 200 repeats it)

    def __repr__(self) -> str:
        return f"<IncomingCall from {self.peer_identity!r} ({self.security})>"

    @property
    def peer_identity(self) -> str | None:
        neg = self.answerer.current
        return neg.peer_identity if neg else None

    @property
    def security(self) -> str:
        return self.phone.settings.profile.security_label

    async def accept(self, source: AudioSource, sink: AudioSink, *, hold_others: bool = False) -> Call:
        """Start SRTP media with the verified keys, then send 200 OK with our answer.

        ``hold_others`` (call waiting): first put every other call that is up on hold (re-INVITE
        ``a=sendonly``, as :meth:`Call.hold`); a hold that fails is reported and the answer goes on."""
        if hold_others:
            await self.phone.hold_all(except_call_id=self.session.call_id)
        return await self.phone._accept(self, source, sink)

    async def early_media(self, source: AudioSource, sink: AudioSink) -> Call:
        """Send 183 Session Progress with our answer and start SRTP media before answering (early
        media: an announcement, a custom ringback); :meth:`accept` later answers with the same SDP.
        Reliable (PRACKed) when the caller requires 100rel."""
        return await self.phone._early_media_answer(self, source, sink)

    async def reject(self, status: int = 486, warning: str | None = None) -> None:
        if self.call is not None:
            await self.call.hangup()
            return
        await self.session.reject(status, warning=warning)
        self.phone._emit(Rejected(self.session.call_id, status, warning))


class Phone:
    """One account's SIP UA plus MIKEY-SAKKE keys, placing and receiving secure calls."""

    def __init__(self, settings: PhoneSettings, on_event: Callable[[CallEvent], None] | None = None) -> None:
        self.settings = settings
        self.ua = UserAgent(settings.ua)
        self.calls: dict[str, Call] = {}
        self._on_event = on_event
        self._queue: asyncio.Queue[CallEvent] = asyncio.Queue(maxsize=1024)
        self._incoming: asyncio.Queue[IncomingCall] = asyncio.Queue(maxsize=16)
        self._accept_task: asyncio.Task[None] | None = None
        self._replay = ReplayCache(settings.profile.replay_window_s)
        self._responder: Responder | None = None
        self._responder_periods: tuple[int, ...] = ()
        self._prepared: asyncio.Future[None] | None = None  # the responder's SAKKE tables, built in a thread
        self._media_warmed: asyncio.Future[None] | None = None  # the media stack's one-time set-up, in a thread
        self._verify_lock = asyncio.Lock()
        self.ua.on_registration = self._registration_changed
        self._revocation_task: asyncio.Task[None] | None = None
        self.revocation_problem: str | None = None  # why the last revocation list fetch failed
        self._capture: PcapWriter | None = None
        self._network: Network | None = None
        if settings.keylog is not None:
            create_secret_file(settings.keylog)
            for ctx in (settings.ua.tls_client, settings.ua.tls_server):
                if ctx is not None:
                    ctx.keylog_filename = str(settings.keylog)

    def __repr__(self) -> str:
        return f"<Phone {self.settings.uri} profile={self.settings.profile.name}>"

    @property
    def host(self) -> str:
        return self.settings.ua.host

    # --- events ------------------------------------------------------------------------------------
    def _emit(self, event: CallEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._queue.get_nowait()
            self._queue.put_nowait(event)

    @property
    def registration(self) -> RegistrationStatus:
        """The registration's state, expiry and next retry (times on the event loop's clock)."""
        return self.ua.registration_status

    def registration_text(self) -> str:
        """``registered (expires in 3570 s)``, ``retrying in 12 s (503 Service Unavailable)``, …"""
        return self.registration.describe(asyncio.get_running_loop().time())

    def _registration_changed(self, status: RegistrationStatus) -> None:
        now = asyncio.get_running_loop().time()
        self._emit(RegistrationChanged(
            call_id="", state=status.state.value, text=status.describe(now),
            expires_in=None if status.expires_at is None else max(0, round(status.expires_at - now)),
            retry_in=None if status.retry_at is None else max(0, round(status.retry_at - now)),
            reason=status.reason, target=status.target))

    async def events(self) -> AsyncIterator[CallEvent]:
        """Every call event, as they happen (an alternative to the ``on_event`` callback)."""
        while True:
            yield await self._queue.get()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the SIP transports, prepare the MIKEY responder and listen for calls."""
        if self.settings.profile.keying is Keying.MIKEY_SAKKE:
            self._mikey_responder()  # fails early (one line) when the keystore holds no keys
        if self.settings.capture is not None and self._capture is None:
            self._capture = PcapWriter(self.settings.capture)  # the media sessions' tap (on the engine thread)
        await self.ua.start()
        self.ua.transport.tap = self._capture
        if self._media_warmed is None:  # codecs, SRTP, sockets: the first call then pays nothing once-only
            self._media_warmed = asyncio.get_running_loop().run_in_executor(None, warm_up, self.host)
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop())
        if self.settings.kms is not None and self.settings.keystore is not None:
            self._revocation_task = asyncio.get_running_loop().create_task(self._revocation_loop())

    async def register(self, timeout: float = REGISTER_TIMEOUT) -> int:
        """REGISTER with the registrar; returns the granted expiry.

        :class:`CallError` when the registrar gives no final answer within ``timeout`` seconds (a
        dead UDP registrar otherwise costs the whole 32 s SIP transaction timeout).
        """
        try:
            return await asyncio.wait_for(self.ua.register(), timeout)
        except TimeoutError:
            where = self.settings.ua.proxy or self.settings.ua.registrar or self.settings.uri
            raise CallError(f"registrar {where} did not answer within {timeout:g} s "
                            "(is it running, and is the address and transport right?)") from None

    async def close(self) -> None:
        """Hang up every call, unregister and close sockets."""
        for call in list(self.calls.values()):
            await call.hangup()
        if self._accept_task is not None:
            self._accept_task.cancel()
        if self._revocation_task is not None:
            self._revocation_task.cancel()
        await self.ua.close()
        if self._capture is not None:
            self._capture.close()

    async def __aenter__(self) -> Phone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- revocation --------------------------------------------------------------------------------
    def revoked(self) -> frozenset[str]:
        """Identities this phone refuses: the local ``revoked`` set and every verified KMS list held."""
        held = self.settings.keystore.revoked() if self.settings.keystore is not None else frozenset()
        return self.settings.revoked | held

    async def refresh_revocations(self) -> bool:
        """Fetch and verify the KMS's revocation list now; False (and :attr:`revocation_problem`) if refused
        or unreachable — the list held before stays in force."""
        if self.settings.kms is None or self.settings.keystore is None:
            return False
        try:
            await asyncio.to_thread(refresh_revocations, self.settings.keystore, self.settings.kms)
        except (KmsClientError, KeystoreError) as exc:
            self.revocation_problem = str(exc)
            log.warning("revocation list: %s", exc)
            return False
        self.revocation_problem = None
        return True

    async def _revocation_loop(self) -> None:
        while True:
            await self.refresh_revocations()
            await asyncio.sleep(max(self.settings.revocation_refresh_s, 0.1))

    # --- keys --------------------------------------------------------------------------------------
    def _keystore(self) -> Keystore:
        if self.settings.keystore is None:
            raise CallError(f"profile {self.settings.profile.name} needs MIKEY-SAKKE keys: no keystore configured")
        return self.settings.keystore

    def _initiator(self) -> Initiator:
        try:
            return Initiator(self._keystore().current(self.settings.uri).for_mikey())
        except KeystoreError as exc:
            raise CallError(f"no MIKEY-SAKKE keys for {self.settings.uri}: {exc}") from None

    def _mikey_responder(self) -> Responder:
        """One responder for every held key period, sharing the phone's replay cache; rebuilt on refresh."""
        try:
            sets = self._keystore().mikey_key_sets(self.settings.uri)
        except KeystoreError as exc:
            raise CallError(f"no MIKEY-SAKKE keys for {self.settings.uri}: {exc}") from None
        periods = tuple(k.key_period_no for k in sets)
        if self._responder is None or periods != self._responder_periods:
            self._responder = Responder(sets, window_seconds=self.settings.profile.max_clock_skew_s,
                                        replay_cache=self._replay, precompute=True)
            self._responder_periods = periods
            self._prepare_in_background(self._responder)
        return self._responder

    def _prepare_in_background(self, responder: Responder) -> None:
        """Build the SAKKE receiver tables (~0.1-0.2 s of CPU) in a worker thread as soon as the keys are
        loaded, so the first incoming call is verified as fast as later ones."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the first message builds them
            return
        self._prepared = loop.run_in_executor(None, responder.prepare)

    async def keys_ready(self) -> None:
        """Wait until the MIKEY responder's tables are built and the media stack's one-time set-up
        (:func:`~softphone.media.warmup.warm_up`, started by :meth:`start`) is done; at once if there is
        nothing left to do. A first call placed or answered after this does no once-per-process work."""
        for pending, what in ((self._prepared, "SAKKE/ECCSI table build"), (self._media_warmed, "media warm-up")):
            if pending is None:
                continue
            try:
                await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 - a bad key is reported by the verification that needs it
                log.debug("background %s failed", what, exc_info=True)

    async def _gather_ice(self, controlling: bool, rtcp_mux: bool = True) -> tuple[IceAgent, LocalIce] | None:
        """A gathered ICE agent for one call and its SDP attributes, when the account does ICE; answering an
        offer without ``a=rtcp-mux``, candidates for an RTCP component too (``rtcp_mux=False``)."""
        if self.settings.ice is None:
            return None
        agent = IceAgent(self.settings.ice, controlling, components=1 if rtcp_mux else 2)
        try:
            await agent.gather()
            lines = agent.candidate_lines()
            desc = IceDescription(agent.ufrag, agent.pwd, tuple(IceCandidate.parse(x) for x in lines),
                                  end_of_candidates=True, rtcp_mux=rtcp_mux)
            return agent, LocalIce(desc, agent.default_address(), None if rtcp_mux else agent.default_address(2))
        except (IceError, ParseError) as exc:
            await agent.close()
            raise CallError(f"ICE: {exc}") from None

    # --- outgoing ----------------------------------------------------------------------------------
    async def call(self, target: str, source: AudioSource, sink: AudioSink, *, timeout: float = 30.0,
                   headers: list[tuple[str, str]] | None = None) -> Call:
        """Place a call: MIKEY-SAKKE PCK offer (or SDES), wait for the answer, start SRTP media.

        Raises :class:`CallError` with a one-line reason (e.g. ``488 … MIKEY-SAKKE bad signature``).
        A ``target`` for which the keystore holds group keys is a group call (:meth:`group_call`).
        """
        group_keys = self.group_keys(target)
        if group_keys:
            return await self.group_call(target, group_keys, source, sink, timeout=timeout)
        profile = self.settings.profile
        port = reserve_port(self.host)
        initiator = self._initiator() if profile.keying is Keying.MIKEY_SAKKE else None
        offerer = Offerer(profile, self.host, port, target, initiator)
        answerer = Answerer(profile, self.host, port, self._mikey_responder() if initiator else None)
        gathered = await self._gather_ice(controlling=True)
        agent = None
        if gathered is not None:
            agent, offerer.ice = gathered
            answerer.ice = offerer.ice
        try:
            try:
                body = offerer.offer()
            except NegotiationError as exc:
                raise CallError(exc.warning) from None
            except Exception as exc:  # crypto errors from building the I_MESSAGE carry no secrets
                raise CallError(f"cannot build the MIKEY-SAKKE offer: {exc}") from None
            started = time.monotonic()
            try:
                session = await self.ua.invite(target, body, headers=headers)
            except SipError as exc:
                raise CallError(f"cannot send INVITE to {target}: {exc}") from None
        except BaseException:
            if agent is not None:
                await agent.close()
            raise
        call = Call(session, self.host, port, source, sink, self._emit, offerer=offerer, answerer=answerer,
                    trace=self.settings.trace_media, verify=self.verify_offer, dsp=self.settings.dsp(),
                    network=self._network, tap=self._capture, ice_agent=agent)
        call.invite_sent_at = started
        call.on_refer = self._refer_received
        call.emit(Calling(call.call_id, target, profile.security_label))
        ringing = asyncio.get_running_loop().create_task(self._report_ringing(call))
        early = asyncio.get_running_loop().create_task(self._early_media(call, offerer))
        try:
            resp = await session.answered(timeout)
        except CallFailed as exc:
            warning = f" ({exc.warning})" if exc.warning else ""
            if call.ice_agent is not None:
                await call.ice_agent.close()
            call.emit(Failed(call.call_id, exc.reason, exc.status, exc.warning))
            raise CallError(f"call to {target} failed: {exc.status} {exc.reason}{warning}", exc.status) from None
        except TimeoutError:
            await call.hangup()
            raise CallError(f"call to {target} not answered within {timeout:g} s", 408) from None
        except asyncio.CancelledError:  # the user gave up while it rang: CANCEL, then stop
            await asyncio.shield(call.hangup())
            raise
        finally:
            ringing.cancel()
            early.cancel()
        early_body = call.early_body
        try:
            negotiated = (call.negotiated if call.negotiated is not None and resp.body in (b"", early_body)
                          else offerer.apply_answer(resp.body))
            answerer.current = negotiated
        except NegotiationError as exc:
            await call.hangup()
            call.emit(Failed(call.call_id, exc.warning))
            raise CallError(f"unusable answer from {target}: {exc.warning}") from None
        self.calls[call.call_id] = call
        if call.media is None or negotiated is not call.negotiated:
            await call.start_media(negotiated)   # (early media with the same SDP simply continues)
        call.emit(Answered(call.call_id, call.snapshot()))
        asyncio.get_running_loop().create_task(self._forget_when_ended(call))
        return call

    # --- transfer (RFC 3515 REFER, RFC 3891 Replaces) ------------------------------------------------
    async def transfer(self, call: Call, target: str, *, timeout: float = 30.0) -> None:
        """Blind transfer: REFER ``call``'s peer to ``target``; when its NOTIFY says the new call was
        answered (sipfrag 2xx) hang ``call`` up. Raises :class:`CallError` when refused or failed (the
        call stays as it was). The peer keys the new call afresh (its own I_MESSAGE to ``target``)."""
        await self._refer(call, f"<{target}>", target, timeout)

    async def transfer_attended(self, held: Call, current: Call, *, timeout: float = 30.0) -> None:
        """Attended transfer: connect ``held``'s peer with ``current``'s peer, REFER with
        ``Refer-To: <peer?Replaces=…>`` (RFC 3891) naming ``current``'s dialog; the target answers the
        new (freshly keyed) call in place of ``current``, then we hang ``held`` up."""
        dialog = current.session.dialog
        if dialog is None or current.is_ended:
            raise CallError("attended transfer needs the consultation call to be up")
        replaces = f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"
        escaped = replaces.replace("%", "%25").replace(";", "%3B").replace("=", "%3D").replace("@", "%40")
        await self._refer(held, f"<{current.peer}?Replaces={escaped}>", current.peer, timeout)
        if not current.is_ended:
            try:
                await current.ended(5)   # the target ends it as the new call replaces it (RFC 3891 §3)
            except TimeoutError:
                await current.hangup()

    async def _refer(self, call: Call, refer_to: str, target: str, timeout: float) -> None:
        try:
            resp = await call.session.refer(refer_to, referred_by=f"<{self.settings.uri}>", timeout=10)
        except (SipError, TimeoutError) as exc:
            raise CallError(f"transfer to {target}: REFER failed: {exc}") from None
        if resp.status >= 300:
            raise CallError(f"transfer to {target} refused: {resp.status} {resp.reason}")
        call.emit(Transfer(call.call_id, target, "transferor", resp.status, False))
        status: int | None = None
        try:
            async with asyncio.timeout(timeout):
                for _ in range(64):
                    notify = await call.session.notifies.get()
                    status = sipfrag_status(notify.body)
                    final = (notify.headers.get("Subscription-State") or "").lower().startswith("terminated")
                    call.emit(Transfer(call.call_id, target, "transferor", status, final))
                    if final or (status is not None and status >= 200):
                        break
        except TimeoutError:
            raise CallError(f"transfer to {target}: no outcome within {timeout:g} s") from None
        if status is None or not 200 <= status < 300:
            raise CallError(f"transfer to {target} failed: {status}")
        await call.hangup()

    def _refer_received(self, call: Call, req: Request) -> None:
        asyncio.get_running_loop().create_task(self._transferee(call, req))

    async def _transferee(self, call: Call, req: Request) -> None:
        """The peer REFERred us (202 sent): call the Refer-To (with its Replaces), keyed afresh, report
        100 then the outcome by NOTIFY, and move this call's audio to the new call."""
        try:
            refer_to = NameAddr.parse(req.headers.get("Refer-To") or "")
        except SipError:
            await call.session.notify(400, "Bad Refer-To", final=True)
            return
        if not self.settings.accept_transfers or refer_to.uri.scheme not in ("sip", "sips"):
            await call.session.notify(603, "Declined", final=True)
            call.emit(Transfer(call.call_id, str(refer_to.uri), "transferee", 603, True))
            return
        headers: list[tuple[str, str]] = []
        for part in (refer_to.uri.headers or "").split("&"):
            name, _, value = part.partition("=")
            if name.lower() == "replaces" and value:
                headers.append(("Replaces", _unescape(value)))
        target = str(SipUri(refer_to.uri.scheme, refer_to.uri.user, None, refer_to.uri.host, refer_to.uri.port,
                            dict(refer_to.uri.params)))
        await call.session.notify(100, "Trying", final=False)
        call.emit(Transfer(call.call_id, target, "transferee", 100, False))
        source, sink = await call.handover_audio()
        try:
            new = await self.call(target, source, sink, headers=headers)
        except CallError as exc:
            # RFC 5589 §6.1: the transferee keeps the original call; the transferor learns the real outcome
            log.info("transfer call to %s failed: %s", target, exc)
            status = exc.sip_status if exc.sip_status is not None and exc.sip_status >= 300 else 503
            await call.session.notify(status, "Request Timeout" if status == 408 else "Transfer Failed", final=True)
            call.emit(Transfer(call.call_id, target, "transferee", status, True))
            try:
                await call.reclaim_audio()
            except CallError as again:
                log.info("cannot restart the original call's media after the failed transfer: %s", again)
                await call.hangup()
            return
        await call.session.notify(200, "OK", final=True)
        call.emit(Transfer(call.call_id, target, "transferee", 200, True, new.call_id))

    async def _take_over(self, replaced: Call, incoming: IncomingCall) -> None:
        """An INVITE with Replaces for ``replaced`` (attended transfer, we are the target): answer it
        at once with ``replaced``'s audio, then hang ``replaced`` up (RFC 3891 §3)."""
        source, sink = await replaced.handover_audio()
        try:
            new = await incoming.accept(source, sink)
        except CallError as exc:
            log.info("replacing call failed: %s", exc)
            return
        replaced.emit(Transfer(replaced.call_id, new.peer, "target", 200, True, new.call_id))
        await replaced.hangup()

    def active_calls(self) -> list[Call]:
        """The calls that are up (answered, not ended), oldest first."""
        return [c for c in self.calls.values() if not c.is_ended]

    async def hold_all(self, except_call_id: str | None = None) -> list[Call]:
        """Put every call that is up and not held on hold (call waiting, transfer); the calls held."""
        held: list[Call] = []
        for call in self.active_calls():
            if call.call_id == except_call_id or call.held:
                continue
            try:
                await call.hold()
            except CallError as exc:
                log.info("could not hold %s: %s", call.call_id, exc)
                continue
            held.append(call)
        return held

    async def _early_media(self, call: Call, offerer: Offerer) -> None:
        """Start media on the first 183 that carries SDP (RFC 3960 "gateway" model), before the answer."""
        session = call.session
        for _ in range(64):   # provisionals of one INVITE: bounded
            event = await session.events.get()
            msg = event.message
            if event.kind != "provisional" or not isinstance(msg, Response) or msg.status != 183 or not msg.body:
                continue
            try:
                negotiated = offerer.apply_answer(msg.body)
            except NegotiationError as exc:
                log.info("183 with unusable SDP ignored: %s", exc.warning)
                continue
            call.early_body = msg.body
            await call.start_media(negotiated)
            call.emit(EarlyMedia(call.call_id, call.snapshot()))
            return

    def group_keys(self, target: str) -> list[GroupKey]:
        """The GMKs the keystore holds for ``target`` (empty: not a group we are in, or no keystore)."""
        if self.settings.keystore is None:
            return []
        return self.settings.keystore.group_keys(target)

    async def group_call(self, target: str, keys: list[GroupKey], source: AudioSource, sink: AudioSink, *,
                         timeout: float = 30.0) -> GroupCall:
        """Join the group call of ``target`` through its focus: SDP without ``a=key-mgmt``, media keyed
        from the group's active GMK (:mod:`softphone.calls.group`)."""
        profile = self.settings.profile
        try:
            active = active_key(keys, target, time.time())
        except NoActiveGroupKey as exc:
            raise CallError(str(exc)) from None
        own = own_sender_key([active], target, time.time())
        port = reserve_port(self.host)
        started = time.monotonic()
        try:
            session = await self.ua.invite(target, group_offer(self.host, port, profile))
        except SipError as exc:
            raise CallError(f"cannot send INVITE to {target}: {exc}") from None
        call = GroupCall(session, self.host, port, source, sink, self._emit, group_uri=target, keys=list(keys),
                         own=own, gmk_id=active.gmk_id, trace=self.settings.trace_media, dsp=self.settings.dsp(),
                         network=self._network, tap=self._capture)
        call.invite_sent_at = started
        call.emit(Calling(call.call_id, target, f"group call ({PeerAssurance.GROUP_KEYED.value})"))
        try:
            resp = await session.answered(timeout)
        except CallFailed as exc:
            call.emit(Failed(call.call_id, exc.reason, exc.status, exc.warning))
            raise CallError(f"group call to {target} failed: {exc.status} {exc.reason}") from None
        except TimeoutError:
            await call.hangup()
            raise CallError(f"group call to {target} not answered within {timeout:g} s") from None
        except asyncio.CancelledError:
            await asyncio.shield(call.hangup())
            raise
        try:
            negotiated = group_answer(resp.body, profile, own, active.gmk_id)
        except NegotiationError as exc:
            await call.hangup()
            call.emit(Failed(call.call_id, exc.warning))
            raise CallError(f"unusable answer from {target}: {exc.warning}") from None
        self.calls[call.call_id] = call
        await call.start_media(negotiated)
        call.emit(Answered(call.call_id, call.snapshot()))
        asyncio.get_running_loop().create_task(self._forget_when_ended(call))
        return call

    async def _report_ringing(self, call: Call) -> None:
        await call.session.wait_state(CallState.EARLY, timeout=float("inf"))
        call.emit(Ringing(call.call_id))

    async def _forget_when_ended(self, call: Call) -> None:
        await call.ended()
        self.calls.pop(call.call_id, None)

    # --- incoming ----------------------------------------------------------------------------------
    async def next_incoming(self, timeout: float | None = None) -> IncomingCall:
        """The next verified incoming call (already ringing)."""
        return await asyncio.wait_for(self._incoming.get(), timeout)

    async def _accept_loop(self) -> None:
        while True:
            session = await self.ua.incoming.get()
            try:
                await self._screen(session)
            except Exception as exc:  # never leave a caller hanging: answer 500 and keep listening
                log.warning("incoming call %s failed: %s", session.call_id, exc.__class__.__name__)
                if session.state is CallState.INCOMING:
                    try:
                        await session.reject(500, warning="internal error while checking the offer")
                    except SipError:
                        pass

    async def _screen(self, session: InviteSession) -> None:
        """Verify the offer before alerting (488 + Warning on any failure), then ring."""
        received = time.monotonic()
        profile = self.settings.profile
        claimed = claimed_sender(session)
        try:
            responder = self._mikey_responder() if profile.keying is Keying.MIKEY_SAKKE else None
        except CallError as exc:
            await session.reject(500, warning=str(exc))
            return
        answerer = Answerer(profile, self.host, reserve_port(self.host), responder)
        try:
            if responder is not None:
                await self.keys_ready()  # a call in the first instants after start: share the one build
            negotiated = await self.verify_offer(answerer, session.remote_body, claimed)
            revoked = self.revoked()
            if negotiated.peer_identity in revoked or (
                    negotiated.security is SecurityLevel.SDES_INTEROP and claimed in revoked):
                who = negotiated.peer_identity or claimed
                raise NegotiationError(f"MIKEY-SAKKE revoked identity: {who} is revoked")
        except NegotiationError as exc:
            if session.state is CallState.INCOMING:
                await session.reject(exc.status, warning=exc.warning)
            self._emit(Rejected(session.call_id, exc.status, exc.warning, claimed))
            return
        if session.state is not CallState.INCOMING:
            return  # cancelled while we verified
        replaced = self.calls.get(session.replaces.call_id) if session.replaces is not None else None
        if replaced is not None and not replaced.is_ended:
            await self._take_over(replaced, IncomingCall(self, session, answerer, received))
            return
        await session.ring()
        incoming = IncomingCall(self, session, answerer, received)
        self._emit(Incoming(session.call_id, claimed, negotiated.peer_identity, profile.security_label,
                            negotiated.codec.name, negotiated.suite, negotiated.key_id))
        active = self.active_calls()
        if active:  # call waiting: the caller hears ringing (180), the user decides
            self._emit(CallWaiting(session.call_id, negotiated.peer_identity or claimed, active[0].call_id))
        try:
            self._incoming.put_nowait(incoming)
        except asyncio.QueueFull:
            await session.reject(486, warning="too many calls waiting")

    async def verify_offer(self, answerer: Answerer, body: bytes, claimed: str | None) -> Negotiated:
        """Check an (re-)offer in a thread, one I_MESSAGE at a time through the shared replay cache: the one
        path for initial offers and for re-offers carrying a new I_MESSAGE (``Call``'s ``verify``)."""
        async with self._verify_lock:
            return await asyncio.to_thread(answerer.process_offer, body, claimed)

    async def _early_media_answer(self, incoming: IncomingCall, source: AudioSource, sink: AudioSink) -> Call:
        session, answerer = incoming.session, incoming.answerer
        if session.state is not CallState.INCOMING or answerer.current is None or incoming.call is not None:
            raise CallError("the call is not waiting for an answer, or has early media already")
        call = self._incoming_call(incoming, source, sink)
        await call.start_media(answerer.current)
        body = answerer.answer()
        try:
            await session.early_media(body)
        except SipError as exc:
            await call.hangup()
            raise CallError(f"183 failed: {exc}") from None
        incoming.call, incoming.early_body = call, body
        call.early_body = body
        call.emit(EarlyMedia(call.call_id, call.snapshot()))
        return call

    def _incoming_call(self, incoming: IncomingCall, source: AudioSource, sink: AudioSink,
                       agent: IceAgent | None = None) -> Call:
        session, answerer = incoming.session, incoming.answerer
        offerer = None
        if self.settings.profile.keying is Keying.MIKEY_SAKKE:
            offerer = Offerer(self.settings.profile, self.host, answerer.port, claimed_sender(session),
                              self._initiator())
        call = Call(session, self.host, answerer.port, source, sink, self._emit, offerer=offerer,
                    answerer=answerer, trace=self.settings.trace_media, verify=self.verify_offer,
                    dsp=self.settings.dsp(), network=self._network, tap=self._capture, ice_agent=agent)
        if agent is not None and offerer is not None:
            offerer.ice = answerer.ice
        call.invite_sent_at = incoming.received_at
        call.on_refer = self._refer_received
        return call

    async def _accept(self, incoming: IncomingCall, source: AudioSource, sink: AudioSink) -> Call:
        session, answerer = incoming.session, incoming.answerer
        if session.state is not CallState.INCOMING or answerer.current is None:
            raise CallError("the call is no longer waiting for an answer")
        if incoming.call is not None and incoming.early_body is not None:   # early media runs already
            call, body = incoming.call, incoming.early_body
        else:
            agent = None
            if answerer.current.ice is not None:
                gathered = await self._gather_ice(controlling=False, rtcp_mux=answerer.current.ice.rtcp_mux)
                if gathered is not None:
                    agent, answerer.ice = gathered
            call = self._incoming_call(incoming, source, sink, agent)
            if agent is None:
                await call.start_media(answerer.current)
            body = answerer.answer()
        negotiated = answerer.current
        try:
            await session.answer(body, ack_timeout=10)
        except (TimeoutError, SipError) as exc:
            await call.hangup()
            raise CallError(f"answer failed: {exc or 'no ACK'}") from None
        if call.ice_agent is not None and call.media is None:
            try:  # the caller starts its checks only once it has our answer: connect after it
                await call.start_media(negotiated)
            except CallError:
                await call.hangup()
                raise
        self.calls[call.call_id] = call
        call.emit(Answered(call.call_id, call.snapshot()))
        asyncio.get_running_loop().create_task(self._forget_when_ended(call))
        return call


def claimed_sender(session: InviteSession) -> str:
    """The caller's identity as SIP asserts it (P-Asserted-Identity if present, else From), as the
    bare ``sip:user@host`` the MIKEY-SAKKE UID is formed from (TS 33.180 F.2.1)."""
    uri = session.invite.from_.uri
    pai = session.invite.headers.get("P-Asserted-Identity")
    if pai:
        try:
            uri = NameAddr.parse(pai).uri
        except SipError:
            pass
    return f"{uri.scheme}:{uri.user}@{uri.host}" if uri.user else str(uri)


def instance_id(account: Account) -> str:
    """The account's stable ``urn:uuid:`` (RFC 5626 ``+sip.instance``), kept in a file beside its
    keystore (``<keystore>.instance``) or beside the default accounts file; created on first use."""
    import uuid

    path = (account.keystore.with_name(account.keystore.name + ".instance") if account.keystore
            else DEFAULT_CONFIG.parent / f"{account.name}.instance")
    try:
        text = path.read_text().strip()
        if text.startswith("urn:uuid:"):
            uuid.UUID(text[9:])
            return text
    except (OSError, ValueError):
        pass
    value = f"urn:uuid:{uuid.uuid4()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    except OSError as exc:
        log.warning("cannot store the SIP instance id in %s: %s", path, exc.strerror)
    return value


def account_ice(account: Account) -> IceSettings | None:
    """The account's STUN/TURN settings as the media layer's :class:`IceSettings` (None: no ICE)."""
    if not account.ice:
        return None
    turn = account.turn_address()
    try:
        return IceSettings(
            stun_server=account.stun_address(), turn_server=turn[0] if turn else None,
            turn_username=account.turn_username, turn_password=account.turn_password() if turn else None,
            turn_transport=turn[1] if turn else "udp", turn_tls=turn[2] if turn else False,
            turn_ca_file=str(account.ca_file) if account.ca_file else None, policy=IcePolicy(account.ice_policy))
    except IceError as exc:
        raise CallError(f"account {account.name}: {exc}") from None


def check_transport(account: Account, profile: Profile) -> None:
    """Refuse settings under which the phone would advertise a transport it cannot serve.

    The phone's Contact names the profile's transport, so the registrar must be reached over that
    same transport, and a TLS Contact needs a certificate to accept TLS connections (incoming calls).
    Under a Secure Chorus profile registration is over TLS only. :class:`CallError` (one line) otherwise.
    """
    where = f"account {account.name}"
    registrar = account.registrar or account.uri.split("@", 1)[0].split(":", 1)[0] + ":" + account.uri.split("@", 1)[1]
    try:
        uri = SipUri.parse(registrar)
        # a domain without port or transport is located by RFC 3263 among the profile's transport only
        via = profile.transport if uri_transport(uri) is None else uri.transport
    except SipError as exc:
        raise CallError(f"{where}: registrar {registrar!r} is not a SIP URI: {exc}") from None
    if via != profile.transport:
        if profile.secure_chorus:
            raise CallError(f"{where}: profile {profile.name} registers over TLS only, but registrar "
                            f"{registrar} is {via.upper()} (use sips:… or ;transport=tls)")
        raise CallError(f"{where}: registrar {registrar} is {via.upper()} but profile "
                        f"{profile.name} uses {profile.transport.upper()}; make them match")
    if profile.transport == "tls" and (account.tls_cert_file is None or account.tls_key_file is None):
        raise CallError(f"{where}: profile {profile.name} uses TLS, so the phone needs a certificate to "
                        "receive calls: set tls_cert_file and tls_key_file")


def fetch_account_keys(account: Account, keystore: Keystore) -> str | None:
    """Refresh ``keystore`` from the account's KMS (if it names one); the warning when the KMS was
    unreachable but cached keys still serve. :class:`CallError` (one line) when keys cannot be had."""
    if not account.kms_url:
        return None
    try:
        client = KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
        result = refresh(keystore, client, account.uri)
    except (ConfigError, KeysError) as exc:
        raise CallError(str(exc)) from None
    if result.warning:
        log.warning("%s", result.warning)
    return result.warning


def settings_from_account(account: Account, profile_name: str | None = None, *, passphrase: str | None = None,
                          fetch_keys: bool = True) -> PhoneSettings:
    """PhoneSettings for a configured account: UA over the profile's transport to the registrar,
    TLS trust from ``ca_file``, the keystore opened with its passphrase (``passphrase`` overrides the
    account's, e.g. typed into the GUI), keys refreshed from the KMS unless ``fetch_keys`` is false.

    Raises :class:`CallError` (one line) for any configuration, keystore or KMS problem.
    """
    try:
        profile = load_profile(profile_name or account.profile)
    except ProfileError as exc:
        raise CallError(str(exc)) from None
    check_transport(account, profile)
    try:
        tls_client = tls_server = None
        if profile.transport == "tls":
            tls_client = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
            tls_client.minimum_version = (ssl.TLSVersion.TLSv1_3 if profile.tls_min_version == "1.3"
                                          else ssl.TLSVersion.TLSv1_2)
            if not profile.verify_server_certificate:
                tls_client.check_hostname = False
                tls_client.verify_mode = ssl.CERT_NONE
            if account.tls_cert_file is not None:
                tls_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls_server.minimum_version = tls_client.minimum_version
                tls_server.load_cert_chain(account.tls_cert_file, account.tls_key_file)
        ua = UAConfig(aor=account.uri, username=account.username, password=account.password(),
                      proxy=account.registrar, transport=profile.transport, host=account.local_host,
                      tls_server=tls_server, tls_client=tls_client, display_name=account.display_name,
                      nameserver=account.nameserver, instance_id=instance_id(account))
        keystore = kms = None
        if profile.keying is Keying.MIKEY_SAKKE:
            if account.keystore is None:
                raise CallError(f"account {account.name}: profile {profile.name} needs a keystore (keystore = ...)")
            passphrase = passphrase or account.keystore_passphrase()
            if not passphrase:
                raise CallError(f"account {account.name}: no keystore passphrase configured")
            keystore = Keystore.open_or_create(account.keystore, passphrase.encode())
            if fetch_keys:
                fetch_account_keys(account, keystore)
            if account.kms_url:  # the signed revocation list is fetched from here at start and on a schedule
                kms = KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
        return PhoneSettings(uri=account.uri, ua=ua, profile=profile, keystore=keystore, revoked=account.revoked(),
                             kms=kms, audio_processing={"on": True, "off": False}.get(account.audio_processing),
                             ice=account_ice(account))
    except (ConfigError, KeysError) as exc:  # the config's and the keys' roots become call control's
        raise CallError(str(exc)) from None
    except (OSError, ssl.SSLError) as exc:
        raise CallError(f"account {account.name}: TLS files: {exc.strerror or exc}") from None


def _unescape(text: str) -> str:
    """%-decoding of a URI header value (RFC 3261 §19.1.1: Replaces inside Refer-To)."""
    from urllib.parse import unquote
    return unquote(text)
