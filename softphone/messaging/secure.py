"""Sealing and opening one secure message (no I/O; time comes in as Unix seconds).

Sending: one PCK per conversation (peer), carried in a MIKEY-SAKKE I_MESSAGE signed with the
sender's ECCSI key, reused for at most :data:`PCK_MAX_AGE` seconds / :data:`PCK_MAX_COUNT` messages
and never across key periods; every message gets a fresh payload ID and fresh random IVs. The SDS
signalling (or notification) payload and the data payload are protected with the DPCK of that PCK
(:mod:`crypto.mcdata`), sharing one payload ID (sequence 0 and 1), so parts of two messages cannot be
spliced together.

Receiving (:class:`Opener`): unknown KMS → I_MESSAGE verification through the same
:class:`crypto.mikey.verify.Responder` as calls, but without the live clock window (a stored message
is judged as of its own timestamp) and with the RSK of the key period of its T (fetched through
``fetch_period`` when not held) → revoked sender → payload authentication → duplicates dropped by
(CSB ID, RAND, payload ID). Every refusal is a :class:`MessageRefused` with a short reason.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crypto import mcdata
from crypto.errors import CryptoError
from crypto.identity import ntp_seconds
from crypto.mikey import errors as mikey_errors
from crypto.mikey import payloads as pl
from crypto.mikey.build import BuiltMessage, Initiator
from crypto.mikey.keys import KeyType, KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.verify import Responder, VerifiedMessage
from softphone.calls.negotiation import mikey_reason
from softphone.messaging import wire

PCK_MAX_AGE = 24 * 3600
PCK_MAX_COUNT = 1000
#: Largest attachment (file or voice message) in one SIP MESSAGE. Our SIP stack refuses messages over
#: 32 KiB (``softphone.sip.message.MAX_MESSAGE_SIZE``); base64 adds a third and the I_MESSAGE, SIP
#: headers and signalling take ~2 KiB, so 16 KiB of data leaves a margin for the proxy's headers.
#: The proxy must accept ~24 KiB SIP messages over TLS/TCP (Kamailio's default read buffer is 16 KiB;
#: the lab raises ``tcp_rd_buf_size``); with a stock 16 KiB proxy the usable size is ~10 KiB.
MAX_ATTACHMENT = 16 * 1024
DISPOSITION_NONE = 0
REQUEST_DELIVERED = 1
REQUEST_READ = 2

# reasons (what UIs count and show)
FORGED = "forged"
TAMPERED = "tampered"
WRONG_RECIPIENT = "wrong recipient"
REVOKED = "revoked sender"
UNKNOWN_KMS = "unknown KMS"
REPLAY = "replay"
MALFORMED = "malformed"
NO_KEYS = "no keys for the key period"
#: Refusals that may go away without the sender doing anything (the keys of the message's period are
#: fetched or imported later): answered with a non-2xx so a store-and-forward keeps the message and
#: offers it again. Every other refusal is final (see :mod:`softphone.messaging.messenger`).
TRANSIENT = frozenset({NO_KEYS})


class MessageRefused(Exception):
    """A received secure message that must not be shown; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def permanent(self) -> bool:
        """True when opening this message again can only fail the same way (tamper, forgery, replay…)."""
        return self.reason not in TRANSIENT


class SealError(Exception):
    """A message cannot be sealed (too large, no keys for the period)."""


@dataclass(frozen=True)
class Sealed:
    body: bytes
    content_type: str
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    payload_id: int
    key_id: int


@dataclass
class _ConversationKey:
    built: BuiltMessage
    created: float
    used: int = 0


