"""Group call control without a network: the offer carries no key, the focus's answer is accepted, the
resolver names senders from the MKI, and every event says "group-keyed", never "verified"."""

from __future__ import annotations

import pytest

from focus.service import answer_sdp
from softphone.calls.events import CallStatus, GroupStatus, MemberHeard, MembersHeard, PeerAssurance, describe_peer
from softphone.calls.group import group_answer, group_offer, group_resolver, own_sender_key
from softphone.calls.negotiation import NegotiationError
from softphone.calls.profile import load_profile
from softphone.cli.call import Printer
from softphone.keys.groups import GroupKey, NoActiveGroupKey

GROUP = "sip:team@lab.test"
MEMBERS = ("sip:alice@lab.test", "sip:bob@lab.test")


def key(owner: str, gmk_id: int = 7, activation: int = 0, gmk: bytes = bytes(16)) -> GroupKey:
    return GroupKey(GROUP, gmk_id, gmk, bytes(16), owner, "sip:gms@lab.test", activation=activation, members=MEMBERS)


def test_offer_has_no_key_and_the_focus_answer_is_group_keyed() -> None:
    profile = load_profile("securechorus")
    offer = group_offer("127.0.0.1", 5004, profile)
    assert b"RTP/SAVP" in offer and b"key-mgmt" not in offer and b"crypto" not in offer
    own = own_sender_key([key(MEMBERS[0])], GROUP, 1000.0)
    neg = group_answer(answer_sdp(offer, "127.0.0.1", 40000), profile, own, 7)
    assert neg.remote_addr == ("127.0.0.1", 40000) and neg.key_id == "00000007"
    assert neg.peer_assurance is PeerAssurance.GROUP_KEYED and neg.peer_identity is None
    with pytest.raises(NegotiationError):
        group_answer(offer.replace(b"RTP/SAVP", b"RTP/AVP"), profile, own, 7)


def test_own_key_is_the_active_gmk_and_the_resolver_names_the_sender() -> None:
    keys_a = [key(MEMBERS[0], 7, 0), key(MEMBERS[0], 8, 500, bytes(range(16)))]
    keys_b = [key(MEMBERS[1], 7, 0), key(MEMBERS[1], 8, 500, bytes(range(16)))]
    a = own_sender_key(keys_a, GROUP, 1000.0)
    assert a.mki[:4] == (8).to_bytes(4, "big") and a.member == MEMBERS[0]
    assert own_sender_key(keys_a, GROUP, 100.0).mki[:4] == (7).to_bytes(4, "big")  # GMK 8 not yet active
    seen = group_resolver(lambda: keys_b, lambda: 1000.0)(a.mki)
    assert seen is not None and seen.member == MEMBERS[0]
    assert (seen.master_key, seen.master_salt) == (a.master_key, a.master_salt)
    assert group_resolver(lambda: keys_b[:1], lambda: 1000.0)(a.mki) is None  # GMK 8 not held
    with pytest.raises(NoActiveGroupKey):
        own_sender_key(keys_a, "sip:other@lab.test", 1000.0)
    assert a.master_key.hex() not in repr(a)


def test_members_heard_event_says_group_keyed() -> None:
    group = GroupStatus(GROUP, "00000008", (MemberHeard(MEMBERS[1], "0000000812345678", 50, 0),), 3, 0)
    ev = MembersHeard("c1", CallStatus("confirmed", GROUP, None, None, group))
    out = ev.to_json()
    assert out["event"] == "members" and out["unknown_mki"] == 3 and out["gmk_id"] == "00000008"
    assert out["members_heard"] == [{"member": MEMBERS[1], "mki": "0000000812345678", "packets": 50,
                                     "auth_failures": 0, "assurance": "group-keyed"}]
    line = Printer.describe(ev)
    assert line is not None and MEMBERS[1] in line and "group-keyed" in line and "not verified" in line
    assert "group-keyed" in describe_peer(GROUP, PeerAssurance.GROUP_KEYED)
