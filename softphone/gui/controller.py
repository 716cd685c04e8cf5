"""The GUI's bridge to the call core: one :class:`~softphone.calls.phone.Phone`, driven from Qt via asyncio.

The controller owns no call logic of its own — it calls the same ``Phone``/``Call`` API as the CLI
and turns their :mod:`~softphone.calls.events` values into Qt signals. Every coroutine here runs
on the Qt thread's asyncio loop (qasync); blocking work (keystore KDF, KMS HTTPS) goes to threads, so
the window never freezes. Failures become a :attr:`notice` in plain words; nothing raises into Qt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from softphone.calls.call import Call
from softphone.calls.errors import CallError
from softphone.calls.events import (
    CallEvent,
    CallStatus,
    EarlyMedia,
    Ended,
    Failed,
    Held,
    Incoming,
    MediaStarted,
    MembersHeard,
    PeerAssurance,
    PeerSending,
    RegistrationChanged,
    Rejected,
    Rekeyed,
    Resumed,
    Ringing,
    Transfer,
)
from softphone.calls.phone import IncomingCall, Phone, PhoneSettings, settings_from_account
from softphone.config import Account, ConfigError
from softphone.errors import SoftphoneError
from softphone.gui.levels import MeteredSink, MeteredSource
from softphone.gui.messages import MessageCenter, record
from softphone.gui.model import (
    CallHistory,
    CallRecord,
    GuiDataError,
    KeyStatus,
    explain,
    format_duration,
    key_status,
    normalise_uri,
    now_iso,
)
from softphone.keys.keystore import Keystore, KeystoreError
from softphone.keys.kms_client import (
    KmsCertificateChanged,
    KmsClient,
    KmsClientError,
    KmsTrustChanged,
    KmsUnreachable,
    refresh,
)
from softphone.media.audio import AudioError, AudioSink, AudioSource
from softphone.messaging import voice
from softphone.sip.errors import SipError
from softphone.sip.session import CallState

log = logging.getLogger(__name__)

AudioFactory = Callable[[], tuple[AudioSource, AudioSink]]


class PhoneController(QObject):
    """Signals carry strings or typed values (:class:`Incoming`, :class:`CallStatus`, :class:`CallRecord`)."""

    registration = Signal(str, str)   # state ("starting", "registered", "registering", "retrying", "offline",
    #                                   "failed"), detail such as "retrying in 12 s (503 Service Unavailable)"
    keys_changed = Signal(object)     # KeyStatus | None
    notice = Signal(str, str, str)    # level ("info", "warning", "error"), one line for the user, cause
                                      # ("start", "call" or ""): the window clears it when that cause is gone
    state_changed = Signal(str)       # "idle", "calling", "ringing", "incoming", "in-call"
    incoming = Signal(object)         # Incoming: peer, verified_identity, security, codec, srtp, key_id
    call_updated = Signal(object)     # CallStatus (Call.snapshot()) after answer, hold, resume, rekey
    call_ended = Signal(object)       # CallRecord
    no_answer = Signal(str, str)      # URI, why ("is busy", "is offline", …): not answered, offer a voice message

    call_waiting = Signal(object)     # Incoming: a second call rings while a call is up (None: it stopped ringing)
    calls_changed = Signal(object)    # tuple[CallLine, ...]: every call that is up, the current one marked
    transfer_status = Signal(str, str)  # level, words ("Transferred sip:bob@x to sip:carol@x", "Transfer … failed")
    early_media = Signal(object)      # CallStatus: a 183 brought the callee's media before the answer

    def __init__(self, account: Account, history: CallHistory, audio: AudioFactory,
                 profile: str | None = None, call_timeout: float = 30.0) -> None:
        super().__init__()
        self.account = account
        self.history = history
        self.audio_factory = audio
        self.profile_name = profile or account.profile
        self.call_timeout = call_timeout
        self.settings: PhoneSettings | None = None
        self.audio_processing: bool | None = None  # the settings dialog's AEC/NS/AGC switch (None: account's)
        self.keystore: Keystore | None = None
        self.phone: Phone | None = None
        self.call: Call | None = None
        self.pending: IncomingCall | None = None
        self.waiting: IncomingCall | None = None    # call waiting: a second call ringing while one is up
        self._waiting_meta: dict[str, Any] = {}
        self.legs: dict[str, CallLeg] = {}          # every call that is up, oldest first; self.call is current
        self._attended: tuple[str, str] | None = None  # (held, consultation) Call-IDs of an attended transfer
        self._failed_transfers: set[str] = set()       # calls whose transfer failure was already reported
        self._transferred_away: dict[str, CallLeg] = {}  # we are being transferred: the old call, until the new is up
        self.state = "idle"
        self.mic: MeteredSource | None = None
        self.speaker: MeteredSink | None = None
        self.answered_at: float | None = None
        self._passphrase: str | None = None
        self._dial_task: asyncio.Task[None] | None = None
        self._incoming_task: asyncio.Task[None] | None = None
        self._incoming_info: dict[str, Incoming] = {}
        self._last_failure: Failed | None = None
        self._call_meta: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.voicemail_to: str | None = None  # the last unanswered callee ("Leave a voice message")
        self.recording = False
        self._stop_recording = False
        self.kms_problem: str | None = None   # why the last key fetch failed (shown instead of a bare "no keys")
        self.messages = MessageCenter()  # secure messages and voice messages on the running phone's UA
        self.messages.notice.connect(self.notice.emit)
        self.diagnostics: Diagnostics | None = None  # Settings' capture + TLS key log switch (off by default)

    # --- helpers -----------------------------------------------------------------------------------
    @property
    def domain(self) -> str | None:
        return self.account.uri.split("@", 1)[1] if "@" in self.account.uri else None

    def unlock(self, passphrase: str) -> None:
        """Use ``passphrase`` for the keystore (typed in the first-run wizard) instead of asking."""
        self._passphrase = passphrase

    def needs_passphrase(self) -> bool:
        """The keystore is encrypted and the account names no passphrase file/variable: ask the user."""
        return (self.account.keystore is not None and self._passphrase is None
                and self.account.keystore_passphrase_file is None and self.account.keystore_passphrase_env is None)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; an unexpected error becomes a notice, never a crash."""
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except (SoftphoneError, SipError, AudioError) as exc:  # each package's root error: one line for the user
            self._notify("error", str(exc))
        except Exception as exc:  # keep the window alive; the log has the class name only
            log.exception("GUI task failed")
            self._notify("error", f"unexpected error: {exc.__class__.__name__}")

    def _notify(self, level: str, text: str, cause: str = "") -> None:
        self.notice.emit(level, text, cause)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    # --- start, keys, registration -----------------------------------------------------------------
    async def start(self, passphrase: str | None = None) -> bool:
        """Open the keystore, check keys (KMS failures are reported, not fatal), start and register."""
        if passphrase is not None:
            self._passphrase = passphrase
        self.registration.emit("starting", f"starting {self.account.uri}")
        try:
            self.settings = await asyncio.to_thread(settings_from_account, self.account, self.profile_name,
                                                    passphrase=self._passphrase, fetch_keys=False)
        except CallError as exc:
            self.registration.emit("failed", str(exc))
            self._notify("error", str(exc), "start")
            return False
        self.keystore = self.settings.keystore
        await self.fetch_keys(force=False)
        return await self._start_phone()

    async def _start_phone(self) -> bool:
        assert self.settings is not None
        if self.audio_processing is not None:
            self.settings.audio_processing = self.audio_processing
        diag = self.diagnostics
        self.settings.capture, self.settings.keylog = (diag.capture, diag.keylog) if diag else (None, None)
        if diag is None:   # the TLS contexts outlive a phone restart: no key log once the switch is off
            for ctx in (self.settings.ua.tls_client, self.settings.ua.tls_server):
                if ctx is not None and ctx.keylog_filename:
                    ctx.keylog_filename = None  # type: ignore[assignment]
        try:
            phone = Phone(self.settings, on_event=self._on_event)
        except OSError as exc:
            self.registration.emit("failed", f"cannot write the TLS key log: {exc.strerror or exc}")
            self._notify("error", f"Cannot write the TLS key log {diag.keylog if diag else ''}: "
                                  f"{exc.strerror or exc}", "start")
            return False
        try:
            await phone.start()
        except CallError as exc:
            self.registration.emit("offline", f"secure calls unavailable: {exc}")
            self._notify("error", self.kms_problem or f"Secure calls unavailable: {exc}")
            await phone.close()
            return False
        except OSError as exc:
            self.registration.emit("failed", f"network: {exc.strerror or exc}")
            return False
        self.phone = phone
        try:
            await self.messages.attach(phone, self.account, self._passphrase)   # before REGISTER: msilo dumps
        except (SoftphoneError, OSError) as exc:
            self._notify("error", f"Messages unavailable: {exc}")
        if diag is not None:
            self._notify("warning", f"Recording this phone's traffic to {diag.capture} and its TLS keys to "
                                    f"{diag.keylog}: these files hold secrets (turn off in Settings)")
        self._incoming_task = self.spawn(self._incoming_loop())
        try:
            expires = await phone.register()
        except (TimeoutError, SipError, OSError) as exc:
            if phone.registration.retry_at is not None:   # the phone keeps retrying with backoff
                self.registration.emit("retrying", phone.registration_text())
            else:
                self.registration.emit("failed", f"registration failed: {exc or 'timeout'}")
            self._notify("error", f"Registration failed: {exc or 'timeout'} — incoming calls may not reach you")
            return True
        self.registration.emit("registered", f"registered as {self.account.uri} ({expires} s)")
        return True

    def revocation_status(self) -> str:
        """The KMS revocation list this phone enforces, in one line (for Settings)."""
        if self.keystore is None:
            return "none (this profile uses no KMS keys)"
        lists = [rl for rl in (self.keystore.revocation_list(c.kms_uri) for c in self.keystore.certificates()) if rl]
        problem = self.phone.revocation_problem if self.phone is not None else None
        if not lists:
            return f"not fetched yet{f' ({problem})' if problem else ''}"
        rl = max(lists, key=lambda r: r.issued)
        text = f"{len(self.keystore.revoked())} revoked, list issued {rl.issued:%d %b %H:%M} UTC by {rl.kms_uri}"
        return text + (f"; last refresh failed: {problem}" if problem else "")

    def current_keys(self) -> KeyStatus | None:
        if self.keystore is None:
            return None
        return key_status(self.keystore.list(), self.account.uri)

    async def fetch_keys(self, force: bool = True) -> None:
        """Refresh keys from the KMS (``force``: even if the next period is held) and report the outcome."""
        if self.keystore is None:
            self._notify("warning", "this profile uses no KMS keys" if self.settings else "not started yet")
            return
        if not self.account.kms_url:
            self.keys_changed.emit(self.current_keys())
            if force:
                self._notify("warning", "no KMS URL configured for this account")
            return
        url = self.account.kms_url
        self.kms_problem = None
        try:
            client = KmsClient(url, self.account.kms_token() or "", cafile=self.account.kms_ca_file)
            result = await asyncio.to_thread(refresh, self.keystore, client, self.account.uri, force=force)
        except KmsTrustChanged as exc:
            what = "security certificate" if isinstance(exc, KmsCertificateChanged) else "set of community keys"
            self.kms_problem = (f"Warning: the KMS at {url} presented a different {what} from the one this phone "
                                "trusted when it first fetched keys. Nothing was replaced: this phone keeps its "
                                "trusted keys. This can be an attack. Only if your administrator confirms the KMS "
                                "was changed, accept it with 'softphone keys trust'.")
            self._notify("error", self.kms_problem)
        except KmsUnreachable as exc:
            self.kms_problem = (f"Cannot reach the KMS at {url} ({exc}) — no keys for this period, "
                                "secure calls are unavailable")
            self._notify("error", self.kms_problem)
        except KmsClientError as exc:
            text = "the KMS refused this phone (revoked or wrong token)" if exc.status in (401, 403) else str(exc)
            self.kms_problem = f"KMS {url}: {text}"
            self._notify("error", self.kms_problem)
        except (ConfigError, KeystoreError) as exc:
            self._notify("error", str(exc))
        else:
            if result.warning:
                self._notify("warning", f"Cannot reach the KMS at {url} — {result.warning.rsplit('; ', 1)[-1]}")
            elif result.fetched:
                self._notify("info", "fetched keys for period " + ", ".join(map(str, result.fetched)))
            elif force:
                self._notify("info", "keys are up to date")
        self.keys_changed.emit(self.current_keys())
        if self.phone is None and self.settings is not None and self.state == "idle" and force:
            await self._start_phone()  # keys may now exist: secure calls become available

    async def change_profile(self, name: str) -> None:
        """Switch profile (restarts the phone; not during a call)."""
        if self.call is not None or self.pending is not None:
            self._notify("warning", "finish the call before changing the profile")
            return
        self.profile_name = name
        await self.stop()
        await self.start()

    async def set_diagnostics(self, diagnostics: Diagnostics | None) -> None:
        """Turn the capture + TLS key log on (``diagnostics``) or off; restarts the phone (not during a call).

        The phone opens both files when it starts (mode 0600) and writes every call until it stops.
        """
        if diagnostics == self.diagnostics:
            return
        if self.call is not None or self.pending is not None or self.state != "idle":
            self._notify("warning", "finish the call before turning the capture on or off")
            return
        if diagnostics is not None:
            for what, path in (("capture", diagnostics.capture), ("TLS key log", diagnostics.keylog)):
                problem = unwritable(path)
                if problem:
                    self._notify("error", f"Cannot write the {what} {path}: {problem} — capture stays off")
                    return
        self.diagnostics = diagnostics
        if self.settings is None:   # not started yet: start() applies it
            return
        await self.stop()
        await self.start()
        if diagnostics is None:
            self._notify("info", "capture and TLS key log are off")

    async def stop(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self.messages.detach()
        if self.phone is not None:
            phone, self.phone = self.phone, None
            try:
                await asyncio.wait_for(phone.close(), 5)
            except (TimeoutError, SipError, OSError):
                pass
        self.call = self.pending = self.waiting = None
        self.legs.clear()
        self._transferred_away.clear()
        self.registration.emit("offline", "stopped")

    # --- events from the phone ---------------------------------------------------------------------
    def _is_current(self, ev: CallEvent) -> bool:
        return self.call is not None and ev.call_id == self.call.call_id

    def call_lines(self) -> tuple[CallLine, ...]:
        """Every call that is up, oldest first, in words (for the calls list)."""
        return tuple(CallLine(leg.call.call_id, leg.call.snapshot(), leg.call is self.call, leg.call.held)
                     for leg in self.legs.values() if not leg.call.is_ended)

    def _calls_changed(self) -> None:
        self.calls_changed.emit(self.call_lines())

    def _on_event(self, ev: CallEvent) -> None:
        match ev:
            case RegistrationChanged():
                self.registration.emit(ev.state, ev.text)   # retries and re-registrations after start
            case Incoming():
                self._incoming_info[ev.call_id] = ev
            case Rejected(peer=str(peer)):
                # refused by our own checks before alerting (488 + Warning), or declined by us
                if ev.status in (488, 500):
                    text = explain(ev.status, ev.warning, incoming=True)
                    self._notify("error", f"Call from {peer}: {text}", "call")
                    self._record(CallRecord(now_iso(), "incoming", peer, None, None, "refused", 0.0, text))
            case Failed():
                self._last_failure = ev
            case Ringing() if self.state == "calling":
                self._set_state("ringing")
            case EarlyMedia() if self.call is None and self.state in ("calling", "ringing"):
                self.early_media.emit(ev.status)   # our own outgoing call: media before the answer
            case Held() | Resumed() | Rekeyed() | MediaStarted() | PeerSending() | MembersHeard() \
                    if ev.call_id in self.legs:
                if self._is_current(ev):
                    assert self.call is not None
                    self.call_updated.emit(self.call.snapshot())
                    if isinstance(ev, Rekeyed):
                        self._notify("info", f"new call key {ev.status.key_id}")
                self._calls_changed()
            case Transfer() if ev.call_id in self.legs or ev.call_id in self._transferred_away:
                self._transfer_event(ev)
            case Ended() if ev.call_id in self.legs:
                self._ended(ev)

    def _pending_info(self) -> Incoming:
        """What the phone reported about the incoming call now (or last) alerting."""
        info = self._call_meta.get("info")
        return info if isinstance(info, Incoming) else Incoming("", None, None, "")

    def _record(self, record: CallRecord) -> None:
        try:
            self.history.add(record)
        except OSError as exc:
            self._notify("warning", f"cannot save call history: {exc.strerror or exc}")
        self.call_ended.emit(record)

    def _ended(self, ev: Ended) -> None:
        leg = self.legs.pop(ev.call_id)
        was_current = leg.call is self.call
        duration = time.monotonic() - leg.answered_at
        verified = ev.status.verified_identity if ev.status.peer_assurance == PeerAssurance.VERIFIED_BY_ECCSI \
            else None  # an outgoing call's callee signed nothing: keyed to, never verified
        self._record(CallRecord(leg.started, leg.direction, leg.call.peer, verified, ev.status.security, "answered",
                                round(duration, 1), leg.transferred or ev.reason))
        ended = (f"{leg.transferred} — your call ended, {format_duration(duration)}" if leg.transferred else
                 f"Transfer failed: {leg.transfer_failure} — the call ended ({ev.reason or 'hung up'}), "
                 f"{format_duration(duration)}" if leg.transfer_failure else
                 f"call ended ({ev.reason or 'hung up'}), {format_duration(duration)}")
        if self.legs:   # another call is still up (call waiting, transfer)
            if was_current:
                self._make_current(next(reversed(self.legs.values())))
                assert self.call is not None
                other = self.call.peer
                ended = (f"{ended}; {other} is on hold — Resume to talk" if self.call.held
                         else f"{ended}; back to the call with {other}")
            self._notify("info", f"Call with {leg.call.peer}: {ended}" if not leg.transferred else ended, "call")
            self._calls_changed()
            return
        self.call = None
        self.answered_at = None
        self._notify("error" if leg.transfer_failure else "info", ended, "call")
        self._calls_changed()
        if self.waiting is not None:   # the waiting call rings on as an ordinary incoming call
            incoming, self.waiting = self.waiting, None
            self.call_waiting.emit(None)
            self.pending, self._call_meta = incoming, self._waiting_meta
            self._set_state("incoming")
            self.incoming.emit(self._pending_info())
            self.spawn(self._watch_pending(incoming))
            return
        self._set_state("idle")

    def _make_current(self, leg: CallLeg) -> None:
        self.call, self.mic, self.speaker, self.answered_at = leg.call, leg.mic, leg.speaker, leg.answered_at
        self.call_updated.emit(leg.call.snapshot())

    # --- outgoing ----------------------------------------------------------------------------------
    def _audio(self) -> tuple[AudioSource, AudioSink]:
        source, sink = self.audio_factory()
        self.mic, self.speaker = MeteredSource(source), MeteredSink(sink)
        return self.mic, self.speaker

    def dial(self, text: str) -> None:
        """Place a call to what the user typed (name@domain, user or sip: URI)."""
        if self.phone is None:
            self._notify("error", "The phone is not ready: " + ("no keys for this period — fetch keys in Settings"
                                                                   if self.keystore is not None else "not started"))
            return
        if self.state != "idle":
            self._notify("warning", "already in a call")
            return
        try:
            uri = normalise_uri(text, self.domain)
        except GuiDataError as exc:
            self._notify("error", str(exc))
            return
        self._dial_task = self.spawn(self._dial(uri))

    async def _dial(self, uri: str) -> None:
        assert self.phone is not None
        self._set_state("calling")
        self._last_failure = None
        started = now_iso()
        try:
            source, sink = self._audio()
        except AudioError as exc:
            self._set_state("idle")
            self._notify("error", f"audio: {exc}", "call")
            return
        try:
            call = await self.phone.call(uri, source, sink, timeout=self.call_timeout)
        except asyncio.CancelledError:
            self._record(CallRecord(started, "outgoing", uri, None, None, "cancelled"))
            self._set_state("idle")
            raise
        except CallError as exc:
            f = self._last_failure
            text = explain(f.status, f.warning, incoming=False) if f is not None and f.status else str(exc)
            self._record(CallRecord(started, "outgoing", uri, None, None, "failed", 0.0, text))
            self._notify("error", f"Call to {uri}: {text}", "call")
            self._set_state("idle")
            source.close()
            sink.close()
            if voice.unanswered(f.status if f is not None else None, str(exc)):
                self.voicemail_to = uri
                status = f.status if f is not None else None
                self.no_answer.emit(uri, {404: "is offline", 486: "is busy", 603: "declined the call",
                                          480: "is unavailable"}.get(status or 0, "did not answer"))
            return
        self._connected(call, started, "outgoing")

    async def leave_voice_message(self, uri: str, seconds: float = voice.MAX_SECONDS) -> bool:
        """Record up to ``seconds`` from the microphone (the audio factory's source: a WAV in tests) until
        :meth:`stop_recording` or the source ends, then send it to ``uri`` as a protected voice message."""
        if self.recording:
            return False
        try:
            source, sink = self.audio_factory()
        except (AudioError, OSError) as exc:
            self._notify("error", f"audio: {exc}")
            return False
        sink.close()
        self.recording, self._stop_recording = True, False
        try:
            pcm = await record(source, min(seconds, voice.MAX_SECONDS), lambda: self._stop_recording)
        finally:
            self.recording = False
        if len(pcm) == 0:
            self._notify("error", f"Voice message to {uri} not sent: nothing was recorded")
            return False
        sent = await self.messages.send_voice(uri, pcm)
        if sent is not None and self.voicemail_to == uri:
            self.voicemail_to = None
        return sent is not None

    def stop_recording(self) -> None:
        self._stop_recording = True

    def _connected(self, call: Call, started: str, direction: str) -> None:
        leg = CallLeg(call, started, direction, time.monotonic(), self.mic, self.speaker)
        self.legs[call.call_id] = leg
        self._call_meta = {"started": started, "direction": direction}
        self._make_current(leg)
        self._set_state("in-call")
        self._calls_changed()

    # --- incoming ----------------------------------------------------------------------------------
    async def _incoming_loop(self) -> None:
        assert self.phone is not None
        while True:
            incoming = await self.phone.next_incoming()
            info = self._incoming_info.pop(incoming.session.call_id, None)
            if info is None:
                info = Incoming(incoming.session.call_id, incoming.peer_identity, None, incoming.security)
            elif info.peer is None:
                info = replace(info, peer=incoming.peer_identity)
            if self.state == "in-call" and self.legs and self.waiting is None:
                self.waiting = incoming   # call waiting: it rings at the caller (180), the user decides
                self._waiting_meta = {"started": now_iso(), "direction": "incoming", "info": info}
                self.call_waiting.emit(info)
                self.spawn(self._watch_waiting(incoming))
                continue
            if self.state != "idle":
                await incoming.reject(486, warning="busy in another call")
                continue
            self.pending = incoming
            self._call_meta = {"started": now_iso(), "direction": "incoming", "info": info}
            self._set_state("incoming")
            self.incoming.emit(info)
            self.spawn(self._watch_pending(incoming))

    async def _watch_pending(self, incoming: IncomingCall) -> None:
        """The caller gave up before we answered: a missed call."""
        await incoming.session.wait_state(CallState.TERMINATED, timeout=float("inf"))
        if self.pending is incoming:
            self.pending = None
            info = self._pending_info()
            self._record(CallRecord(self._call_meta["started"], "incoming", info.peer or "",
                                    info.verified_identity, info.security, "missed"))
            self._notify("warning", f"missed call from {info.verified_identity or info.peer}", "call")
            self._set_state("idle")

    async def _watch_waiting(self, incoming: IncomingCall) -> None:
        """The waiting caller gave up before we answered: a missed call (the current call goes on)."""
        await incoming.session.wait_state(CallState.TERMINATED, timeout=float("inf"))
        if self.waiting is incoming:
            self.waiting = None
            self.call_waiting.emit(None)
            info = self._waiting_meta["info"]
            self._record(CallRecord(self._waiting_meta["started"], "incoming", info.peer or "",
                                    info.verified_identity, info.security, "missed"))
            self._notify("warning", f"missed call from {info.verified_identity or info.peer}", "call")

    def answer_waiting(self) -> None:
        """Answer the waiting call; the call in progress is put on hold first."""
        if self.waiting is not None:
            incoming, self.waiting = self.waiting, None
            self.call_waiting.emit(None)
            self.spawn(self._answer_waiting(incoming))

    async def _answer_waiting(self, incoming: IncomingCall) -> None:
        previous = self.mic, self.speaker
        try:
            source, sink = self._audio()
        except AudioError as exc:
            self.mic, self.speaker = previous
            await incoming.reject(480, warning="callee's audio device failed")
            self._notify("error", f"audio: {exc}", "call")
            return
        try:
            call = await incoming.accept(source, sink, hold_others=True)
        except CallError as exc:
            self.mic, self.speaker = previous
            source.close()
            sink.close()
            self._notify("error", f"could not answer: {exc}", "call")
            return
        self._connected(call, self._waiting_meta.get("started", now_iso()), "incoming")

    def decline_waiting(self) -> None:
        """Refuse the waiting call as busy (486); the call in progress goes on."""
        incoming, self.waiting = self.waiting, None
        if incoming is None:
            return
        self.call_waiting.emit(None)
        info = self._waiting_meta["info"]
        self._record(CallRecord(self._waiting_meta.get("started", now_iso()), "incoming", info.peer or "",
                                info.verified_identity, info.security, "declined"))
        self.spawn(incoming.reject(486))

    def accept(self) -> None:
        if self.pending is not None:
            self.spawn(self._accept(self.pending))

    async def _accept(self, incoming: IncomingCall) -> None:
        self.pending = None
        try:
            source, sink = self._audio()
        except AudioError as exc:
            await incoming.reject(480, warning="callee's audio device failed")
            self._notify("error", f"audio: {exc}", "call")
            self._set_state("idle")
            return
        try:
            call = await incoming.accept(source, sink)
        except CallError as exc:
            self._notify("error", f"could not answer: {exc}", "call")
            self._set_state("idle")
            return
        self._connected(call, self._call_meta.get("started", now_iso()), "incoming")

    def decline(self) -> None:
        incoming, self.pending = self.pending, None
        if incoming is None:
            return
        info = self._pending_info()
        self._record(CallRecord(self._call_meta.get("started", now_iso()), "incoming", info.peer or "",
                                info.verified_identity, info.security, "declined"))
        self._set_state("idle")
        self.spawn(incoming.reject(603))

    # --- in call -----------------------------------------------------------------------------------
    def hangup(self) -> None:
        if self.call is not None:
            self.spawn(self.call.hangup())
        elif self.state in ("calling", "ringing") and self._dial_task is not None:
            self._dial_task.cancel()
        elif self.pending is not None:
            self.decline()

    def toggle_hold(self) -> None:
        if self.call is not None:
            call = self.call
            if call.held:
                self.switch_to(call.call_id)   # resuming one call holds the others
            else:
                self.spawn(call.hold())

    def switch_to(self, call_id: str) -> None:
        """Talk on ``call_id``: hold every other call, resume it if held, make it the current call."""
        leg = self.legs.get(call_id)
        if leg is not None and self.phone is not None:
            self.spawn(self._switch_to(leg))

    async def _switch_to(self, leg: CallLeg) -> None:
        assert self.phone is not None
        await self.phone.hold_all(except_call_id=leg.call.call_id)
        if leg.call.held:
            await leg.call.resume()
        if not leg.call.is_ended:
            self._make_current(leg)
        self._calls_changed()

    def hangup_call(self, call_id: str) -> None:
        """Hang up one call of several (the calls list's button)."""
        leg = self.legs.get(call_id)
        if leg is not None:
            self.spawn(leg.call.hangup())

    # --- transfer ----------------------------------------------------------------------------------
    def held_call(self) -> Call | None:
        """The other call, on hold, that an attended transfer would connect with the current one."""
        return next((leg.call for leg in self.legs.values()
                     if leg.call is not self.call and leg.call.held and not leg.call.is_ended), None)

    def transfer(self, text: str) -> None:
        """Blind transfer: ask the current call's peer to call ``text`` (REFER); our call ends when it did."""
        if self.call is None or self.phone is None:
            return
        try:
            uri = normalise_uri(text, self.domain)
        except GuiDataError as exc:
            self.transfer_status.emit("error", f"Transfer failed: {exc}")
            return
        self.spawn(self._transfer(self.call, uri))

    async def _transfer(self, call: Call, uri: str) -> None:
        assert self.phone is not None
        self.transfer_status.emit("info", f"Transferring {call.peer} to {uri}…")
        try:
            await self.phone.transfer(call, uri)
        except CallError as exc:
            if call.call_id not in self._failed_transfers:   # (a NOTIFY's failure was reported already)
                self.transfer_status.emit("error", f"Transfer failed: {exc}")
        finally:
            self._failed_transfers.discard(call.call_id)

    def transfer_attended(self) -> None:
        """Attended transfer: connect the held call's peer with the current call's peer (REFER with Replaces)."""
        held, current = self.held_call(), self.call
        if held is None or current is None or self.phone is None:
            self.transfer_status.emit("warning", "An attended transfer needs a call on hold and a call in progress")
            return
        self.spawn(self._transfer_attended(held, current))

    async def _transfer_attended(self, held: Call, current: Call) -> None:
        assert self.phone is not None
        self._attended = (held.call_id, current.call_id)
        self.transfer_status.emit("info", f"Connecting {held.peer} with {current.peer}…")
        try:
            await self.phone.transfer_attended(held, current)
        except CallError as exc:
            if held.call_id not in self._failed_transfers:
                self.transfer_status.emit("error", f"Transfer failed: {exc}")
        finally:
            self._attended = None
            self._failed_transfers.discard(held.call_id)

    def _transfer_event(self, ev: Transfer) -> None:
        """A REFER's progress on one of our calls, in words; a call that replaces ours becomes current."""
        leg = self.legs.get(ev.call_id) or self._transferred_away[ev.call_id]   # (its BYE may come first)
        peer, ok = leg.call.peer, ev.status is not None and 200 <= ev.status < 300
        if ev.role == "transferor":
            if ev.status == 202 and not ev.final:
                self.transfer_status.emit("info", f"Transfer: {peer} accepted, calling {ev.target}…")
            elif ok and (ev.final or ev.status != 202):
                text = f"Transferred {peer} to {ev.target}"
                if self._attended is not None and ev.call_id == self._attended[0]:
                    text = f"Transferred {peer} to {ev.target} (connected them)"
                    for call_id in self._attended:
                        if call_id in self.legs:
                            self.legs[call_id].transferred = text
                leg.transferred = text
                self.transfer_status.emit("info", text)
            elif ev.status is not None and ev.status >= 300 or (ev.final and not ok):
                leg.transfer_failure = f"{ev.status} {_reason(ev.status)} ({ev.target})"
                self._failed_transfers.add(ev.call_id)
                self.transfer_status.emit("error", f"Transfer failed: {leg.transfer_failure}")
            elif ev.status is not None:
                self.transfer_status.emit("info", f"Transfer to {ev.target}: {_reason(ev.status)}…")
            return
        if not ev.final:   # transferee: the peer asked us to call ev.target
            self._transferred_away[ev.call_id] = leg
            self.transfer_status.emit("info", f"{peer} is transferring you to {ev.target} — calling it, "
                                              "with new keys…")
            return
        self._transferred_away.pop(ev.call_id, None)
        new = self.phone.calls.get(ev.new_call_id) if ok and ev.new_call_id and self.phone is not None else None
        if new is None or new.is_ended:
            self.transfer_status.emit("error", f"Transfer by {peer} to {ev.target} failed "
                                               f"({ev.status} {_reason(ev.status)})")
            return
        words = (f"Transferred by {peer}: now in a call with {new.peer}, keyed afresh" if ev.role == "transferee"
                 else f"{new.peer} took over your call with {peer} (attended transfer), keyed afresh")
        if new.call_id not in self.legs:
            direction = "outgoing" if ev.role == "transferee" else "incoming"
            adopted = CallLeg(new, now_iso(), direction, time.monotonic(), leg.mic, leg.speaker)
            self.legs[new.call_id] = adopted
            self._make_current(adopted)
            self._set_state("in-call")
        self.transfer_status.emit("info", words)
        self._calls_changed()

    def toggle_mute(self) -> bool:
        if self.mic is None:
            return False
        self.mic.muted = not self.mic.muted
        return self.mic.muted

    def dtmf(self, digits: str) -> None:
        if self.call is None:
            return
        try:
            self.call.send_dtmf(digits)
        except CallError as exc:
            self._notify("error", str(exc))

    def status(self) -> dict[str, Any]:
        """The live call status plus duration (for the in-call view's timer)."""
        if self.call is None:
            return {}
        out = self.call.status()
        out["duration_s"] = time.monotonic() - self.answered_at if self.answered_at else 0.0
        out["muted"] = bool(self.mic and self.mic.muted)
        return out



@dataclass
class CallLeg:
    """One call that is up, with what its history record and meters need."""

    call: Call
    started: str                     # ISO 8601 (the history record's time)
    direction: str                   # "outgoing" | "incoming"
    answered_at: float               # monotonic
    mic: MeteredSource | None
    speaker: MeteredSink | None
    transferred: str | None = None   # "Transferred sip:bob@x to sip:carol@x": the call ended by our transfer
    transfer_failure: str | None = None  # the last failed transfer's status in words


@dataclass(frozen=True)
class CallLine:
    """One row of the calls list: a call that is up, whether it is the current one and on hold."""

    call_id: str
    status: CallStatus
    current: bool
    held: bool


def _reason(status: int | None) -> str:
    """A transfer's sipfrag status in words ("busy", "no answer", …)."""
    if status is None:
        return "no outcome"
    return {100: "trying", 180: "ringing", 183: "ringing", 200: "answered", 202: "accepted"}.get(
        status, explain(status, None, incoming=False).lower())


@dataclass(frozen=True)
class Diagnostics:
    """Where the phone writes its own pcap capture (``--capture``) and TLS key log (``--keylog``)."""

    capture: Path
    keylog: Path


DIAGNOSTICS_WARNING = (
    "Warning: these files hold secrets. The TLS key log decrypts this phone's signalling, including the "
    "MIKEY-SAKKE key offers; with your KMS key files (the KMS XML) anyone holding the capture can decrypt "
    "the calls' media and listen to them. They are written readable by you only (mode 0600). Turn this on "
    "only to analyse calls ('softphone analyze'), delete the files afterwards and never share them with "
    "anyone you would not let listen to your calls. The switch is off again when the app restarts.")


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be created or overwritten (None: it can)."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return "is a directory"
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def default_data_dir() -> Path:
    """Where contacts and call history live (``$XDG_DATA_HOME/softphone``)."""
    return Path(os.environ.get("XDG_DATA_HOME", "~/.local/share")).expanduser() / "softphone"
