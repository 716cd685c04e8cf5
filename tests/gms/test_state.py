"""The GMS group state machine under explicit time, and its sealed store."""

from __future__ import annotations

import stat

import pytest

from crypto.mikey.keys import KeyType, key_type_of
from gms import store
from gms.errors import GmsError, UnknownGroup
from gms.state import GroupState

T0 = 1_790_000_000
G = "sip:team@lab.test"
M = tuple(f"sip:{n}@lab.test" for n in ("alice", "bob", "carol", "dave"))


def test_create_sends_one_gmk_and_rand_to_every_member() -> None:
    s = GroupState()
    out = s.create(G, list(M), T0, lifetime=3600, text="Team")
    assert [d.member for d in out] == list(M)
    assert len({d.gmk.gmk_id for d in out}) == 1 and len({d.gmk.rand for d in out}) == 1
    gmk = out[0].gmk
    assert key_type_of(gmk.gmk_id) is KeyType.GMK
    assert (gmk.activation, gmk.expiry, gmk.text, gmk.members) == (T0, T0 + 3600, "Team", M)
    assert len(gmk.gmk) == 16 and gmk.gmk.hex() not in repr(gmk) and gmk.rand.hex() not in repr(gmk)


def test_remove_rekeys_the_remaining_members_only() -> None:
    s = GroupState()
    first = s.create(G, list(M), T0)[0].gmk
    out = s.remove(G, M[3], T0 + 60)
    assert [d.member for d in out] == list(M[:3])
    new = out[0].gmk
    assert new.gmk_id != first.gmk_id and new.gmk != first.gmk and new.rand != first.rand
    assert (new.activation, new.members) == (T0 + 60, M[:3])
    assert s.get(G).members == M[:3] and s.get(G).current == new
    later = s.remove(G, M[2], T0 + 120, activation=T0 + 600)[0].gmk
    assert later.activation == T0 + 600


def test_add_gets_the_current_gmk_without_rekey() -> None:
    s = GroupState()
    s.create(G, list(M[:3]), T0)
    out = s.add(G, M[3], T0 + 5)
    assert [d.member for d in out] == [M[3]] and len(s.get(G).gmks) == 1
    assert out[0].gmk.members == M


def test_rekey_keeps_members_and_adds_a_gmk() -> None:
    s = GroupState()
    s.create(G, list(M), T0)
    out = s.rekey(G, T0 + 10)
    assert [d.member for d in out] == list(M) and len(s.get(G).gmks) == 2
    pub = s.get(G).public(T0 + 10)
    assert [g["current"] for g in pub["gmks"]] == [False, True]
    assert "gmk" not in pub["gmks"][0] and "rand" not in pub["gmks"][0]


@pytest.mark.parametrize(("action", "message"), [
    (lambda s: s.create(G, list(M), T0), "exists already"),
    (lambda s: s.create("team", list(M), T0), "is not a group URI"),
    (lambda s: s.create("sip:x@lab.test", [], T0), "at least one --member"),
    (lambda s: s.add(G, M[0], T0), "already a member"),
    (lambda s: s.remove(G, "sip:zed@lab.test", T0), "is not a member"),
])
def test_refusals_are_one_line(action, message: str) -> None:
    s = GroupState()
    s.create(G, list(M), T0)
    with pytest.raises(GmsError, match=message):
        action(s)


def test_unknown_group() -> None:
    with pytest.raises(UnknownGroup, match="no group sip:nope@lab.test"):
        GroupState().rekey("sip:nope@lab.test", T0)


def test_store_is_sealed_0600_and_round_trips(tmp_path) -> None:
    s = GroupState()
    gmk = s.create(G, list(M), T0)[0].gmk
    path = tmp_path / "groups.sealed"
    store.save(path, s, b"correct horse battery", n_log2=17)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert gmk.gmk.hex().encode() not in raw and G.encode() not in raw
    back = store.load(path, b"correct horse battery")
    assert back.get(G) == s.get(G)
    with pytest.raises(GmsError, match="cannot open"):
        store.load(path, b"wrong passphrase!!")