class Sealer:
    """The sending side for one user: ``initiator_at(ntp_seconds)`` gives the Initiator of that period."""

    def __init__(self, initiator_at: Callable[[int], Initiator], *, max_age: float = PCK_MAX_AGE,
                 max_count: int = PCK_MAX_COUNT, kms_for: Callable[[str], KmsParams | None] | None = None) -> None:
        self._initiator_at = initiator_at
        self.max_age = max_age
        self.max_count = max_count
        self._kms_for = kms_for
        self._keys: dict[str, _ConversationKey] = {}

    def forget(self, peer: str) -> None:
        """Drop the conversation key toward ``peer`` (the next message carries a fresh PCK)."""
        self._keys.pop(peer, None)

    def export(self, peer: str) -> dict[str, Any] | None:
        """The conversation key toward ``peer`` as a JSON-able record (secret: keep it encrypted)."""
        ck = self._keys.get(peer)
        if ck is None:
            return None
        b = ck.built
        return {"imessage": b.data.hex(), "key": b.key.hex(), "key_id": b.key_id, "period": b.key_period_no,
                "created": ck.created, "used": ck.used}

    def restore(self, peer: str, record: dict[str, Any] | None) -> None:
        """Reuse a conversation key saved with :meth:`export` (its bounds still apply)."""
        if not record:
            return
        try:
            built = BuiltMessage(IMessage.parse(bytes.fromhex(str(record["imessage"]))), KeyType.PCK,
                                 bytes.fromhex(str(record["key"])), int(record["key_id"]), int(record["key_id"]),
                                 int(record["period"]), {})
        except (KeyError, ValueError, CryptoError):
            return
        self._keys[peer] = _ConversationKey(built, float(record["created"]), int(record["used"]))

    def _key(self, peer: str, now: float) -> BuiltMessage:
        ntp = ntp_seconds(now)
        ck = self._keys.get(peer)
        initiator = self._initiator_at(ntp)
        if (ck is None or now - ck.created >= self.max_age or ck.used >= self.max_count
                or ck.built.key_period_no != initiator.keys.key_period_no):
            rkms = self._kms_for(peer) if self._kms_for else None
            try:
                built = initiator.build(peer, receiver_kms=rkms, key_type=KeyType.PCK, ntp_time=ntp)
            except CryptoError as exc:
                raise SealError(f"cannot build the I_MESSAGE to {peer}: {exc}") from None
            ck = self._keys[peer] = _ConversationKey(built, now)
        ck.used += 1
        return ck.built

    def _seal(self, peer: str, now: float, first: bytes, first_type: int, data: bytes | None,
              message_id: uuid.UUID, conversation_id: uuid.UUID) -> Sealed:
        built = self._key(peer, now)
        payload_id = int.from_bytes(uuid.uuid4().bytes[:4], "big")

        def protect(plain: bytes, message_type: int, seq: int) -> bytes:
            return mcdata.protect(plain, message_type=message_type, dppk=built.key, dppk_id=built.key_id,
                                  date_time=int(now), payload_id=payload_id, seq=seq)

        sig = protect(first, first_type, 0)
        body = None if data is None else protect(data, mcdata.MessageType.DATA, 1)
        envelope = wire.Envelope(built.data, sig, body)
        return Sealed(wire.encode(envelope), wire.CONTENT_TYPE, message_id, conversation_id, payload_id, built.key_id)

    def seal(self, peer: str, items: Iterable[mcdata.DataItem], *, now: float | None = None,
             conversation_id: uuid.UUID | None = None, in_reply_to: uuid.UUID | None = None,
             disposition_request: int = REQUEST_DELIVERED | REQUEST_READ) -> Sealed:
        """A message of one or more data items (text and/or binary) to ``peer``."""
        now = time.time() if now is None else now
        items = tuple(items)
        size = sum(len(i.data) for i in items)
        if size > MAX_ATTACHMENT:
            raise SealError(f"message data is {size} octets; one secure message carries at most {MAX_ATTACHMENT}")
        conv = conversation_id or uuid.uuid4()
        mid = uuid.uuid4()
        sds = mcdata.SdsSignalling(int(now), conv, mid, in_reply_to, disposition_request)
        data = mcdata.DataPayload(items).encode()
        return self._seal(peer, now, sds.encode(), mcdata.MessageType.SDS_SIGNALLING, data, mid, conv)

    def seal_text(self, peer: str, text: str, **kw: object) -> Sealed:
        return self.seal(peer, [mcdata.DataItem(mcdata.ContentType.TEXT, text.encode("utf-8"))], **kw)  # type: ignore[arg-type]

    def seal_notification(self, peer: str, conversation_id: uuid.UUID, message_id: uuid.UUID,
                          disposition: mcdata.Disposition, *, now: float | None = None) -> Sealed:
        """A delivered/read notification for ``message_id``, protected like a message."""
        now = time.time() if now is None else now
        note = mcdata.SdsNotification(int(now), conversation_id, message_id, disposition)
        return self._seal(peer, now, note.encode(), mcdata.MessageType.SDS_NOTIFICATION, None, message_id,
                          conversation_id)


