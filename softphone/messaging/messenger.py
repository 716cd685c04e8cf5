"""The messaging service of one account: seal → SIP MESSAGE → (proxy / msilo) → open → history.

    messenger = Messenger(uri, ua, keystore, store, kms_client=client)
    messenger.start()                          # inbound MESSAGEs are verified, opened and stored
    msg = await messenger.send_text("sip:bob@lab.test", "hello")
    msg.status                                 # "sent" (200), "stored" (202: the proxy keeps it offline)

Inbound: a refused message (forged, tampered, wrong recipient, revoked sender, unknown KMS, replay,
no keys) is never stored as a message; it is counted in the store's ``refusals`` with its explanation.
The SIP answer depends on whether trying again could ever help, because a store-and-forward (Kamailio
``msilo``) deletes a stored MESSAGE only when the phone answers 2xx and offers it again at every
REGISTER after any other final response (there is no error code it gives up on):

- final refusals (everything but :data:`secure.TRANSIENT`) are answered **200 "accepted and
  discarded"** with ``Warning: 399 … "message refused (REASON): DETAIL"`` (RFC 3261 §20.43: a warning
  may accompany any response). The SIP transaction did succeed — the request reached this UA, which
  processed it; the refusal is the end-to-end verdict on its content, which 2xx/non-2xx cannot carry
  through a store anyway (the store, not the sender, gets the response). A sender online gets the
  warning and :meth:`Messenger.send` fails with it (:class:`SendFailed`) as a 488 did before;
- a replay (delivered before) is answered 200 without a warning;
- a message this phone cannot open *yet* (no keys of its key period, and none fetchable now) is answered
  **480 Temporarily Unavailable** with the reason: a store keeps it and offers it again at the next
  REGISTER, by which time the keys may be held; a sender online gets the 480 and may retry.

Messages that request it get a protected "delivered" notification at once and a "read" one from
:meth:`Messenger.mark_read`.

Sending to another domain uses the trusted KMS serving it (:meth:`Messenger.peer_kms`): the certificate
whose ``KmsDomainList`` names the peer's domain, else whose KMS URI is that domain or ends with
``.DOMAIN``; with none trusted the message is not sealed (:class:`secure.SealError` saying so).

:meth:`Messenger.start` builds the SAKKE receiver tables of every held period in a worker thread
(``Opener.prepare``, as :class:`softphone.calls.phone.Phone` does for calls); :meth:`keys_ready` waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from crypto import mcdata
from crypto.errors import CryptoError
from crypto.identity import key_period_no
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KmsParams
from softphone.keys.errors import KeysError
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient
from softphone.messaging import secure
from softphone.messaging.store import MessageStore, StoredMessage
from softphone.sip.errors import SipError
from softphone.sip.im import InboundMessage, accept_messages, send_message
from softphone.sip.ua import UserAgent

log = logging.getLogger(__name__)
NTP_UNIX_DELTA = 2_208_988_800
#: How a final refusal answered 2xx is recognised in the response's Warning text.
REFUSED_WARNING = "message refused"


class SendFailed(Exception):
    """The proxy refused the MESSAGE or did not answer (one line)."""


@dataclass
class Counters:
    received: int = 0
    sent: int = 0
    notifications: int = 0
    refused: dict[str, int] = field(default_factory=dict)


class _StoreSeen(secure.SeenSet):
    def __init__(self, store: MessageStore) -> None:
        super().__init__()
        self.store = store

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and (super().__contains__(key) or self.store.seen("", key))


class Messenger:
    def __init__(self, uri: str, ua: UserAgent, keystore: Keystore, store: MessageStore, *,
                 kms_client: KmsClient | None = None, revoked: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.time, notify: bool = True) -> None:
        self.uri = uri
        self.ua = ua
        self.keystore = keystore
        self.store = store
        self.kms_client = kms_client
        self.clock = clock
        self.notify = notify
        self.counters = Counters()
        self.received: asyncio.Queue[StoredMessage] = asyncio.Queue(maxsize=1024)
        self.notifications: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1024)
        self.sealer = secure.Sealer(self._initiator_at, kms_for=self.peer_kms)
        self.opener = secure.Opener(uri, lambda: self.keystore.mikey_key_sets(self.uri), self._trusted(),
                                    revoked, _StoreSeen(store), self._fetch_period if kms_client else None)
        self._initiators: dict[int, Initiator] = {}
        self._read_requests: dict[str, secure.Opened] = {}
        self._prepared: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<Messenger {self.uri}>"

    def start(self) -> None:
        """Take inbound MESSAGEs; with a running loop, build the receiver tables in a worker thread now."""
        accept_messages(self.ua, self._on_message)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the first message builds them
            return
        if self._prepared is None:
            self._prepared = loop.run_in_executor(None, self._prepare)

    def _prepare(self) -> None:
        try:
            self.opener.prepare()
        except (secure.MessageRefused, KeysError, CryptoError) as exc:  # no keys yet: the first message says so
            log.info("messaging receiver tables not built: %s", exc)

    async def keys_ready(self) -> None:
        """Wait until the background build started by :meth:`start` is done (at once if none)."""
        if self._prepared is not None:
            await asyncio.shield(self._prepared)

    # keys -------------------------------------------------------------------------------------------
    def _trusted(self) -> list[KmsParams]:
        return [self.keystore.kms_params(c.kms_uri) for c in self.keystore.certificates()]

    def peer_kms(self, peer: str) -> KmsParams | None:
        """The trusted KMS of ``peer``'s domain (None: our own); SealError when another domain's KMS is not
        trusted (its exported certificate was never imported)."""
        domain, own_domain = _domain(peer), _domain(self.uri)
        own = self.keystore.mikey_key_sets(self.uri)[-1].kms.kms_uri
        named = [c.kms_uri for c in self.keystore.certificates() if domain in c.kms_domains]
        by_uri = sorted((c.kms_uri for c in self.keystore.certificates()
                         if c.kms_uri == domain or c.kms_uri.endswith("." + domain)), key=len)
        found = named[0] if named else by_uri[0] if by_uri else None
        if found is None:
            if domain == own_domain:
                return None
            raise secure.SealError(f"no trusted KMS for {domain}: {peer}'s community is not trusted here "
                                   "(import its exported KMS certificate: softphone keys import FILE)")
        return None if found == own else self.keystore.kms_params(found)

    def _initiator_at(self, ntp: int) -> Initiator:
        own = self.keystore.mikey_key_sets(self.uri)[-1].kms
        n = key_period_no(ntp, own.user_key_period, own.user_key_offset)
        if n not in self._initiators:
            try:
                self._initiators[n] = Initiator(self.keystore.get(self.uri, n, own.kms_uri).for_mikey())
            except KeysError as exc:
                raise secure.SealError(f"no signing key for key period {n}: {exc}") from None
        return self._initiators[n]

    def _fetch_period(self, ntp: int) -> bool:
        """Fetch our key set of the period containing ``ntp`` (``keyprov/<URI>/<T>``) into the keystore."""
        assert self.kms_client is not None
        when = datetime.fromtimestamp(ntp - NTP_UNIX_DELTA, UTC)
        try:
            self.keystore.import_key_prov(self.kms_client.key_prov(self.uri, when))
        except KeysError as exc:
            log.warning("cannot fetch the key set for %s: %s", when.isoformat(), exc)
            return False
        return True

    # sending ----------------------------------------------------------------------------------------
    async def _send(self, peer: str, sealed: secure.Sealed) -> int:
        self.store.set_outgoing_key(peer, self.sealer.export(peer))
        self.store.save(self.clock())
        try:
            resp = await send_message(self.ua, peer, sealed.body, sealed.content_type)
        except SipError as exc:
            raise SendFailed(f"MESSAGE to {peer}: {exc}") from None
        warning = resp.headers.get("Warning") or ""
        if resp.status >= 300:
            raise SendFailed(f"MESSAGE to {peer} refused: {resp.status} {resp.reason} {warning}".strip())
        if REFUSED_WARNING in warning:  # taken and discarded: the recipient's phone refused it for good
            raise SendFailed(f"MESSAGE to {peer} refused by the recipient: {_warning_text(warning)}")
        return resp.status

    async def send(self, peer: str, items: list[mcdata.DataItem], *, in_reply_to: str | None = None) -> StoredMessage:
        now = self.clock()
        self.sealer.restore(peer, self.store.outgoing_key(peer))
        sealed = await asyncio.to_thread(
            self.sealer.seal, peer, items, now=now, conversation_id=self.store.conversation_id(peer),
            in_reply_to=uuid.UUID(in_reply_to) if in_reply_to else None)
        status = await self._send(peer, sealed)
        text = "".join(i.data.decode("utf-8", "replace") for i in items if i.content_type == mcdata.ContentType.TEXT)
        msg = StoredMessage(str(sealed.message_id), peer, "out", str(sealed.conversation_id), now, text,
                            tuple((i.content_type, i.data) for i in items if i.content_type != mcdata.ContentType.TEXT),
                            "stored" if status == 202 else "sent", sealed.key_id, in_reply_to)
        self.store.add(msg)
        self.store.save(self.clock())
        self.counters.sent += 1
        return msg

    async def send_text(self, peer: str, text: str, **kw: str | None) -> StoredMessage:
        return await self.send(peer, [mcdata.DataItem(mcdata.ContentType.TEXT, text.encode("utf-8"))], **kw)

    async def _notify(self, peer: str, conversation_id: uuid.UUID, message_id: uuid.UUID,
                      disposition: mcdata.Disposition) -> None:
        try:
            self.sealer.restore(peer, self.store.outgoing_key(peer))
            sealed = await asyncio.to_thread(self.sealer.seal_notification, peer, conversation_id, message_id,
                                             disposition, now=self.clock())
            await self._send(peer, sealed)
        except (SendFailed, secure.SealError) as exc:
            log.warning("%s notification to %s failed: %s", disposition.name.lower(), peer, exc)

    async def mark_read(self, message_id: str) -> StoredMessage | None:
        msg = self.store.find(message_id)
        if msg is None or msg.direction != "in":
            return msg
        if msg.status != "read":
            self.store.set_status(msg.id, "read")
            self.store.save(self.clock())
            self._read_requests.pop(msg.id, None)
            if self.notify:
                await self._notify(msg.peer, uuid.UUID(msg.conversation_id), uuid.UUID(msg.id),
                                   mcdata.Disposition.READ)
        return msg

    # receiving --------------------------------------------------------------------------------------
    def _on_message(self, inbound: InboundMessage) -> tuple[int, str | None]:
        now = self.clock()
        try:
            opened = self.opener.open(inbound.content_type, inbound.body, inbound.sender)
        except secure.MessageRefused as exc:
            self.counters.refused[exc.reason] = self.counters.refused.get(exc.reason, 0) + 1
            self.store.refused(exc.reason, exc.detail, inbound.sender, now)
            self.store.save(now)
            log.warning("refused a message claimed from %s: %s", inbound.sender, exc)
            if exc.reason == secure.REPLAY:
                return 200, None
            if not exc.permanent:   # a store keeps it and offers it again at the next REGISTER
                return 480, f"cannot open the message yet ({exc.reason}): {exc.detail}"
            return 200, f"{REFUSED_WARNING} ({exc.reason}): {exc.detail}"   # accepted and discarded
        self.store.mark_seen(opened.sender, opened.dedup, now)
        if opened.kind == "notification":
            assert opened.disposition is not None
            self.store.set_status(str(opened.message_id), "read" if opened.disposition is mcdata.Disposition.READ
                                  else "delivered")
            self.store.save(now)
            self.counters.notifications += 1
            self._put(self.notifications, (str(opened.message_id), opened.disposition.name.lower()))
            return 200, None
        msg = StoredMessage(str(opened.message_id), opened.sender, "in", str(opened.conversation_id),
                            float(opened.date_time), opened.text,
                            tuple((i.content_type, i.data) for i in opened.items
                                  if i.content_type != mcdata.ContentType.TEXT),
                            "unread", opened.key_id, str(opened.in_reply_to) if opened.in_reply_to else None)
        self.store.add(msg)
        self.store.save(now)
        self.counters.received += 1
        if opened.disposition_request & secure.REQUEST_READ:
            self._read_requests[msg.id] = opened
        if self.notify and opened.disposition_request & secure.REQUEST_DELIVERED:
            self.ua.spawn(self._notify(opened.sender, opened.conversation_id, opened.message_id,
                                       mcdata.Disposition.DELIVERED))
        self._put(self.received, msg)
        return 200, None

    @staticmethod
    def _put(queue: asyncio.Queue, item: object) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            queue.get_nowait()
            queue.put_nowait(item)


def _domain(uri: str) -> str:
    return uri.rpartition("@")[2].split(";")[0].split(">")[0].lower()


def _warning_text(warning: str) -> str:
    """The quoted text of a ``Warning: 399 host "text"`` value (the whole value if not quoted)."""
    first, quote, rest = warning.partition('"')
    return rest.rstrip('"').replace('\\"', '"') if quote else first
