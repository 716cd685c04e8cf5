"""Builder → verifier round trips with a fresh KMS, and every way a message must be refused."""

from __future__ import annotations

import pytest

from crypto.eccsi import EccsiMasterKey
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey import payloads as pl
from crypto.mikey.build import Initiator
from crypto.mikey.errors import (
    ExpiredKeyPeriod,
    IdentityMismatch,
    KeyUnwrapFailed,
    MalformedMessage,
    MikeyError,
    ReplayedMessage,
    SignatureRejected,
    StaleTimestamp,
    UnsupportedMessage,
)
from crypto.mikey.keys import KeyType, KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.verify import ReplayCache, Responder
from crypto.sakke import SakkeMasterKey

PERIOD = 2592000
NOW = ntp_seconds(1_790_000_000)


class World:
    """A throwaway KMS issuing key sets (the real thing is kms/; here only the maths)."""

    def __init__(self, kms_uri: str = "kms.example.org") -> None:
        self.eccsi = EccsiMasterKey.generate()
        self.sakke = SakkeMasterKey.generate()
        self.kms = KmsParams(kms_uri, PERIOD, 0, self.sakke.Z, self.eccsi.kpak)

    def user(self, uri: str, period_no: int | None = None) -> UserKeys:
        n = key_period_no(NOW, PERIOD, 0) if period_no is None else period_no
        uid = self.kms.uid(uri, n)
        ssk, pvt = self.eccsi.issue(uid)
        return UserKeys(uri, self.kms, n, ssk, pvt, self.sakke.issue_rsk(uid))


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def alice(world: World) -> UserKeys:
    return world.user("sip:alice@example.org")


@pytest.fixture(scope="module")
def bob(world: World) -> UserKeys:
    return world.user("sip:bob@example.org")


@pytest.mark.parametrize("kt", [KeyType.PCK, KeyType.GMK, KeyType.CSK])
def test_round_trip(kt: KeyType, alice: UserKeys, bob: UserKeys) -> None:
    built = Initiator(alice).build(bob.uri, key_type=kt, ntp_time=NOW)
    v = Responder(bob, replay_cache=ReplayCache()).process(built.data, claimed_sender=alice.uri, now=NOW + 3)
    assert (v.key, v.key_id, v.key_type, v.csb_id) == (built.key, built.key_id, kt, built.csb_id)
    assert v.srtp == built.srtp and len(v.srtp) >= 2
    assert v.key_parameters is not None and v.key_parameters.key_type == int(kt)
    assert v.signature_scope == "standard" and v.sender_uri == alice.uri and v.ntp_seconds == NOW
    if kt is KeyType.GMK:
        assert v.csb_id != v.key_id and v.mki == built.key_id.to_bytes(4, "big") + built.csb_id.to_bytes(4, "big")
        assert IMessage.parse(built.data).header.map_type == pl.MAP_GENERIC_ID
    else:
        assert v.mki == built.key_id.to_bytes(4, "big")
    for secret in (built.key.hex(), v.srtp[min(v.srtp)].master_key.hex()):
        assert secret not in repr(v) and secret not in repr(built) and secret not in repr(v.srtp)


def test_explicit_values_are_used(alice: UserKeys, bob: UserKeys) -> None:
    key, rand = bytes(range(16)), bytes(range(100, 116))
    built = Initiator(alice).build(bob.uri, key=key, key_id=0x1ABCDEF0, rand=rand, ntp_time=NOW)
    msg = IMessage.parse(built.data)
    assert (msg.header.csb_id, msg.rand.data, msg.timestamp.seconds) == (0x1ABCDEF0, rand, NOW)
    assert msg.header.map_type == pl.MAP_EMPTY and msg.header.prf == 1 and msg.header.data_type == 26
    v = Responder(bob).process(built.data, claimed_sender=alice.uri, now=None)
    assert v.key == key


