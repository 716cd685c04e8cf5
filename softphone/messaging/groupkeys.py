"""Group keys arriving from a GMS (GROUP-MESSAGING.md §1.1): a group-key document in a SIP MESSAGE.

The I_MESSAGE inside is verified like any other (``Responder``: signature under the GMS's identity,
receiver = us, SAKKE with our RSK), but only when its signer is a GMS this account trusts
(``trusted_gms`` in the accounts file) and is the SIP sender; then it must carry a GMK whose CSB ID is
our own GUK-ID. The result is a :class:`GroupKey` for the keystore, with the document's member list.
No I/O here: bytes and the sender in, a GroupKey or a :class:`GroupKeyRefused` out.
"""

from __future__ import annotations

from collections.abc import Callable

from crypto.errors import CryptoError
from crypto.kdf import guk_id
from crypto.mikey.keys import KeyType
from crypto.mikey.verify import Responder, VerifiedMessage
from kmsinterface.groupdoc import GroupDocError, GroupDocument
from softphone.keys.groups import GroupKey

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
