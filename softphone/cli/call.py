"""``softphone register|call|answer``: secure calls from the command line.

Audio comes from the default microphone and goes to the default speaker unless ``--play WAV`` /
``--record WAV`` are given (headless use). ``--json`` prints one JSON object per event (line
buffered) for scripts; otherwise progress lines and, on a terminal, a live status line with keys:
``h`` hold/resume, ``r`` rekey, ``0-9*#ABCD`` DTMF, ``t URI`` transfer, ``w``/``x``/``s`` answer, refuse or
swap a waiting call, ``a`` attended transfer of the held call to the current one, ``q`` hang up (each + Enter).
``call --voicemail-on-no-answer WAV``: when the callee is offline, busy, declines or does not answer,
the recording goes to them as an end-to-end encrypted voice message instead (exit 0 once sent).
Exit status (docs/USER-GUIDE.md, "Exit codes"): 0 done, 1 the call or registration failed or was
refused (or the KMS failed), 2 usage/configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from softphone.calls.call import Call
from softphone.calls.errors import CallError
from softphone.calls.events import (
    Answered,
    CallEvent,
    Calling,
    Dtmf,
    EarlyMedia,
    Ended,
    Failed,
    Held,
    Incoming,
    MembersHeard,
    PeerSending,
    RegistrationChanged,
    Rejected,
    Rekeyed,
    Resumed,
    Ringing,
    Transfer,
    describe_peer,
)
from softphone.calls.phone import (
    IncomingCall,
    Phone,
    PhoneSettings,
    claimed_sender,
    fetch_account_keys,
    settings_from_account,
)
from softphone.cli import CliError, configured_account, user_errors
from softphone.cli.message import _store
from softphone.keys.kms_client import KmsClient
from softphone.media.audio import (
    AudioError,
    AudioSink,
    AudioSource,
    SoundDeviceSink,
    SoundDeviceSource,
    WavSink,
    WavSource,
    read_wav,
)
from softphone.messaging import voice
from softphone.messaging.messenger import Messenger, SendFailed
from softphone.messaging.secure import SealError
from softphone.sip.session import CallState

STATUS_KEYS = "h=hold/resume r=rekey 0-9*# DTMF t URI=transfer w/x/s=call waiting a=attended q=hang up"


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml)")
    common.add_argument("--account", help="account name or URI")
    common.add_argument("--profile", help="profile name or .toml path (default: the account's)")
    common.add_argument("--json", action="store_true", help="print events as JSON lines")
    audio = argparse.ArgumentParser(add_help=False)
    audio.add_argument("--play", type=Path, help="send this WAV file instead of the microphone")
    audio.add_argument("--record", type=Path, help="write received audio to this WAV file instead of the speaker")
    audio.add_argument("--duration", type=float, help="hang up after this many seconds of call")
    audio.add_argument("--keylog", type=Path, metavar="FILE",
                       help="write the TLS session keys here (SSLKEYLOGFILE format, for 'softphone analyze'); "
                            "the file holds secrets")
    audio.add_argument("--capture", type=Path, metavar="FILE",
                       help="write this phone's own SIP and media here as pcap (no root needed); "
                            "the file holds secrets")

    p = subparsers.add_parser("register", parents=[common], help="register the account with its registrar")
    once = p.add_mutually_exclusive_group()
    once.add_argument("--once", action="store_true", help="register, then unregister at once (a check)")
    once.add_argument("--stay", type=float, default=0.0,
                      help="stay registered this many seconds, then unregister (default: until Ctrl-C)")
    p.set_defaults(func=cmd_register)
    p = subparsers.add_parser("call", parents=[common, audio], help="place a secure call")
    p.add_argument("uri", help="whom to call, e.g. sip:bob@example.org")
    p.add_argument("--timeout", type=float, default=30.0, help="give up if unanswered after this many seconds")
    p.add_argument("--voicemail-on-no-answer", type=Path, metavar="WAV",
                   help="if the call is not answered (offline, busy, declined, timeout), send this recording "
                        f"(at most {voice.MAX_SECONDS:g} s) as an end-to-end encrypted voice message instead")
    p.set_defaults(func=cmd_call)
    p = subparsers.add_parser("answer", parents=[common, audio], help="wait for a call and answer it")
    p.add_argument("--auto", action="store_true", help="answer at once (otherwise press Enter to answer)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up if no call arrives in this many seconds")
    p.set_defaults(func=cmd_answer)


# --- helpers ---------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> PhoneSettings:
    """The phone's settings: configuration problems exit 2, a failed key fetch from the KMS exits 1."""
    account = configured_account(args.config, args.account, code=2)
    with user_errors(2):
        settings = settings_from_account(account, args.profile, fetch_keys=False)
    if settings.keystore is not None:
        with user_errors(1):
            warning = fetch_account_keys(account, settings.keystore)
        if warning:
            print(f"softphone: warning: {warning}", file=sys.stderr)
    return settings