def test_every_signed_bit_flip_is_rejected(alice: UserKeys, bob: UserKeys) -> None:
    built = Initiator(alice).build(bob.uri, ntp_time=NOW)
    data = built.data
    signed_len = len(data) - 129
    rx = Responder(bob, precompute=True)
    rx.process(data, claimed_sender=alice.uri, now=None)
    for bit in range(signed_len * 8):
        bad = bytearray(data)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(MikeyError):
            rx.process(bytes(bad), claimed_sender=alice.uri, now=None)


def test_signature_bit_flips_are_rejected(alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    rx = Responder(bob)
    for octet in range(len(data) - 129, len(data), 3):
        bad = bytearray(data)
        bad[octet] ^= 0x01
        with pytest.raises((SignatureRejected, MalformedMessage)):
            rx.process(bytes(bad), claimed_sender=alice.uri, now=None)


def test_replay_is_rejected(alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    rx = Responder(bob, replay_cache=ReplayCache(window_seconds=300))
    rx.process(data, claimed_sender=alice.uri, now=NOW)
    with pytest.raises(ReplayedMessage, match="replayed"):
        rx.process(data, claimed_sender=alice.uri, now=NOW + 1)
    # ECCSI is malleable: (r, q - s) verifies too, so a replay with the twin signature is the same message.
    from crypto.eccsi import verify
    q = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    sig = data[-129:]
    twin = sig[:32] + (q - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + sig[64:]
    verify(data[:-129], twin, alice.uid, alice.kms.kpak)
    with pytest.raises(ReplayedMessage):
        rx.process(data[:-129] + twin, claimed_sender=alice.uri, now=NOW + 2)


def test_replay_protection_is_on_by_default(alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    rx = Responder(bob)
    rx.process(data, claimed_sender=alice.uri, now=NOW)
    with pytest.raises(ReplayedMessage):
        rx.process(data, claimed_sender=alice.uri, now=NOW)
    shared = ReplayCache()
    Responder(bob, replay_cache=shared).process(data, claimed_sender=alice.uri, now=NOW)
    with pytest.raises(ReplayedMessage):
        Responder(bob, replay_cache=shared).process(data, claimed_sender=alice.uri, now=NOW)
    assert len(shared) == 1
    lenient = Responder(bob, check_replay=False)
    for _ in range(2):
        lenient.process(data, claimed_sender=alice.uri, now=None)


def test_stale_and_future_timestamps(alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    rx = Responder(bob, window_seconds=60)
    with pytest.raises(StaleTimestamp, match="window"):
        rx.process(data, claimed_sender=alice.uri, now=NOW + 61)
    with pytest.raises(StaleTimestamp):
        rx.process(data, claimed_sender=alice.uri, now=NOW - 61)
    assert rx.process(data, claimed_sender=alice.uri, now=NOW + 60).key_type is KeyType.PCK


def test_message_for_another_identity(world: World, alice: UserKeys, bob: UserKeys) -> None:
    carol = world.user("sip:carol@example.org")
    data = Initiator(alice).build(carol.uri, ntp_time=NOW).data
    with pytest.raises(IdentityMismatch, match="another receiver"):
        Responder(bob).process(data, claimed_sender=alice.uri, now=None)
    with pytest.raises(IdentityMismatch, match="claimed sender"):
        Responder(carol).process(data, claimed_sender=bob.uri, now=None)


def test_expired_key_period(world: World, alice: UserKeys, bob: UserKeys) -> None:
    later = NOW + 3 * PERIOD
    n = key_period_no(later, PERIOD, 0)
    data = Initiator(world.user(alice.uri, n)).build(bob.uri, ntp_time=later).data
    with pytest.raises(ExpiredKeyPeriod, match=f"no key set for key period {n}"):
        Responder(bob).process(data, claimed_sender=alice.uri, now=None)
    with pytest.raises(ExpiredKeyPeriod, match="sender key set is for key period"):
        Initiator(alice).build(bob.uri, ntp_time=later)


def test_wrong_rsk_or_other_kms(world: World, alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    other = World()
    # Same URIs, other KMS: UIDs differ only if the KMS URI differs, so the signature is the first to fail.
    with pytest.raises(SignatureRejected):
        Responder(other.user(bob.uri)).process(data, claimed_sender=alice.uri, now=None)
    wrong_rsk = UserKeys(bob.uri, bob.kms, bob.key_period_no, rsk=other.user(bob.uri).rsk)
    with pytest.raises(KeyUnwrapFailed):
        Responder(wrong_rsk).process(data, claimed_sender=alice.uri, now=None)


@pytest.mark.parametrize("cut", [0, 1, 9, 10, 20, 100, 300, 500, -130, -1])
def test_truncated_messages(cut: int, alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    with pytest.raises(MalformedMessage, match="truncated"):
        Responder(bob).process(data[:cut], claimed_sender=alice.uri, now=None)


def test_trailing_octets_and_shape_errors(alice: UserKeys, bob: UserKeys) -> None:
    data = Initiator(alice).build(bob.uri, ntp_time=NOW).data
    rx = Responder(bob)
    with pytest.raises(MalformedMessage, match="trailing"):
        rx.process(data + b"\x00", claimed_sender=alice.uri, now=None)
    msg = IMessage.parse(data)
    no_sakke = IMessage.from_payloads(msg.header, [p for p in msg.payloads if not isinstance(p, pl.SakkePayload)])
    with pytest.raises(MalformedMessage, match="no SAKKE"):
        rx.process(no_sakke.raw, claimed_sender=alice.uri, now=None)
    other_type = IMessage.from_payloads(pl.Header(msg.header.csb_id, data_type=27), msg.payloads)
    with pytest.raises(UnsupportedMessage, match="data type 27"):
        rx.process(other_type.raw, claimed_sender=alice.uri, now=None)


def test_legacy_signature_scope_is_accepted_and_named(alice: UserKeys, bob: UserKeys) -> None:
    from crypto.eccsi import EccsiSigner

    msg = IMessage.parse(Initiator(alice).build(bob.uri, ntp_time=NOW).data)
    legacy_sig = EccsiSigner(alice.uid, alice.ssk, alice.pvt, alice.kms.kpak).sign(msg.raw[:-131])
    data = msg.raw[:-129] + legacy_sig
    assert Responder(bob).process(data, claimed_sender=alice.uri, now=None).signature_scope == "without-sign-header"
    with pytest.raises(SignatureRejected):
        Responder(bob, allow_legacy_scope=False).process(data, claimed_sender=alice.uri, now=None)


def test_builder_input_errors(alice: UserKeys, bob: UserKeys) -> None:
    ini = Initiator(alice)
    with pytest.raises(MikeyError, match="purpose tag 1"):
        ini.build(bob.uri, key_id=0x2000_0001, ntp_time=NOW)
    with pytest.raises(MikeyError, match="16 octets"):
        ini.build(bob.uri, key=b"short", ntp_time=NOW)
    for secret in (alice.ssk, alice.pvt, alice.rsk):
        assert secret.hex() not in repr(alice) and secret.hex() not in repr(ini)
        assert secret.hex() not in repr(Responder(alice))


def test_airbus_hex_text_identifier_quirk(world: World) -> None:
    """Quirk #9: an Airbus KMS uses the UID's hex text as ECCSI/SAKKE identifier; named when it bites."""
    from dataclasses import replace

    from crypto.mikey.keys import IDENTIFIER_UID_HEX

    airbus = replace(world.kms, identifier_form=IDENTIFIER_UID_HEX)

    def user(uri: str) -> UserKeys:
        n = key_period_no(NOW, PERIOD, 0)
        text_id = airbus.uid(uri, n).hex().encode()
        ssk, pvt = world.eccsi.issue(text_id)
        return UserKeys(uri, airbus, n, ssk, pvt, world.sakke.issue_rsk(text_id))

    a, b = user("sip:alice@example.org"), user("sip:bob@example.org")
    built = Initiator(a).build(b.uri, ntp_time=NOW)
    assert Responder(b).process(built.data, claimed_sender=a.uri, now=None).key == built.key
    standard_b = UserKeys(b.uri, world.kms, b.key_period_no, rsk=b.rsk)
    with pytest.raises(SignatureRejected, match="Airbus KMS quirk"):
        Responder(standard_b).process(built.data, claimed_sender=a.uri, now=None)


def test_peer_of_another_kms(alice: UserKeys) -> None:
    other = World("kms.other.example")
    dave = other.user("sip:dave@other.example")
    built = Initiator(alice).build(dave.uri, receiver_kms=other.kms, ntp_time=NOW)
    v = Responder(dave, trusted_kms=[alice.kms]).process(built.data, claimed_sender=alice.uri, now=None)
    assert v.key == built.key and v.sender_uid == alice.uid
    with pytest.raises(IdentityMismatch, match="not the UID of the claimed sender"):
        Responder(dave).process(built.data, claimed_sender=alice.uri, now=None)  # alice's KMS is not trusted


def test_replay_cache_is_bounded_in_time_and_size() -> None:
    cache = ReplayCache(window_seconds=10, max_entries=3)
    for i in range(5):
        cache.add(cache.check(bytes([i]), now=100), now=100)
    assert len(cache) == 3
    with pytest.raises(ReplayedMessage):
        cache.check(bytes([4]), now=100)
    cache.check(bytes([0]), now=100)  # evicted by size: no longer known
    cache.check(bytes([4]), now=121)  # older than twice the window: forgotten
    assert len(cache) == 0


def test_short_h_sed_from_minimal_length_senders_is_accepted(alice: UserKeys, bob: UserKeys) -> None:
    """Streamwide's GMP build and jim-b drop leading zero octets of H (SED of 258..272 octets)."""
    from crypto.eccsi import EccsiSigner

    for i in range(4000):
        key = i.to_bytes(16, "big")
        built = Initiator(alice).build(bob.uri, key=key, key_id=0x10000000 | i, ntp_time=NOW)
        sed = built.imessage.sakke.sed
        if sed[257] == 0:
            break
    else:
        pytest.fail("no H with a leading zero octet in 4000 keys")
    short = pl.SakkePayload(sed[:257] + sed[258:])
    body = [short if isinstance(p, pl.SakkePayload) else p for p in built.imessage.payloads[:-1]]
    unsigned = IMessage.from_payloads(built.imessage.header, body + [pl.Sign(bytes(129))])
    signer = EccsiSigner(alice.uid, alice.ssk, alice.pvt, alice.kms.kpak)
    data = IMessage.from_payloads(built.imessage.header, body + [pl.Sign(signer.sign(unsigned.signed_octets()))]).raw
    assert len(IMessage.parse(data).sakke.sed) == 272
    v = Responder(bob, replay_cache=ReplayCache()).process(data, claimed_sender=alice.uri, now=NOW)
    assert v.key == key


def test_random_keys_have_full_length_gr(alice: UserKeys, bob: UserKeys) -> None:
    """Fresh keys are drawn so both g^r encodings (RFC fixed, Streamwide minimal) agree (§2.9)."""
    from crypto import sakke

    receiver = sakke.SakkeReceiver(bob.crypto_id, bob.rsk, bob.kms.z)
    for _ in range(5):
        built = Initiator(alice).build(bob.uri, ntp_time=NOW)
        assert receiver.decapsulate(built.imessage.sakke.sed) == built.key


def _restamp(data: bytes, ntp_time: int, signer_keys: UserKeys) -> bytes:
    """The same I_MESSAGE with another T, re-signed by its sender (what a sender with a wrong clock,
    or one holding an old key set, can produce)."""
    from crypto.eccsi import EccsiSigner

    msg = IMessage.parse(data)
    body = [pl.Timestamp.from_ntp(ntp_time) if isinstance(p, pl.Timestamp) else p for p in msg.payloads[:-1]]
    placeholder = IMessage.from_payloads(msg.header, body + [pl.Sign(bytes(129))])
    k = signer_keys
    signature = EccsiSigner(k.crypto_id, k.ssk, k.pvt, k.kms.kpak).sign(placeholder.signed_octets())
    return IMessage.from_payloads(msg.header, body + [pl.Sign(signature)]).raw


def test_adjacent_period_keys_only_within_the_clock_skew_of_the_boundary(world: World) -> None:
    skew = 300
    n = key_period_no(NOW, PERIOD, 0)
    start = n * PERIOD  # NTP second at which period n begins (offset 0)
    a = {m: world.user("sip:alice@example.org", m) for m in (n - 1, n, n + 1)}
    b = {m: world.user("sip:bob@example.org", m) for m in (n - 1, n, n + 1)}
    bob = Responder(list(b.values()), window_seconds=skew, check_replay=False)

    def keyed(period: int, stamp: int) -> bytes:
        built = Initiator(a[period]).build(b[period].uri, ntp_time=period * PERIOD + PERIOD // 2)
        return _restamp(built.data, stamp, a[period])

    # Period n−1's keys: fine just after n starts (a sender whose clock is a little behind) ...
    v = bob.process(keyed(n - 1, start + skew - 1), claimed_sender=a[n].uri, now=start + skew - 1)
    assert v.key_period_no == n - 1
    # ... but not in the middle of period n (a month-old key set must not keep working).
    mid = start + PERIOD // 2
    with pytest.raises(ExpiredKeyPeriod, match=f"keyed for period {n - 1}"):
        bob.process(keyed(n - 1, mid), claimed_sender=a[n].uri, now=mid)
    with pytest.raises(ExpiredKeyPeriod, match=f"keyed for period {n - 1}"):
        bob.process(keyed(n - 1, start + skew + 1), claimed_sender=a[n].uri, now=start + skew + 1)
    # Period n+1's keys: only within the skew before n+1 starts, not a whole period early.
    nxt = start + PERIOD
    v = bob.process(keyed(n + 1, nxt - skew + 1), claimed_sender=a[n].uri, now=nxt - skew + 1)
    assert v.key_period_no == n + 1
    with pytest.raises(ExpiredKeyPeriod, match=f"keyed for period {n + 1}"):
        bob.process(keyed(n + 1, mid), claimed_sender=a[n].uri, now=mid)


def test_sender_key_set_of_another_period_is_refused(world: World) -> None:
    skew = 300
    n = key_period_no(NOW, PERIOD, 0)
    mid = n * PERIOD + PERIOD // 2
    old_alice = world.user("sip:alice@example.org", n - 1)
    bob = world.user("sip:bob@example.org", n)
    built = Initiator(old_alice).build(bob.uri, ntp_time=(n - 1) * PERIOD + PERIOD // 2)
    # Receiver part re-keyed for the current period, so only the sender's key set is stale.
    fresh = Initiator(world.user("sip:alice@example.org", n)).build(bob.uri, ntp_time=mid)
    msg, old = IMessage.parse(fresh.data), IMessage.parse(built.data)
    body = [old.idr(pl.ROLE_UIDI) if isinstance(p, pl.Idr) and p.role == pl.ROLE_UIDI else p
            for p in msg.payloads[:-1]]
    data = _restamp(IMessage.from_payloads(msg.header, body + [pl.Sign(bytes(129))]).raw, mid, old_alice)
    with pytest.raises(ExpiredKeyPeriod, match=f"period {n - 1}"):
        Responder(bob, window_seconds=skew, check_replay=False).process(data, claimed_sender=old_alice.uri, now=mid)


def test_prepare_builds_the_sending_side_tables_too(alice: UserKeys, bob: UserKeys) -> None:
    from crypto import sakke
    sakke._g_table.cache_clear()
    sakke._kms_key.cache_clear()
    Responder(bob, replay_cache=ReplayCache()).prepare()  # no precompute: the receiver only
    assert sakke._g_table.cache_info().currsize == 0
    Responder(bob, replay_cache=ReplayCache(), precompute=True).prepare()
    assert sakke._g_table.cache_info().currsize == 1 and sakke._kms_key.cache_info().currsize == 1
    misses = (sakke._g_table.cache_info().misses, sakke._kms_key.cache_info().misses)
    built = Initiator(bob).build(alice.uri, key_type=KeyType.PCK, ntp_time=NOW)  # same KMS: nothing built
    assert (sakke._g_table.cache_info().misses, sakke._kms_key.cache_info().misses) == misses
    v = Responder(alice, replay_cache=ReplayCache()).process(built.data, claimed_sender=bob.uri, now=NOW + 3)
    assert v.key == built.key
