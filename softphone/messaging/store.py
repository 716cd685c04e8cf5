"""Message history at rest: one encrypted file in the keystore's style.

``MAGIC || n_log2 || salt(16) || AES-256-GCM(JSON)`` under a scrypt key from the passphrase
(:mod:`kmsinterface.sealed`), mode 0600, atomic replace. It holds per conversation (peer URI) the
messages, the outgoing PCK (so later messages reuse it within its bounds) and the dedup keys of what
was received; :meth:`MessageStore.delete_conversation` removes all three. ``retention_days`` drops
older messages (and their dedup keys) on every save; refusals are counted with their last reasons.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmsinterface.sealed import DEFAULT_N_LOG2, DataKey, SecretsError, derive_key, write_private
from softphone.errors import SoftphoneError

MAGIC = b"SCMSGST1"
DEFAULT_RETENTION_DAYS = 90
MAX_REFUSALS_KEPT = 50


class StoreError(SoftphoneError):
    """The message store cannot be opened or written (one line)."""


@dataclass(frozen=True)
class StoredMessage:
    id: str
    peer: str
    direction: str            # "in" or "out"
    conversation_id: str
    time: float
    text: str
    attachments: tuple[tuple[int, bytes], ...]
    status: str               # out: sent | stored | delivered | read; in: unread | read
    key_id: int
    in_reply_to: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "peer": self.peer, "direction": self.direction, "conversation": self.conversation_id,
                "time": self.time, "text": self.text, "attachments": [len(d) for _, d in self.attachments],
                "status": self.status, "key_id": f"{self.key_id:08x}", "in_reply_to": self.in_reply_to}


def _msg_to_json(m: StoredMessage) -> dict[str, Any]:
    d = dict(m.__dict__)
    d["attachments"] = [[ct, base64.b64encode(data).decode()] for ct, data in m.attachments]
    return d


def _msg_from_json(d: dict[str, Any]) -> StoredMessage:
    d = dict(d)
    d["attachments"] = tuple((ct, base64.b64decode(data)) for ct, data in d.get("attachments", []))
    return StoredMessage(**d)


class MessageStore:
    def __init__(self, path: Path, key: DataKey, header: bytes, data: dict[str, Any]) -> None:
        self.path = path
        self._key = key
        self._header = header
        self.retention_days: float = data.get("retention_days", DEFAULT_RETENTION_DAYS)
        self.conversations: dict[str, dict[str, Any]] = data.get("conversations", {})
        self.refusals: dict[str, int] = data.get("refusals", {})
        self.refusal_log: list[dict[str, Any]] = data.get("refusal_log", [])

    def __repr__(self) -> str:
        return f"MessageStore({str(self.path)!r}, {len(self.conversations)} conversations)"

    @classmethod
    def open(cls, path: str | Path, passphrase: bytes, *, create: bool = True,
             n_log2: int = DEFAULT_N_LOG2) -> MessageStore:
        path = Path(path).expanduser()
        if not path.exists():
            if not create:
                raise StoreError(f"no message store at {path}")
            salt = os.urandom(16)
            header = MAGIC + bytes([n_log2]) + salt
            store = cls(path, cls._derive(passphrase, salt, n_log2), header, {})
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.save()
            return store
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read message store {path}: {exc.strerror}") from None
        if len(blob) < 25 + 28 or not blob.startswith(MAGIC):
            raise StoreError(f"{path} is not a softphone message store")
        header = blob[:25]
        key = cls._derive(passphrase, blob[9:25], blob[8])
        try:
            data = json.loads(key.decrypt(blob[25:], header))
        except SecretsError:
            raise StoreError(f"cannot open message store {path}: wrong passphrase or file modified") from None
        return cls(path, key, header, data)

    @staticmethod
    def _derive(passphrase: bytes, salt: bytes, n_log2: int) -> DataKey:
        try:
            return derive_key(passphrase, salt, n_log2)
        except SecretsError as exc:
            raise StoreError(f"message store: {exc}") from None

    def save(self, now: float | None = None) -> None:
        self._expire(time.time() if now is None else now)
        data = {"version": 1, "retention_days": self.retention_days, "conversations": self.conversations,
                "refusals": self.refusals, "refusal_log": self.refusal_log[-MAX_REFUSALS_KEPT:]}
        try:
            write_private(self.path, self._header + self._key.encrypt(json.dumps(data).encode(), self._header))
        except OSError as exc:
            raise StoreError(f"cannot write message store {self.path}: {exc.strerror}") from None

    def _expire(self, now: float) -> None:
        cutoff = now - self.retention_days * 86400
        for conv in self.conversations.values():
            conv["messages"] = [m for m in conv["messages"] if m["time"] >= cutoff]
            conv["seen"] = {k: t for k, t in conv.get("seen", {}).items() if t >= cutoff}

    # conversations ------------------------------------------------------------------------------------
    def conversation(self, peer: str) -> dict[str, Any]:
        conv = self.conversations.get(peer)
        if conv is None:
            conv = self.conversations[peer] = {"id": str(uuid.uuid4()), "messages": [], "seen": {}, "pck": None}
        return conv

    def conversation_id(self, peer: str) -> uuid.UUID:
        return uuid.UUID(self.conversation(peer)["id"])

    def delete_conversation(self, peer: str) -> bool:
        """Forget the messages, the outgoing key and the dedup keys of the conversation with ``peer``."""
        gone = self.conversations.pop(peer, None) is not None
        self.save()
        return gone

    def outgoing_key(self, peer: str) -> dict[str, Any] | None:
        conv = self.conversations.get(peer)
        return None if conv is None else conv.get("pck")

    def set_outgoing_key(self, peer: str, record: dict[str, Any] | None) -> None:
        self.conversation(peer)["pck"] = record

    # messages -----------------------------------------------------------------------------------------
    def add(self, msg: StoredMessage) -> None:
        conv = self.conversation(msg.peer)
        if msg.direction == "in" and conv["id"] != msg.conversation_id and not conv["messages"]:
            conv["id"] = msg.conversation_id  # the first message of a conversation names it
        conv["messages"].append(_msg_to_json(msg))

    def messages(self, peer: str | None = None) -> list[StoredMessage]:
        out = [_msg_from_json(m) for p, c in self.conversations.items() if peer in (None, p) for m in c["messages"]]
        return sorted(out, key=lambda m: m.time)

    def find(self, message_id: str) -> StoredMessage | None:
        hits = [m for m in self.messages() if m.id == message_id or m.id.startswith(message_id)]
        return hits[0] if len(hits) == 1 else None

    def set_status(self, message_id: str, status: str) -> bool:
        order = ["sent", "stored", "delivered", "read"]
        for conv in self.conversations.values():
            for m in conv["messages"]:
                if m["id"] == message_id:
                    if m["direction"] == "out" and order.index(status) <= order.index(m["status"]):
                        return False
                    m["status"] = status
                    return True
        return False

    # dedup and refusals -------------------------------------------------------------------------------
    def seen(self, peer: str, key: bytes) -> bool:
        return any(key.hex() in c.get("seen", {}) for c in self.conversations.values())

    def mark_seen(self, peer: str, key: bytes, now: float) -> None:
        self.conversation(peer).setdefault("seen", {})[key.hex()] = now

    def refused(self, reason: str, detail: str, sender: str, now: float) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        self.refusal_log.append({"time": now, "reason": reason, "detail": detail, "claimed_sender": sender})