def _writable(path: Path, option: str = "--record") -> None:
    """Refuse an output path (``--record`` and the like) that cannot be written, before anything is dialled."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(f"{option} {path}: is a directory", 2)
    if not parent.is_dir():
        raise CliError(f"{option} {path}: directory {parent} does not exist", 2)
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"{option} {path}: not writable", 2)


def _audio(args: argparse.Namespace) -> tuple[AudioSource, AudioSink]:
    """The call's audio ends, checked before dialling: WAV files, or the default sound devices."""
    hint = "; use --play WAV and --record WAV instead, or list devices with 'softphone devices'"
    if args.record:
        _writable(args.record)
    try:
        source: AudioSource = WavSource(args.play) if args.play else SoundDeviceSource()
    except OSError as exc:
        raise CliError(f"audio: cannot read --play {args.play}: {exc.strerror or exc}", 2) from None
    except AudioError as exc:
        if args.play:
            raise CliError(f"audio: --play {args.play}: {exc}", 2) from None
        raise CliError(f"audio: no usable microphone ({exc}){hint}", 2) from None
    try:
        sink: AudioSink = WavSink(args.record) if args.record else SoundDeviceSink()
    except AudioError as exc:
        source.close()
        raise CliError(f"audio: no usable speaker ({exc}){hint}", 2) from None
    return source, sink


