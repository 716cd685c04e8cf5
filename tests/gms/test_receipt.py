"""GMS → phone without the network: the GMS's per-member I_MESSAGEs verified and stored by members;
unknown and forged signers refused; the Streamwide Test 1 vendor GMK accepted into the keystore."""

from __future__ import annotations

import pytest

from crypto.eccsi import EccsiMasterKey
from crypto.identity import key_period_no, ntp_seconds
from crypto.kdf import guk_id
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.sdp import decode_key_mgmt
from crypto.mikey.verify import Responder
from crypto.sakke import SakkeMasterKey
from gms.keys import GmsSigner
from gms.state import GroupState
from kmsinterface.groupdoc import GroupDocument
from softphone.keys.groups import active_key
from softphone.keys.keystore import Keystore
from softphone.messaging.groupkeys import BAD_MESSAGE, UNKNOWN_GMS, GroupKeyRefused, group_key_from, open_group_key

PERIOD = 2592000
NOW = 1_790_000_000
GROUP = "sip:team@example.org"
GMS = "sip:gms@example.org"
MEMBERS = tuple(f"sip:{n}@example.org" for n in ("alice", "bob", "carol", "dave"))


class World:
    def __init__(self) -> None:
        self.eccsi = EccsiMasterKey.generate()
        self.sakke = SakkeMasterKey.generate()
        self.kms = KmsParams("kms.example.org", PERIOD, 0, self.sakke.Z, self.eccsi.kpak)
        self.n = key_period_no(ntp_seconds(NOW), PERIOD, 0)

    def user(self, uri: str) -> UserKeys:
        uid = self.kms.uid(uri, self.n)
        ssk, pvt = self.eccsi.issue(uid)
        return UserKeys(uri, self.kms, self.n, ssk, pvt, self.sakke.issue_rsk(uid))


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def keys(world: World) -> dict[str, UserKeys]:
    return {u: world.user(u) for u in (GMS, *MEMBERS, "sip:mallory@example.org")}


def _signer(keys: dict[str, UserKeys], uri: str = GMS) -> GmsSigner:
    return GmsSigner(uri, None, {keys[uri].key_period_no: Initiator(keys[uri])})


def _open(keys: dict[str, UserKeys], member: str, doc: GroupDocument, sender: str = GMS,
          trusted: tuple[str, ...] = (GMS,)):
    return open_group_key(doc.encode(), sender, lambda: Responder(keys[member], check_replay=False), trusted)


def test_every_member_gets_the_same_gmk_and_its_own_guk_id(keys, tmp_path) -> None:
    state = GroupState()
    signer = _signer(keys)
    deliveries = state.create(GROUP, list(MEMBERS), NOW, lifetime=86400, text="Team")
    got = {}
    for d in deliveries:
        doc = signer.document(d, NOW)
        assert d.gmk.gmk.hex() not in doc.encode().decode()
        got[d.member] = _open(keys, d.member, doc)
    gmk = deliveries[0].gmk
    assert {k.gmk_id for k in got.values()} == {gmk.gmk_id}
    assert {k.gmk for k in got.values()} == {gmk.gmk} and {k.rand for k in got.values()} == {gmk.rand}
    for m, k in got.items():
        assert (k.group_uri, k.own_uri, k.gms_uri, k.members) == (GROUP, m, GMS, MEMBERS)
        assert (k.activation, k.expiry, k.text, k.revoked) == (NOW, NOW + 86400, "Team", False)
        assert k.own_guk_id == guk_id(gmk.gmk, gmk.gmk_id, m)
    assert len({k.own_guk_id for k in got.values()}) == 4
    # the per-sender keys agree: what alice sends with is what bob derives for alice's GUK-ID
    alice, bob = got[MEMBERS[0]], got[MEMBERS[1]]
    assert bob.sender_srtp(alice.own_guk_id) == alice.own_srtp()
    store = Keystore.create(tmp_path / "bob.keystore", b"a long keystore passphrase")
    assert store.add_group_key(bob)
    assert active_key(store.group_keys(GROUP), GROUP, NOW + 1).gmk_id == gmk.gmk_id


def test_removed_member_gets_no_new_key(keys) -> None:
    state = GroupState()
    signer = _signer(keys)
    state.create(GROUP, list(MEMBERS), NOW)
    rekey = state.remove(GROUP, MEMBERS[3], NOW + 60)
    assert MEMBERS[3] not in [d.member for d in rekey]
    # the new GMK's message for carol cannot be opened by dave (receiver identity is carol's)
    doc = signer.document(rekey[2], NOW + 60)
    with pytest.raises(GroupKeyRefused, match="another receiver") as err:
        _open(keys, MEMBERS[3], doc)
    assert err.value.reason == BAD_MESSAGE