@dataclass(frozen=True, repr=False)
class Opened:
    """A verified, decrypted message or notification. ``sender`` is the ECCSI-verified identity."""

    sender: str
    kind: str                        # "message" or "notification"
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    date_time: int
    key_id: int
    key_period_no: int
    dedup: bytes
    items: tuple[mcdata.DataItem, ...] = ()
    in_reply_to: uuid.UUID | None = None
    disposition_request: int = 0
    disposition: mcdata.Disposition | None = None

    @property
    def text(self) -> str:
        return "".join(i.data.decode("utf-8", "replace") for i in self.items
                       if i.content_type == mcdata.ContentType.TEXT)

    def __repr__(self) -> str:
        return f"Opened({self.kind} from {self.sender!r}, id={self.message_id}, {len(self.items)} items)"


class SeenSet:
    """Dedup keys of opened messages (bounded, oldest dropped first); the store persists its own."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def add(self, key: bytes) -> None:
        self._seen[key] = None
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


def _mikey_refusal(exc: CryptoError) -> MessageRefused:
    text = mikey_reason(exc)
    if isinstance(exc, mikey_errors.IdentityMismatch):
        detail = str(exc)
        reason = WRONG_RECIPIENT if ("receiver" in detail or "responder" in detail) else FORGED
    elif isinstance(exc, mikey_errors.SignatureRejected):
        reason = FORGED
    elif isinstance(exc, mikey_errors.KeyUnwrapFailed):
        reason = TAMPERED
    elif isinstance(exc, mikey_errors.ReplayedMessage):
        reason = REPLAY
    elif isinstance(exc, mikey_errors.ExpiredKeyPeriod):
        reason = NO_KEYS
    else:
        reason = MALFORMED
    return MessageRefused(reason, text)


@dataclass
class Opener:
    """The receiving side for one user.

    ``key_sets()`` returns every held key set (re-read after a fetch); ``fetch_period(ntp_seconds)``
    fetches the key set of the period containing that time (returns False if it could not).
    """

    uri: str
    key_sets: Callable[[], list[UserKeys]]
    trusted_kms: list[KmsParams] = field(default_factory=list)
    revoked: frozenset[str] = frozenset()
    seen: SeenSet = field(default_factory=SeenSet)
    fetch_period: Callable[[int], bool] | None = None
    _responder: Responder | None = field(default=None, init=False, repr=False)
    _periods: tuple[int, ...] = field(default=(), init=False, repr=False)
    _verified: OrderedDict[bytes, VerifiedMessage] = field(default_factory=OrderedDict, init=False, repr=False)

    def responder(self) -> Responder:
        sets = self.key_sets()
        periods = tuple(k.key_period_no for k in sets)
        if self._responder is None or periods != self._periods:
            if not sets:
                raise MessageRefused(NO_KEYS, f"no key sets held for {self.uri}")
            self._responder = Responder(sets, trusted_kms=self.trusted_kms, check_replay=False, precompute=True)
            self._periods = periods
        return self._responder

    def prepare(self) -> None:
        """Build the SAKKE receiver (and its precomputed tables) of every held key period now, as calls do,
        so the first message is opened as fast as later ones. Safe in a worker thread."""
        self.responder().prepare()

    @property
    def prepared(self) -> bool:
        """The current responder exists and every held period's receiver tables are built."""
        return self._responder is not None and self._responder.precomputed

    def _verify(self, raw: bytes, claimed: str) -> VerifiedMessage:
        try:
            msg = IMessage.parse(raw)
        except CryptoError as exc:
            raise _mikey_refusal(exc) from None
        digest = hashlib.sha256(raw + claimed.encode()).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        responder = self.responder()
        kmsi = msg.idr(pl.ROLE_KMSI)
        if kmsi is not None and kmsi.text() not in responder.trusted:
            raise MessageRefused(UNKNOWN_KMS, f"MIKEY-SAKKE unknown KMS: the sender's KMS {kmsi.text()} is not trusted")
        for attempt in range(2):
            try:
                verified = self.responder().process(msg, now=None, claimed_sender=claimed)
                break
            except mikey_errors.ExpiredKeyPeriod as exc:
                if attempt == 0 and self.fetch_period is not None and self.fetch_period(msg.timestamp.seconds):
                    continue
                raise _mikey_refusal(exc) from None
            except CryptoError as exc:
                raise _mikey_refusal(exc) from None
        if verified.key_type is not KeyType.PCK:
            raise MessageRefused(MALFORMED, f"the I_MESSAGE carries a {verified.key_type.name}, not a PCK")
        self._verified[digest] = verified
        while len(self._verified) > 256:
            self._verified.popitem(last=False)
        return verified

    def open(self, content_type: str, body: bytes, claimed_sender: str) -> Opened:
        try:
            env = wire.decode(content_type, body)
        except wire.WireError as exc:
            raise MessageRefused(MALFORMED, str(exc)) from None
        verified = self._verify(env.imessage, claimed_sender)
        if verified.sender_uri in self.revoked:
            raise MessageRefused(REVOKED, f"MIKEY-SAKKE revoked identity: {verified.sender_uri} is revoked")
        try:
            outer, first = mcdata.unprotect(env.signalling, dppk=verified.key, dppk_id=verified.key_id)
            dedup = hashlib.sha256(verified.csb_id.to_bytes(4, "big") + verified.rand
                                   + outer.payload_id.to_bytes(4, "big")).digest()
            common = {"sender": verified.sender_uri, "key_id": verified.key_id,
                      "key_period_no": verified.key_period_no, "dedup": dedup}
            if outer.message_type == mcdata.PROTECTED | mcdata.MessageType.SDS_NOTIFICATION:
                if env.payload is not None:
                    raise mcdata.MalformedPayload("a notification carries no data payload")
                note = mcdata.SdsNotification.decode(first)
                opened = Opened(kind="notification", conversation_id=note.conversation_id,
                                message_id=note.message_id, date_time=note.date_time, disposition=note.disposition,
                                **common)  # type: ignore[arg-type]
            elif outer.message_type == mcdata.PROTECTED | mcdata.MessageType.SDS_SIGNALLING:
                if env.payload is None:
                    raise mcdata.MalformedPayload("the message has no data payload")
                sds = mcdata.SdsSignalling.decode(first)
                inner, data = mcdata.unprotect(env.payload, dppk=verified.key, dppk_id=verified.key_id)
                if inner.payload_id != outer.payload_id or inner.seq != 1 or outer.seq != 0:
                    raise mcdata.PayloadAuthFailed("signalling and data payloads belong to different messages")
                if inner.message_type != mcdata.PROTECTED | mcdata.MessageType.DATA:
                    raise mcdata.MalformedPayload("the data part is not a protected data payload")
                items = mcdata.DataPayload.decode(data).items
                opened = Opened(kind="message", conversation_id=sds.conversation_id, message_id=sds.message_id,
                                date_time=sds.date_time, items=items, in_reply_to=sds.in_reply_to,
                                disposition_request=sds.disposition_request, **common)  # type: ignore[arg-type]
            else:
                raise mcdata.MalformedPayload(f"message type 0x{outer.message_type:02x} is not expected here")
        except (mcdata.PayloadAuthFailed, mcdata.KeyIdMismatch) as exc:
            raise MessageRefused(TAMPERED, f"MCData payload: {exc}") from None
        except mcdata.McDataError as exc:
            raise MessageRefused(MALFORMED, f"MCData payload: {exc}") from None
        if dedup in self.seen:
            raise MessageRefused(REPLAY, "duplicate message (same CSB ID, RAND and payload ID already received)")
        self.seen.add(dedup)
        return opened