class Printer:
    """Events as JSON lines (``--json``) or as short human lines plus a live status line."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stdout.isatty() and not as_json
        self.registration = ""   # the latest registration text, shown in the status line
        self.failure: Failed | None = None   # the last call failure (its SIP status decides on a voice message)

    def event(self, ev: CallEvent) -> None:
        if isinstance(ev, RegistrationChanged):
            self.registration = ev.text
        if isinstance(ev, Failed):
            self.failure = ev
        if self.as_json:
            print(json.dumps(ev.to_json(), default=str), flush=True)
            return
        text = self.describe(ev)
        if text is not None:
            self.line(text.strip())

    @classmethod
    def describe(cls, ev: CallEvent) -> str | None:
        """The progress line for ``ev`` (None: nothing to print, e.g. media restarted)."""
        match ev:
            case RegistrationChanged():
                return f"registration: {ev.text}"
            case Calling():
                return f"calling {ev.peer} ({ev.security})"
            case Incoming():
                who = describe_peer(ev.verified_identity or ev.peer or "?", ev.peer_assurance)
                return (f"incoming call from {who} "
                        f"({ev.security}, {ev.srtp}, key {ev.key_id})")
            case Ringing():
                return "ringing"
            case Answered():
                return "answered: " + cls.summary(ev.status.to_json())
            case PeerSending():
                return ev.status.describe_peer()
            case Rejected():
                return f"refused call from {ev.peer}: {ev.status} {ev.warning or ''}"
            case Failed():
                return f"call failed: {'' if ev.status is None else ev.status} {ev.reason} {ev.warning or ''}"
            case Ended():
                media = ev.status.media
                sent, received, loss = (media.packets_sent, media.packets_received, media.loss) if media else (0, 0, 0)
                return f"call ended ({ev.reason}): {sent} packets sent, {received} received, loss {loss}"
            case Rekeyed():
                return f"rekeyed — key {ev.status.key_id}"
            case MembersHeard():
                return cls.members(ev)
            case Held() | Resumed():
                return ev.kind
            case Dtmf():
                return f"dtmf {ev.digit}".strip()
            case EarlyMedia():
                return "early media (183): hearing the far end before the answer"
            case Transfer():
                state = "done" if ev.final and ev.status is not None and 200 <= ev.status < 300 else (
                    "failed" if ev.final else "in progress")
                return f"transfer ({ev.role}) to {ev.target}: {ev.status} {state}"
        return None

    @staticmethod
    def members(ev: MembersHeard) -> str:
        """``members heard in sip:team@x: sip:bob@x, sip:carol@x (group-keyed: GUK-ID matches, not verified)``."""
        group = ev.status.group
        if group is None:
            return "members heard: none"
        heard = [m.member or f"unlisted sender {m.mki}" for m in group.members if m.packets]
        return (f"members heard in {group.group}: {', '.join(heard) or 'none'} "
                f"(group-keyed: GUK-ID matches, not verified)")

    @staticmethod
    def summary(d: dict[str, Any]) -> str:
        who = describe_peer(d.get("verified_identity") or d.get("peer") or "?", d.get("peer_assurance"))
        return (f"{d.get('state')} {who} | {d.get('label') or d.get('security')} {d.get('srtp')} "
                f"key {d.get('key_id')} | "
                f"{d.get('codec')} | tx {d.get('packets_sent', 0)} rx {d.get('packets_received', 0)} "
                f"loss {d.get('loss', 0)} jitter {d.get('jitter_ms', 0)} ms")

    def line(self, text: str) -> None:
        print(("\r\x1b[K" if self.tty else "") + text, flush=True)

    def status(self, call: Call) -> None:
        if self.tty:
            reg = f" | {self.registration}" if self.registration else ""
            sys.stdout.write("\r\x1b[K" + self.summary(call.status()) + reg + f"  [{STATUS_KEYS}]")
            sys.stdout.flush()


AudioFactory = Callable[[], tuple[AudioSource, AudioSink]]


def _who(incoming: IncomingCall) -> str:
    return describe_peer(incoming.peer_identity or claimed_sender(incoming.session),
                         "verified-by-eccsi" if incoming.peer_identity else None)


async def _in_call(call: Call, printer: Printer, duration: float | None, phone: Phone | None = None,
                   audio: AudioFactory | None = None) -> None:
    """Keep the call up until it ends, ``duration`` passes, or the user hangs up; handle keys.

    With ``phone``: a second incoming call is offered (call waiting, it rings at the caller):
    ``w`` answers it and holds this one, ``x`` refuses it, ``s`` swaps between the two calls; when the
    current call ends the held one becomes current again (``h`` resumes it). ``t URI`` transfers the
    current call to URI (blind), ``a`` transfers the held call to the current one (attended)."""
    loop = asyncio.get_running_loop()
    keys: asyncio.Queue[str] = asyncio.Queue()
    reading = False
    if sys.stdin.isatty() and not printer.as_json:
        loop.add_reader(sys.stdin.fileno(), lambda: keys.put_nowait(sys.stdin.readline().strip()))
        reading = True
    deadline = None if duration is None else loop.time() + duration
    calls = [call]                 # the current call is the last one still up
    waiting: list[IncomingCall] = []

    async def watch() -> None:
        assert phone is not None
        for _ in range(10_000):
            incoming = await phone.next_incoming()
            waiting.append(incoming)
            if not printer.as_json:
                printer.line(f"call waiting from {_who(incoming)}: w answers (holds this call), x refuses")

    watcher = loop.create_task(watch()) if phone is not None else None
    try:
        while any(not c.is_ended for c in calls):
            current = next(c for c in reversed(calls) if not c.is_ended)
            if current is not calls[-1]:
                calls = [c for c in calls if not c.is_ended]
                printer.line(f"back to the call with {current.peer}" + (" (held: h resumes)" if current.held else ""))
            waiting[:] = [w for w in waiting if w.session.state is CallState.INCOMING]
            if deadline is not None and loop.time() >= deadline:
                break
            printer.status(current)
            try:
                key = await asyncio.wait_for(keys.get(), 1.0 if deadline is None else
                                             max(0.01, min(1.0, deadline - loop.time())))
            except TimeoutError:
                continue
            try:
                if key == "q":
                    await current.hangup()
                    continue
                if key == "h":
                    await (current.resume() if current.held else current.hold())
                elif key == "r":
                    await current.rekey()
                elif key == "w" and waiting and audio is not None:
                    source, sink = audio()
                    calls.append(await waiting.pop(0).accept(source, sink, hold_others=True))
                elif key == "x" and waiting:
                    await waiting.pop(0).reject(486)
                elif key == "s" and len(calls) > 1:
                    other = next((c for c in calls if c is not current and not c.is_ended), None)
                    if other is not None:
                        await current.hold()
                        if other.held:
                            await other.resume()
                        calls.remove(other)
                        calls.append(other)
                elif key.startswith("t ") and phone is not None:
                    await phone.transfer(current, key[2:].strip())
                    printer.line(f"transferred {current.peer} to {key[2:].strip()}")
                elif key == "a" and phone is not None and len(calls) > 1:
                    held = next((c for c in calls if c is not current and not c.is_ended), None)
                    if held is not None:
                        await phone.transfer_attended(held, current)
                        printer.line(f"connected {held.peer} with {current.peer}")
                elif key:
                    current.send_dtmf(key)
            except CallError as exc:
                printer.line(f"error: {exc}")
    finally:
        if reading:
            loop.remove_reader(sys.stdin.fileno())
        if watcher is not None:
            watcher.cancel()
    for c in calls:
        if not c.is_ended:
            await c.hangup()


# --- commands --------------------------------------------------------------------------------------
def cmd_register(args: argparse.Namespace) -> int:
    settings = _settings(args)
    printer = Printer(args.json)

    async def run() -> int:
        async with Phone(settings, on_event=None if args.once or args.json else printer.event) as phone:
            expires = await phone.register()
            if args.json:
                print(json.dumps({"event": "registered", "uri": settings.uri, "expires": expires}), flush=True)
            else:
                until = ("unregistering" if args.once else f"staying registered {args.stay:g} s" if args.stay
                         else "staying registered (refreshed) until Ctrl-C")
                printer.line(f"registered {settings.uri} for {expires} s "
                             f"({settings.profile.security_label}); {until}")
            if not args.once:
                try:
                    await asyncio.sleep(args.stay if args.stay else float("inf"))
                except asyncio.CancelledError:  # Ctrl-C: the normal way to stop; unregister below
                    pass
        if args.json:
            print(json.dumps({"event": "unregistered", "uri": settings.uri}), flush=True)
        else:
            printer.line(f"unregistered {settings.uri}")
        return 0

    return _run(run())


Connect = Callable[[Phone, PhoneSettings, Printer, AudioSource, AudioSink], Awaitable[Call | int | None]]


def _call_command(args: argparse.Namespace, connect: Connect) -> int:
    """Register, let ``connect`` set up the call (None: refused, exit 1), then stay in it until it ends."""
    settings = _settings(args)
    for option, path in (("--keylog", args.keylog), ("--capture", args.capture)):
        if path is not None:
            _writable(path, option)
            print(f"softphone: warning: {option} {path} will hold secrets (call keys); keep it private",
                  file=sys.stderr)
    settings.keylog, settings.capture = args.keylog, args.capture
    printer = Printer(args.json)
    source, sink = _audio(args)

    async def run() -> int:
        async with Phone(settings, on_event=printer.event) as phone:
            await phone.register()
            call = await connect(phone, settings, printer, source, sink)
            if call is None:
                return 1
            if isinstance(call, int):   # no call, but something else was done (a voice message left): its status
                return call
            await _in_call(call, printer, args.duration, phone, lambda: _audio(args))
            await call.ended(10)
        return 0

    return _run(run())


def cmd_call(args: argparse.Namespace) -> int:
    recording = None
    if args.voicemail_on_no_answer is not None:
        try:
            recording = read_wav(args.voicemail_on_no_answer)
            voice.items(recording)   # refused before dialling when too long for one message
        except OSError as exc:
            raise CliError(f"--voicemail-on-no-answer {args.voicemail_on_no_answer}: {exc.strerror or exc}", 2) \
                from None
        except (AudioError, voice.VoiceError) as exc:
            raise CliError(f"--voicemail-on-no-answer {args.voicemail_on_no_answer}: {exc}", 2) from None

    async def place(phone: Phone, settings: PhoneSettings, printer: Printer, source: AudioSource,
                    sink: AudioSink) -> Call | int:
        try:
            return await phone.call(args.uri, source, sink, timeout=args.timeout)
        except CallError as exc:
            status = printer.failure.status if printer.failure is not None else None
            if recording is None or not voice.unanswered(status, str(exc)):
                raise
            printer.line(f"not answered ({exc}); leaving a voice message")
            source.close()
            sink.close()
        return await _leave_voice_message(args, phone, settings, printer, recording)

    return _call_command(args, place)


async def _leave_voice_message(args: argparse.Namespace, phone: Phone, settings: PhoneSettings, printer: Printer,
                               pcm: Any) -> int:
    """Send ``pcm`` to the callee as a protected voice message over the phone's own registration."""
    account = configured_account(args.config, args.account, code=2)
    if settings.keystore is None:
        raise CliError("voice messages need MIKEY-SAKKE keys (a keystore)", 2)
    client = (KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
              if account.kms_url else None)
    messenger = Messenger(settings.uri, phone.ua, settings.keystore, _store(account), kms_client=client,
                          revoked=settings.revoked)
    messenger.start()
    try:
        msg = await messenger.send(args.uri, voice.items(pcm))
    except (SendFailed, SealError) as exc:
        raise CliError(f"voice message not sent: {exc}", 1) from None
    where = "stored for offline delivery" if msg.status == "stored" else "delivered to the proxy"
    if args.json:
        print(json.dumps({"event": "voice_message", "id": msg.id, "peer": msg.peer, "status": msg.status,
                          "label": msg.text}), flush=True)
    else:
        printer.line(f"voice message {msg.id[:8]} for {msg.peer} sent ({msg.text}, {where})")
    return 0


def cmd_answer(args: argparse.Namespace) -> int:
    async def answer(phone: Phone, settings: PhoneSettings, printer: Printer, source: AudioSource,
                     sink: AudioSink) -> Call | None:
        if not args.json:
            printer.line(f"waiting for a call to {settings.uri} ({settings.profile.security_label})")
        try:
            incoming = await phone.next_incoming(args.timeout)
        except TimeoutError:
            raise CallError(f"no call within {args.timeout:g} s") from None
        if not args.auto:
            printer.line("press Enter to answer, or type n and Enter to refuse")
            reply = await asyncio.to_thread(sys.stdin.readline)
            if not reply:  # end of input is no answer: refuse rather than accept unattended
                await incoming.reject(480, warning="not answered")
                raise CliError("standard input ended before the call was answered; refused it "
                               "(use --auto to answer without a terminal)", 1)
            if reply.strip().lower().startswith("n"):
                await incoming.reject(603)
                return None
        return await incoming.accept(source, sink)

    return _call_command(args, answer)


def _run(coro: Any) -> int:
    try:
        with user_errors(1):
            return asyncio.run(coro)
    except OSError as exc:
        raise CliError(f"network: {exc.strerror or exc}", 1) from None
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