def test_unknown_gms_is_refused_in_words(keys) -> None:
    state = GroupState()
    d = state.create(GROUP, list(MEMBERS), NOW)[0]
    doc = _signer(keys, "sip:mallory@example.org").document(d, NOW)
    with pytest.raises(GroupKeyRefused, match="not a trusted GMS") as err:
        _open(keys, MEMBERS[0], doc, sender="sip:mallory@example.org")
    assert err.value.reason == UNKNOWN_GMS
    with pytest.raises(GroupKeyRefused, match="not a trusted GMS"):
        _open(keys, MEMBERS[0], doc, sender="sip:mallory@example.org", trusted=())


def test_forged_gms_signature_is_refused(keys) -> None:
    """Mallory signs with her own key but names the trusted GMS: the ECCSI check under the GMS's UID fails."""
    state = GroupState()
    d = state.create(GROUP, list(MEMBERS), NOW)[0]
    forged = _signer(keys, "sip:mallory@example.org").document(d, NOW)
    doc = GroupDocument(forged.group_uri, GMS, forged.members, forged.imessage)
    with pytest.raises(GroupKeyRefused, match="MIKEY-SAKKE") as err:
        _open(keys, MEMBERS[0], doc)
    assert err.value.reason == BAD_MESSAGE
    # and a trusted GMS's document relayed by someone else is refused too
    good = _signer(keys).document(d, NOW)
    with pytest.raises(GroupKeyRefused, match="was sent by sip:mallory@example.org"):
        _open(keys, MEMBERS[0], good, sender="sip:mallory@example.org")


def test_bad_document_is_refused() -> None:
    with pytest.raises(GroupKeyRefused, match="not a group-key document") as err:
        open_group_key(b"[1]", GMS, lambda: pytest.fail("no verification"), (GMS,))  # type: ignore[arg-type,return-value]
    assert err.value.reason == BAD_MESSAGE


def test_streamwide_test1_vendor_gmk_accepted_into_the_store(vectors_dir, streamwide_keysets, tmp_path) -> None:
    ks = streamwide_keysets["streamwide_official_v5"]
    kms = KmsParams(ks["kms_uri"], ks["user_key_period"], ks["user_key_offset"],
                    bytes.fromhex(ks["Z"]), bytes.fromhex(ks["KPAK"]))
    alice_keys = ks["users"]["sip:alice@streamwide.com"]
    alice = UserKeys("sip:alice@streamwide.com", kms, 236, bytes.fromhex(alice_keys["SSK"]),
                     bytes.fromhex(alice_keys["PVT"]), bytes.fromhex(alice_keys["RSK"]))
    data = decode_key_mgmt(next((vectors_dir / "streamwide" / "imessages").glob("imsg_15_*.txt")).read_text())
    group = "sip:group@streamwide.com"
    doc = GroupDocument(group, "gms@streamwide.com", ("sip:alice@streamwide.com", "sip:bob@streamwide.com"), data)
    key = open_group_key(doc.encode(), "gms@streamwide.com", lambda: Responder(alice, check_replay=False),
                         ("gms@streamwide.com",))
    assert (key.gmk_id, key.gmk.hex()) == (0x0DF9BC39, "07d1a1677ac36d8e81620484689b3c2d")
    assert key.rand.hex().startswith("ca2f5d51") and key.own_guk_id == 0x06A12AEA
    # GROUP-MESSAGING.md §1.2: alice's CS 4 key, and bob's GUK-ID named from the member list
    assert key.own_srtp().master_key.hex() == "acb1b4e2b2dca12291e1794a8ef84947"
    assert key.member_for(0x030A3A89) == "sip:bob@streamwide.com"
    assert key.valid_at(IMessage.parse(data).timestamp.seconds - 2_208_988_800)
    store = Keystore.create(tmp_path / "alice.keystore", b"a long keystore passphrase")
    assert store.add_group_key(key)
    assert [k.gmk_id for k in store.group_keys(group)] == [0x0DF9BC39]
    again = group_key_from(Responder(alice, check_replay=False).process(data, now=None,
                                                                        claimed_sender="gms@streamwide.com"), group)
    assert again.gmk == key.gmk
