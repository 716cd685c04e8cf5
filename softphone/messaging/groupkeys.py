"""Group keys arriving from a GMS (GROUP-MESSAGING.md §1.1): a group-key document in a SIP MESSAGE.

The I_MESSAGE inside is verified like any other (``Responder``: signature under the GMS's identity,
receiver = us, SAKKE with our RSK), but only when its signer is a GMS this account trusts
(``trusted_gms`` in the accounts file) and is the SIP sender; then it must carry a GMK whose CSB ID is
our own GUK-ID. The result is a :class:`GroupKey` for the keystore, with the document's member list.
:func:`open_group_key` does no I/O (bytes and the sender in, a GroupKey or a :class:`GroupKeyRefused` out);
:class:`GroupKeyInbox` wires it to a UA and the keystore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from crypto.errors import CryptoError
from crypto.kdf import guk_id
from crypto.mikey.keys import KeyType
from crypto.mikey.verify import Responder, VerifiedMessage
from kmsinterface.groupdoc import GroupDocError, GroupDocument, is_group_document
from softphone.keys.errors import KeysError
from softphone.keys.groups import GroupKey
from softphone.keys.keystore import Keystore
from softphone.sip.im import InboundMessage, accept_messages
from softphone.sip.ua import UserAgent

log = logging.getLogger(__name__)
GROUP_KEY_REFUSED = "group key refused"

UNKNOWN_GMS = "unknown GMS"
NOT_A_GMK = "not a group key"
BAD_MESSAGE = "bad group key message"
#: key-parameter status bits we read as revoked (Streamwide writes 1 = not revoked, Alea 0; §1.3 [U])
STATUS_REVOKED = 0x00000002


class GroupKeyRefused(Exception):
    """A group-key message that was not stored; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NoOwnKeys(Exception):
    """This phone holds no key set to open the message with (yet)."""


def group_key_from(verified: VerifiedMessage, group_uri: str, members: tuple[str, ...] = ()) -> GroupKey:
    """The GroupKey a verified GMK I_MESSAGE gives (validity from its key parameters, 0 = none)."""
    if verified.key_type is not KeyType.GMK:
        raise GroupKeyRefused(NOT_A_GMK, f"the I_MESSAGE carries a {verified.key_type.name}, not a GMK")
    own = guk_id(verified.key, verified.key_id, verified.receiver_uri)
    if own != verified.csb_id:
        raise GroupKeyRefused(BAD_MESSAGE, f"CSB ID {verified.csb_id:08x} is not our GUK-ID {own:08x}")
    kp = verified.key_parameters
    activation, expiry, text, revoked = 0, 0, "", False
    if kp is not None:
        activation, expiry, text = kp.activation_time, kp.expiry_time, kp.text
        revoked = bool(kp.status & STATUS_REVOKED)
        if kp.group_ids:
            try:
                named = kp.group_ids.decode("utf-8")
            except UnicodeDecodeError:
                named = ""
            if named.startswith(("sip:", "sips:")) and named != group_uri:
                raise GroupKeyRefused(BAD_MESSAGE, f"the key is for group {named}, the document says {group_uri}")
    return GroupKey(group_uri, verified.key_id, verified.key, verified.rand, verified.receiver_uri,
                    verified.sender_uri, activation, expiry, revoked, text, members)


def open_group_key(body: bytes, claimed_sender: str, responder: Callable[[], Responder],
                   trusted_gms: frozenset[str] | tuple[str, ...]) -> GroupKey:
    """Verify one group-key document from ``claimed_sender`` (the SIP identity) into a GroupKey."""
    try:
        doc = GroupDocument.decode(body)
    except GroupDocError as exc:
        raise GroupKeyRefused(BAD_MESSAGE, str(exc)) from None
    if doc.gms_uri not in trusted_gms:
        raise GroupKeyRefused(UNKNOWN_GMS, f"group keys from {doc.gms_uri} are not accepted: it is not a trusted "
                                           "GMS of this account (trusted_gms in the accounts file)")
    if claimed_sender != doc.gms_uri:
        raise GroupKeyRefused(UNKNOWN_GMS, f"the group key names GMS {doc.gms_uri} but was sent by {claimed_sender}")
    try:
        verified = responder().process(doc.imessage, now=None, claimed_sender=doc.gms_uri)
    except CryptoError as exc:
        raise GroupKeyRefused(BAD_MESSAGE, f"MIKEY-SAKKE: {exc}") from None
    return group_key_from(verified, doc.group_uri, doc.members)


class GroupKeyInbox:
    """Group-key MESSAGEs into the keystore, for commands that do not run a full Messenger
    (``softphone register``, ``call``, ``answer``): :meth:`install` takes the UA's inbound MESSAGEs,
    stores group keys and answers anything else 415 (a store-and-forward keeps it for ``message listen``).

    Answers as :class:`softphone.messaging.messenger.Messenger` does: 200 stored, 200 + Warning
    ``group key refused (REASON): …`` for final refusals, 480 when our own keys are missing."""

    def __init__(self, uri: str, keystore: Keystore, trusted_gms: frozenset[str] | tuple[str, ...],
                 on_key: Callable[[GroupKey], None] | None = None) -> None:
        self.uri = uri
        self.keystore = keystore
        self.trusted_gms = frozenset(trusted_gms)
        self.on_key = on_key
        self.refused: dict[str, int] = {}
        self._responder: Responder | None = None
        self._periods: tuple[int, ...] = ()

    def responder(self) -> Responder:
        sets = self.keystore.mikey_key_sets(self.uri)
        periods = tuple(k.key_period_no for k in sets)
        if not sets:
            raise NoOwnKeys(f"no key sets held for {self.uri}")
        if self._responder is None or periods != self._periods:
            trusted = [self.keystore.kms_params(c.kms_uri) for c in self.keystore.certificates()]
            self._responder = Responder(sets, trusted_kms=trusted, check_replay=False)
            self._periods = periods
        return self._responder

    def handle(self, sender: str, body: bytes) -> tuple[int, str | None]:
        try:
            key = open_group_key(body, sender, self.responder, self.trusted_gms)
        except NoOwnKeys as exc:
            return 480, f"cannot open the group key yet: {exc}"
        except GroupKeyRefused as exc:
            self.refused[exc.reason] = self.refused.get(exc.reason, 0) + 1
            log.warning("refused a group key claimed from %s: %s", sender, exc)
            return 200, f"{GROUP_KEY_REFUSED} ({exc.reason}): {exc.detail}"
        try:
            self.keystore.add_group_key(key)
        except KeysError as exc:
            log.warning("cannot store the group key of %s: %s", key.group_uri, exc)
            return 500, "cannot store the group key"
        log.info("group key %08x of %s from %s stored", key.gmk_id, key.group_uri, key.gms_uri)
        if self.on_key is not None:
            self.on_key(key)
        return 200, None

    def install(self, ua: UserAgent) -> None:
        def on_message(inbound: InboundMessage) -> tuple[int, str | None]:
            if not is_group_document(inbound.content_type):
                return 415, "only group keys are taken here: run 'softphone message listen' for messages"
            return self.handle(inbound.sender, inbound.body)

        accept_messages(ua, on_message)
