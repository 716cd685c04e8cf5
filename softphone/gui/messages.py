"""The GUI's secure messages and voice messages: one :class:`~softphone.messaging.messenger.Messenger` on the
running phone's own SIP user agent (same registration, so msilo's stored messages arrive at start).

The history is the CLI's (``<keystore>.messages``, encrypted with the keystore passphrase, 0600), so
``softphone message list`` and the window show the same conversations. Everything here runs on the Qt
thread's asyncio loop; failures become notices in words, refused messages are never shown as messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from softphone.config import Account
from softphone.keys.kms_client import KmsClient
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.codecs import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from softphone.messaging import voice
from softphone.messaging.messenger import Messenger, SendFailed
from softphone.messaging.secure import SealError
from softphone.messaging.store import MessageStore, StoredMessage, StoreError
from softphone.sip.errors import SipError

if TYPE_CHECKING:
    from softphone.calls.phone import Phone

log = logging.getLogger(__name__)
POLL_S = 0.2
TICKS = {"sent": "✓", "stored": "✓ stored for offline delivery", "delivered": "✓✓ delivered",
         "read": "✓✓ read"}


def history_path(keystore: Path) -> Path:
    """Where the message history lives: beside the keystore (the CLI's ``softphone message`` uses the same)."""
    return keystore.with_name(keystore.name + ".messages")


@dataclass(frozen=True)
class Conversation:
    peer: str
    last: str
    time: float
    unread: int


def is_voice(m: StoredMessage) -> bool:
    return voice.voice_item(m.attachments) is not None


def describe(m: StoredMessage) -> str:
    """One thread line: arrow, text, and for our own messages the sent/delivered/read ticks."""
    extra = f" [+{len(m.attachments)} attachment(s)]" if m.attachments and not is_voice(m) else ""
    if m.direction == "in":
        return f"← {m.text}{extra}"
    return f"→ {m.text}{extra}   {TICKS.get(m.status, m.status)}"


class MessageCenter(QObject):
    """Signals: ``changed(peer)`` a conversation changed ("" for all); ``notice(level, text, cause)``;
    ``group_key(group_uri)`` a group key from a trusted GMS was verified and stored in the keystore."""

    changed = Signal(str)
    notice = Signal(str, str, str)
    group_key = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.messenger: Messenger | None = None
        self.problem: str | None = "not started"
        self._pump: asyncio.Task[None] | None = None
        self._refusals = 0

    @property
    def store(self) -> MessageStore | None:
        return self.messenger.store if self.messenger is not None else None

    async def attach(self, phone: Phone, account: Account, passphrase: str | None) -> None:
        """Open the history and receive messages on ``phone``'s user agent (before it registers)."""
        settings = phone.settings
        if settings.keystore is None or account.keystore is None:
            self.problem = "secure messages need MIKEY-SAKKE keys (a keystore)"
            return
        secret = passphrase if passphrase is not None else account.keystore_passphrase()
        if not secret:
            self.problem = "secure messages need the keystore passphrase (the history is encrypted with it)"
            return
        try:
            store = await asyncio.to_thread(MessageStore.open, history_path(account.keystore), secret.encode())
        except StoreError as exc:
            self.problem = str(exc)
            self.notice.emit("error", f"Messages unavailable: {exc}", "")
            return
        client = (KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
                  if account.kms_url else None)
        self.messenger = Messenger(settings.uri, phone.ua, settings.keystore, store, kms_client=client,
                                   revoked=settings.revoked, trusted_gms=account.trusted_gms)
        self.messenger.start()
        self.problem = None
        self._refusals = sum(store.refusals.values())
        self._pump = asyncio.get_running_loop().create_task(self._pump_loop())
        self.changed.emit("")

    def detach(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self.messenger = None
        self.problem = "not started"

    async def _pump_loop(self) -> None:
        """Turn what the messenger queued (messages, receipts, refusals) into signals; ends when detached."""
        while self.messenger is not None:
            m = self.messenger
            peers: set[str] = set()
            while not m.received.empty():
                msg = m.received.get_nowait()
                peers.add(msg.peer)
                kind = "voice message" if is_voice(msg) else "message"
                self.notice.emit("info", f"new {kind} from {msg.peer} (verified by ECCSI)", "")
            while not m.group_keys.empty():
                key = m.group_keys.get_nowait()
                self.notice.emit("info", f"group key for {key.group_uri} received from {key.gms_uri}", "")
                self.group_key.emit(key.group_uri)
            while not m.notifications.empty():
                mid, _what = m.notifications.get_nowait()
                found = m.store.find(mid)
                if found is not None:
                    peers.add(found.peer)
            total = sum(m.store.refusals.values())
            if total > self._refusals:
                self._refusals = total
                last = m.store.refusal_log[-1] if m.store.refusal_log else {}
                self.notice.emit("error", f"Refused a message claimed from {last.get('claimed_sender', '?')}: "
                                          f"{last.get('detail', 'not verified')} — not shown", "")
                peers.add("")
            for peer in sorted(peers):
                self.changed.emit(peer)
            await asyncio.sleep(POLL_S)

    # --- views ------------------------------------------------------------------------------------
    def conversations(self) -> list[Conversation]:
        if self.store is None:
            return []
        out = []
        for peer in self.store.conversations:
            msgs = self.store.messages(peer)
            if not msgs:
                continue
            unread = sum(1 for x in msgs if x.direction == "in" and x.status == "unread" and not is_voice(x))
            out.append(Conversation(peer, msgs[-1].text, msgs[-1].time, unread))
        return sorted(out, key=lambda c: -c.time)

    def thread_of(self, peer: str) -> list[StoredMessage]:
        return self.store.messages(peer) if self.store is not None else []

    def voicemails(self) -> list[StoredMessage]:
        return [m for m in self.store.messages() if is_voice(m)] if self.store is not None else []

    def refusal_summary(self) -> str:
        if self.store is None or not self.store.refusals:
            return ""
        total = sum(self.store.refusals.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.store.refusals.items()))
        return f"{total} refused message(s), never shown: {reasons}"

    # --- actions ----------------------------------------------------------------------------------
    def _ready(self) -> Messenger | None:
        if self.messenger is None:
            self.notice.emit("error", f"Messages unavailable: {self.problem}", "")
        return self.messenger

    async def send_text(self, peer: str, text: str) -> StoredMessage | None:
        m = self._ready()
        if m is None:
            return None
        try:
            msg = await m.send_text(peer, text)
        except (SendFailed, SealError, SipError, StoreError) as exc:
            self.notice.emit("error", f"Message to {peer} not sent: {exc}", "")
            return None
        self.changed.emit(peer)
        return msg

    async def send_voice(self, peer: str, pcm: np.ndarray) -> StoredMessage | None:
        m = self._ready()
        if m is None:
            return None
        try:
            items = voice.items(pcm)
            msg = await m.send(peer, items)
        except voice.VoiceError as exc:
            self.notice.emit("error", f"Voice message to {peer} not sent: {exc}", "")
            return None
        except (SendFailed, SealError, SipError, StoreError) as exc:
            self.notice.emit("error", f"Voice message to {peer} not sent: {exc}", "")
            return None
        how = "stored for offline delivery" if msg.status == "stored" else "delivered to the proxy"
        self.notice.emit("info", f"voice message to {peer} sent ({msg.text.split(', ')[-1]}, {how})", "")
        self.changed.emit(peer)
        return msg

    async def mark_read(self, peer: str) -> None:
        """The user opened ``peer``'s thread: its unread text messages are read (and the sender is told)."""
        m = self.messenger
        if m is None:
            return
        for msg in m.store.messages(peer):
            if msg.direction == "in" and msg.status == "unread" and not is_voice(msg):
                await m.mark_read(msg.id)
        self.changed.emit(peer)

    async def play(self, message_id: str, sink: AudioSink) -> float:
        """Play a voice message into ``sink`` in real time (20 ms frames); marks it read. Seconds played."""
        m = self._ready()
        msg = m.store.find(message_id) if m is not None else None
        item = voice.voice_item(msg.attachments) if msg is not None else None
        if m is None or msg is None or item is None:
            self.notice.emit("error", "no such voice message", "")
            return 0.0
        try:
            pcm = voice.decode(item)
        except voice.VoiceError as exc:
            self.notice.emit("error", f"cannot play the voice message from {msg.peer}: {exc}", "")
            return 0.0
        if msg.direction == "in" and msg.status != "read":
            await m.mark_read(msg.id)
        try:
            for start in range(0, len(pcm), FRAME_SAMPLES):   # bounded by the message (<= 12 s)
                frame = pcm[start:start + FRAME_SAMPLES]
                if len(frame) < FRAME_SAMPLES:
                    frame = np.concatenate([frame, np.zeros(FRAME_SAMPLES - len(frame), dtype=np.int16)])
                sink.write(frame)
                await asyncio.sleep(FRAME_MS / 1000)
        finally:
            sink.close()
        self.changed.emit(msg.peer)
        return len(pcm) / SAMPLE_RATE


async def record(source: AudioSource, seconds: float, stop: Callable[[], bool] = lambda: False) -> np.ndarray:
    """Read up to ``seconds`` of 20 ms frames from ``source`` (a microphone in real time, or a WAV in
    tests) until it ends or ``stop()`` is true; the source is closed."""
    frames: list[np.ndarray] = []
    try:
        for _ in range(int(seconds * 1000 / FRAME_MS)):
            if stop():
                break
            frame = await asyncio.to_thread(source.read)   # a sound-device source blocks for its 20 ms
            if frame is None:
                break
            frames.append(np.asarray(frame, dtype=np.int16))
    finally:
        source.close()
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)
