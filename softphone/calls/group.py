"""Group calls at the call layer: which URIs are groups, and the keys group media sends and opens with.

A call to a URI for which the keystore holds group keys (GMKs, :mod:`softphone.keys.groups`) is a group
call: it goes to the group's focus, the SDP carries no ``a=key-mgmt`` (the key is the GMK the GMS gave every
member beforehand), we send with the per-sender key of the *active* GMK and open each other member's
packets with the key its MKI names. Naming who is heard from the MKI's GUK-ID is a consistency check, not
authentication — every member knows the GMK — so it is shown as "group-keyed", never "verified".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from softphone.keys.groups import GroupKey, UnknownGroupKey, active_key, key_for_mki
from softphone.media.group import Resolver, SenderKey

GROUP_KEYED = "group-keyed"


def own_sender_key(keys: Iterable[GroupKey], group_uri: str, now: float) -> SenderKey:
    """Our key for a call to ``group_uri`` now (:class:`~softphone.keys.groups.NoActiveGroupKey` if none)."""
    key = active_key(keys, group_uri, now)
    master = key.own_srtp()
    return SenderKey(master.master_key, master.master_salt, master.mki, key.own_uri)


def group_resolver(keys: Callable[[], Iterable[GroupKey]], now: Callable[[], float]) -> Resolver:
    """``mki`` → the sender's key from whichever of our GMKs the MKI names (None: no usable GMK)."""
    def resolve(mki: bytes) -> SenderKey | None:
        try:
            key, sender = key_for_mki(keys(), mki, now())
        except UnknownGroupKey:
            return None
        master = key.sender_srtp(sender)
        return SenderKey(master.master_key, master.master_salt, master.mki, key.member_for(sender))
    return resolve
