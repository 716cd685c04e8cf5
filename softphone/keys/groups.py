"""Group master keys (GMK) as the phone holds them, and the per-sender SRTP keys they give.

A Group Management Server (GMS) sends each member the group's GMK in a MIKEY-SAKKE I_MESSAGE
(TS 33.180 §5.7, GROUP-MESSAGING.md §1): the same GMK, GMK-ID and RAND for every member, the
member's own GUK-ID as CSB ID. Media keys are per *sender* (§7.4.2): CS ID 4, CSB ID = the
sender's GUK-ID, MKI = GMK-ID ‖ GUK-ID (8 octets). A receiver reads the MKI, finds the GMK by its
first four octets and derives the sender's key from the last four.

This module is pure: values and selection rules. Where GMKs are stored (sealed, 0600) is the
keystore's business; how they arrive (SIP MESSAGE from the GMS) is messaging's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from crypto.kdf import SrtpMaster, guk_id, srtp_master
from softphone.keys.errors import KeysError

#: TS 33.180 Table E.1.3-1: MCPTT group media (both directions, one key per sender).
CS_GROUP_MEDIA = 4
MKI_LEN = 8


class GroupKeyError(KeysError):
    """A GMK is missing, expired, revoked or does not fit the MKI it was looked up by."""


class NoActiveGroupKey(GroupKeyError):
    """No GMK of this group is active now (none yet activated, or all expired/revoked)."""


class UnknownGroupKey(GroupKeyError):
    """A packet's MKI names a GMK-ID this phone does not hold (or holds only expired)."""


@dataclass(frozen=True)
class GroupKey:
    """One GMK of one group, as delivered to this member.

    ``activation``/``expiry`` are Unix seconds; 0 means "immediately" / "no expiry" (the key
    parameters' convention, GROUP-MESSAGING.md §1.3). ``members`` are the member URIs the GMS
    listed with the key (used to name who is heard: GUK-ID(member) must match the MKI).
    """

    group_uri: str
    gmk_id: int
    gmk: bytes = field(repr=False)
    rand: bytes = field(repr=False)
    own_uri: str
    gms_uri: str
    activation: int = 0
    expiry: int = 0
    revoked: bool = False
    text: str = ""
    members: tuple[str, ...] = ()

    def valid_at(self, now: float) -> bool:
        return (not self.revoked and self.activation <= now
                and (self.expiry == 0 or now < self.expiry))

    def guk_id_of(self, member_uri: str) -> int:
        return guk_id(self.gmk, self.gmk_id, member_uri)

    @property
    def own_guk_id(self) -> int:
        return self.guk_id_of(self.own_uri)

    def sender_srtp(self, sender_guk_id: int) -> SrtpMaster:
        """SRTP master key/salt a sender with ``sender_guk_id`` uses (MKI = GMK-ID ‖ GUK-ID)."""
        mki = self.gmk_id.to_bytes(4, "big") + sender_guk_id.to_bytes(4, "big")
        return srtp_master(self.gmk, CS_GROUP_MEDIA, sender_guk_id, self.rand, mki)

    def own_srtp(self) -> SrtpMaster:
        """The key this member sends with."""
        return self.sender_srtp(self.own_guk_id)

    def member_for(self, sender_guk_id: int) -> str | None:
        """The listed member whose GUK-ID is ``sender_guk_id`` (a consistency check, not authentication:
        every member knows the GMK)."""
        for uri in self.members:
            if self.guk_id_of(uri) == sender_guk_id:
                return uri
        return None


def active_key(keys: Iterable[GroupKey], group_uri: str, now: float) -> GroupKey:
    """The GMK to send with: the valid one of ``group_uri`` with the latest activation ≤ now."""
    candidates = [k for k in keys if k.group_uri == group_uri and k.valid_at(now)]
    if not candidates:
        raise NoActiveGroupKey(f"no group key of {group_uri} is active now")
    return max(candidates, key=lambda k: (k.activation, k.gmk_id))


def key_for_mki(keys: Iterable[GroupKey], mki: bytes, now: float) -> tuple[GroupKey, int]:
    """The GMK and the sender's GUK-ID an 8-octet MKI names; any non-expired, non-revoked GMK is accepted
    on receive (TS 33.179 §7.3.1), whatever its activation."""
    if len(mki) != MKI_LEN:
        raise UnknownGroupKey(f"group MKI must be {MKI_LEN} octets, got {len(mki)}")
    gmk_id = int.from_bytes(mki[:4], "big")
    sender = int.from_bytes(mki[4:], "big")
    for k in keys:
        if k.gmk_id == gmk_id and not k.revoked and (k.expiry == 0 or now < k.expiry):
            return k, sender
    raise UnknownGroupKey(f"no usable group key with GMK-ID {gmk_id:08x}")
