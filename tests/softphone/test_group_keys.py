"""GroupKey: per-sender SRTP keys pinned by the etherstack vectors (tests/vectors/mikey_kdf_guk.txt)
and the active/receive selection rules of TS 33.179 §7.3.1."""

from __future__ import annotations

import pytest

from softphone.keys.groups import GroupKey, NoActiveGroupKey, UnknownGroupKey, active_key, key_for_mki

GMK = bytes.fromhex("fcfe65cd967c58d260b603ccb9a887a9")
RAND = bytes.fromhex("6819e679461120e10ac458cce67b8024")
MEMBERS = ("sip:p25user01@etherstack.com", "sip:p25user02@etherstack.co.jp", "sip:92100002447@att.com")


def key(own: str = MEMBERS[0], **kw: object) -> GroupKey:
    args: dict = dict(group_uri="sip:team@etherstack.com", gmk_id=0x09BF9D37, gmk=GMK, rand=RAND, own_uri=own,
                      gms_uri="sip:gms@etherstack.com", members=MEMBERS)
    args.update(kw)
    return GroupKey(**args)


@pytest.mark.parametrize(("uri", "guk", "mk", "ms"), [
    (MEMBERS[0], 0x01C8DE7B, "64837d2b4d69a266e4489d3807353ad9", "8b2f081ce8e8bdab1f8d9eb8"),
    (MEMBERS[1], 0x0ABE69D0, "de81b70c4ae0ff3f79364df586c2e0ce", "750ea7422b4d5a8ff475c6d5"),
    (MEMBERS[2], 0x0C449727, "f097ac3325f1f784bc8ba4112c5e5f88", "97a154fb24efbfb353a265e2"),
])
def test_sender_keys_match_the_etherstack_vectors(uri: str, guk: int, mk: str, ms: str) -> None:
    k = key(own=uri)
    assert k.own_guk_id == guk
    s = k.own_srtp()
    assert (s.cs_id, s.master_key.hex(), s.master_salt.hex()) == (4, mk, ms)
    assert s.mki == bytes.fromhex("09bf9d37") + guk.to_bytes(4, "big")
    # another member derives the same key from the MKI alone
    other = key(own=MEMBERS[(MEMBERS.index(uri) + 1) % 3])
    found, sender = key_for_mki([other], s.mki, now=0)
    assert found is other and other.sender_srtp(sender) == s
    assert other.member_for(sender) == uri


def test_repr_hides_the_gmk() -> None:
    assert GMK.hex() not in repr(key()) and "rand" not in repr(key())


def test_active_key_is_latest_activation_not_after_now() -> None:
    old = key(gmk_id=0x01, activation=100)
    new = key(gmk_id=0x02, activation=200)
    later = key(gmk_id=0x03, activation=300)
    assert active_key([old, new, later], "sip:team@etherstack.com", now=250) is new
    assert active_key([old, new, later], "sip:team@etherstack.com", now=150) is old
    with pytest.raises(NoActiveGroupKey):
        active_key([old], "sip:team@etherstack.com", now=50)
    with pytest.raises(NoActiveGroupKey):
        active_key([key(expiry=10)], "sip:team@etherstack.com", now=10)
    with pytest.raises(NoActiveGroupKey):
        active_key([key(revoked=True)], "sip:team@etherstack.com", now=10)


def test_receive_accepts_any_unexpired_key_by_mki_even_before_activation() -> None:
    pending = key(gmk_id=0x02, activation=1000)
    mki = (0x02).to_bytes(4, "big") + (7).to_bytes(4, "big")
    assert key_for_mki([pending], mki, now=10) == (pending, 7)
    with pytest.raises(UnknownGroupKey):
        key_for_mki([key(gmk_id=0x02, expiry=5)], mki, now=10)
    with pytest.raises(UnknownGroupKey):
        key_for_mki([pending], mki[:4], now=10)
    with pytest.raises(UnknownGroupKey):
        key_for_mki([key(gmk_id=0x03)], mki, now=10)


def test_keystore_keeps_group_keys_sealed_across_reopen(tmp_path) -> None:
    from softphone.keys.keystore import Keystore

    path = tmp_path / "ks"
    pw = b"correct horse battery staple 42"
    ks = Keystore.create(path, pw, n_log2=10)
    assert ks.add_group_key(key()) is True and ks.add_group_key(key()) is False
    assert ks.add_group_key(key(gmk_id=0x2, activation=5)) is True
    assert GMK not in path.read_bytes() and GMK.hex().encode() not in path.read_bytes()
    again = Keystore.open(path, pw)
    assert again.group_keys("sip:team@etherstack.com") == [key(), key(gmk_id=0x2, activation=5)]
    assert again.remove_group("sip:team@etherstack.com") == 2 and Keystore.open(path, pw).group_keys() == []
