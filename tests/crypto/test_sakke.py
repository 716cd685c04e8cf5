"""SAKKE (RFC 6508): the Appendix A vector bit-exactly, RSK validation, round trips, tampering."""

from __future__ import annotations

import hashlib
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import sakke
from crypto.errors import CryptoError, DecapsulationError, InvalidKey, InvalidPoint
from crypto.hashing import hash_to_integer_range
from crypto.pairing import SAKKE_CURVE


@pytest.fixture(scope="module")
def vec(rfc_vectors: dict) -> dict:
    return rfc_vectors["rfc6508_sakke"]


@pytest.fixture(scope="module")
def rfc(vec: dict) -> tuple[sakke.SakkeMasterKey, bytes, bytes]:
    master = sakke.SakkeMasterKey.from_secret(int(vec["z"], 16))
    identifier = bytes.fromhex(vec["ID_hex"])
    return master, identifier, master.issue_rsk(identifier)


@pytest.fixture(scope="module")
def receiver(rfc) -> sakke.SakkeReceiver:
    master, identifier, rsk = rfc
    return sakke.SakkeReceiver(identifier, rsk, master.Z, precompute=True)


@pytest.fixture(scope="module")
def other_kms() -> sakke.SakkeMasterKey:
    return sakke.SakkeMasterKey.generate()


def test_rfc6508_kms_values(vec: dict, rfc) -> None:
    master, _, rsk = rfc
    assert master.Z == bytes.fromhex("04" + vec["Z_x"] + vec["Z_y"])
    assert rsk == bytes.fromhex("04" + vec["RSK_x"] + vec["RSK_y"])
    sakke.validate_rsk(bytes.fromhex(vec["ID_hex"]), rsk, master.Z)


def test_rfc6508_encapsulation_is_bit_exact(vec: dict, rfc) -> None:
    master, identifier, _ = rfc
    sed = sakke.encapsulate(bytes.fromhex(vec["SSV"]), identifier, master.Z)
    assert len(sed) == 273
    assert sed == bytes.fromhex(vec["R_encoded"] + vec["H"])


def test_rfc6508_decapsulation_plain_table_and_one_shot(vec: dict, rfc, receiver) -> None:
    master, identifier, rsk = rfc
    sed = bytes.fromhex(vec["R_encoded"] + vec["H"])
    ssv = bytes.fromhex(vec["SSV"])
    assert receiver.decapsulate(sed) == ssv
    assert sakke.SakkeReceiver(identifier, rsk, master.Z).decapsulate(sed) == ssv
    assert sakke.decapsulate(sed, identifier, rsk, master.Z) == ssv


def test_hash_to_integer_range_intermediates(vec: dict, derived_vectors: dict) -> None:
    d = derived_vectors["rfc6508"]
    r = hash_to_integer_range(bytes.fromhex(vec["SSV"] + vec["ID_hex"]), SAKKE_CURVE.n)
    assert r == int(d["r_HashToIntegerRange_SSV_b_q"], 16)
    gr = bytes.fromhex(d["g_pow_r_as_F_p_integer_128_octets"])
    assert hash_to_integer_range(gr, 2**128) == int(d["mask_HashToIntegerRange_gr_2pow128"], 16)
    # n = 2^256 uses one block (lg n = 256), so the mask is the whole first v_1 block.
    assert hash_to_integer_range(gr, 2**256) >> 128 != 0
    assert hash_to_integer_range(gr, 2**256) & (2**128 - 1) == hash_to_integer_range(gr, 2**128)


def test_streamwide_v5_rsks_validate_and_decapsulate(streamwide_keysets: dict) -> None:
    ks = streamwide_keysets["streamwide_official_v5"]
    Z = bytes.fromhex(ks["Z"])
    assert len(ks["users"]) == 4
    for user in ks["users"].values():
        uid, rsk = bytes.fromhex(user["uid"]), bytes.fromhex(user["RSK"])
        receiver = sakke.SakkeReceiver(uid, rsk, Z)
        ssv = secrets.token_bytes(16)
        assert receiver.decapsulate(sakke.encapsulate(ssv, uid, Z)) == ssv


def test_streamwide_v5_pck_intermediates(streamwide_keysets: dict, derived_vectors: dict) -> None:
    d = derived_vectors["streamwide_v5_test3_pck"]
    bob = bytes.fromhex(d["receiver_uid_bob"])
    ssv = bytes.fromhex(d["SSV_PCK"])
    assert hash_to_integer_range(ssv + bob, SAKKE_CURVE.n) == int(d["r_HashToIntegerRange_SSV_b_q"], 16)
    w = bytes.fromhex(d["sakke_w_pairing_R_RSKbob"])
    assert hash_to_integer_range(w, 2**128) == int(d["sakke_mask"], 16)
    ks = streamwide_keysets["streamwide_official_v5"]
    Z = bytes.fromhex(ks["Z"])
    sed = sakke.encapsulate(ssv, bob, Z)
    assert int.from_bytes(sed[257:], "big") == int(d["sakke_mask"], 16) ^ int.from_bytes(ssv, "big")
    rsk = bytes.fromhex(ks["users"]["sip:bob@streamwide.com"]["RSK"])
    assert sakke.SakkeReceiver(bob, rsk, Z, precompute=True).decapsulate(sed) == ssv


def test_alea_u2alea_rsk_fails_others_pass(streamwide_keysets: dict) -> None:
    ks = streamwide_keysets["alea_v3"]
    Z = bytes.fromhex(ks["Z"])
    for name, user in ks["users"].items():
        args = (bytes.fromhex(user["uid"]), bytes.fromhex(user["RSK"]), Z)
        if name == "sip:u2alea@veronica-cluster":
            with pytest.raises(InvalidKey):
                sakke.validate_rsk(*args)
            with pytest.raises(InvalidKey):
                sakke.SakkeReceiver(*args)
        else:
            sakke.validate_rsk(*args)


def test_rsk_for_other_identity_or_kms_is_rejected(rfc, other_kms) -> None:
    master, identifier, rsk = rfc
    with pytest.raises(InvalidKey):
        sakke.validate_rsk(identifier + b"x", rsk, master.Z)
    with pytest.raises(InvalidKey):
        sakke.validate_rsk(identifier, rsk, other_kms.Z)
    with pytest.raises(InvalidKey):
        sakke.validate_rsk(identifier, other_kms.issue_rsk(identifier), master.Z)


def test_rsk_outside_subgroup_or_malformed_is_rejected(rfc) -> None:
    master, identifier, rsk = rfc
    with pytest.raises(InvalidKey):
        sakke.validate_rsk(identifier, b"\x04" + bytes(256), master.Z)  # order-2 point (0, 0)
    with pytest.raises(InvalidPoint):
        sakke.validate_rsk(identifier, rsk[:-1] + bytes([rsk[-1] ^ 1]), master.Z)
    with pytest.raises(InvalidPoint):
        sakke.validate_rsk(identifier, rsk, master.Z[:200])
    with pytest.raises(InvalidPoint):
        sakke.validate_rsk(identifier, rsk, b"\x04" + bytes(256))


@pytest.mark.parametrize("position", [1, 100, 200, 257, 272])
def test_tampered_sed_is_rejected(vec: dict, receiver, position: int) -> None:
    sed = bytearray(bytes.fromhex(vec["R_encoded"] + vec["H"]))
    sed[position] ^= 0x01
    with pytest.raises((DecapsulationError, InvalidPoint)):
        receiver.decapsulate(bytes(sed))


def test_wrong_rsk_or_identity_cannot_decapsulate(vec: dict, rfc, other_kms) -> None:
    master, identifier, rsk = rfc
    sed = sakke.encapsulate(secrets.token_bytes(16), b"someone-else", master.Z)
    with pytest.raises(DecapsulationError):
        sakke.SakkeReceiver(identifier, rsk, master.Z, precompute=True).decapsulate(sed)
    with pytest.raises(DecapsulationError):
        sakke.decapsulate(sed, identifier, rsk, master.Z)
    foreign = other_kms.issue_rsk(identifier)
    with pytest.raises(DecapsulationError):
        sakke.decapsulate(bytes.fromhex(vec["R_encoded"] + vec["H"]), identifier, foreign, other_kms.Z)


def test_valid_point_not_from_sender_is_rejected(vec: dict, receiver) -> None:
    fake_r = SAKKE_CURVE.encode(SAKKE_CURVE.generator)
    with pytest.raises(DecapsulationError):
        receiver.decapsulate(fake_r + bytes.fromhex(vec["H"]))
    with pytest.raises(InvalidPoint):
        receiver.decapsulate(b"\x04" + bytes(256) + bytes(16))  # order 2


@pytest.mark.parametrize("length", [0, 100, 257, 274, 290])
def test_sed_length_errors(receiver, length: int) -> None:
    with pytest.raises((DecapsulationError, InvalidPoint)):
        receiver.decapsulate(bytes(length))


def test_short_h_is_left_padded(rfc, receiver) -> None:
    """A GMP-build Streamwide sender drops leading zero octets of H (SED shorter than 273)."""
    master, identifier, _ = rfc
    for i in range(64):  # deterministic SSVs; i = 14 is the first whose H starts with 0x00
        ssv = hashlib.sha256(b"short-h-%d" % i).digest()[:16]
        sed = sakke.encapsulate(ssv, identifier, master.Z)
        if sed[257] == 0:
            assert receiver.decapsulate(sed[:257] + sed[258:]) == ssv
            return
    pytest.fail("expected a SED with a zero top octet of H among the first 64 SSVs")


def test_n256_quirk_round_trip(rfc, receiver) -> None:
    master, identifier, _ = rfc
    ssv = secrets.token_bytes(32)
    sed = sakke.encapsulate(ssv, identifier, master.Z, n_bits=256)
    assert len(sed) == 289
    assert receiver.decapsulate(sed, n_bits=256) == ssv
    with pytest.raises(DecapsulationError):
        receiver.decapsulate(sed)
    with pytest.raises(InvalidKey):
        sakke.encapsulate(ssv, identifier, master.Z)


def test_encapsulate_new_ssv(rfc, receiver) -> None:
    master, identifier, _ = rfc
    ssv, sed = sakke.encapsulate_new_ssv(identifier, master.Z)
    assert len(ssv) == 16 and len(sed) == 273
    assert receiver.decapsulate(sed) == ssv


@settings(max_examples=6, deadline=None)
@given(ssv=st.binary(min_size=16, max_size=16), identifier=st.binary(min_size=1, max_size=40))
def test_random_round_trips(other_kms, ssv: bytes, identifier: bytes) -> None:
    rsk = other_kms.issue_rsk(identifier)
    sed = sakke.encapsulate(ssv, identifier, other_kms.Z)
    assert sakke.SakkeReceiver(identifier, rsk, other_kms.Z, validate=False).decapsulate(sed) == ssv


def test_secrets_stay_out_of_reprs(rfc, receiver) -> None:
    master, _, rsk = rfc
    for text in (repr(master), repr(receiver)):
        assert rsk[1:20].hex() not in text.lower()
        assert "aff429d3" not in text.lower()


def test_bad_parameters_are_typed_errors(rfc) -> None:
    master, identifier, _ = rfc
    with pytest.raises(InvalidKey):
        sakke.SakkeMasterKey.from_secret(0)
    with pytest.raises(InvalidKey):
        sakke.encapsulate(b"short", identifier, master.Z)
    with pytest.raises(InvalidKey):
        sakke.encapsulate(bytes(16), b"", master.Z)
    with pytest.raises(CryptoError):
        sakke.encapsulate(bytes(16), identifier, b"junk")
    with pytest.raises(CryptoError):
        sakke.encapsulate(bytes(16), identifier, master.Z, n_bits=192)


def test_minimal_length_w_encoding_is_accepted(rfc, receiver) -> None:
    """Streamwide/jim-b hash g^r without its leading zero octets; the receiver retries that way."""
    from crypto.pairing import G_PAIRING, GtFixedBase

    gt = GtFixedBase(G_PAIRING)
    master, identifier, _ = rfc
    for _ in range(2000):
        ssv = secrets.token_bytes(16)
        r = hash_to_integer_range(ssv + identifier, SAKKE_CURVE.n)
        gr = int(gt.pow(r))
        if gr < 2**1016:
            break
    else:
        pytest.fail("no short g^r in 2000 draws")
    standard = sakke.encapsulate(ssv, identifier, master.Z)
    short = gr.to_bytes((gr.bit_length() + 7) // 8, "big")
    mask = hash_to_integer_range(short, 2**128).to_bytes(16, "big")
    streamwide_sed = standard[:257] + bytes(a ^ b for a, b in zip(ssv, mask, strict=True))
    assert streamwide_sed != standard
    assert receiver.decapsulate(standard) == ssv
    assert receiver.decapsulate(streamwide_sed) == ssv


def test_r_shifted_by_two_torsion_is_rejected(vec: dict, receiver) -> None:
    """R + T (T of order 2) pairs to the same w, so only the re-encapsulation test catches it."""
    from crypto.ec import add, to_affine

    p = SAKKE_CURVE.p
    R = SAKKE_CURVE.decode(bytes.fromhex(vec["R_encoded"]))
    shifted = to_affine(add((R[0], R[1], 1), (0, 0, 1), p), p)
    assert shifted is not None and not SAKKE_CURVE.in_subgroup(shifted)
    with pytest.raises(DecapsulationError):
        receiver.decapsulate(SAKKE_CURVE.encode(shifted) + bytes.fromhex(vec["H"]))


def test_unvalidated_small_order_rsk_gives_typed_errors(vec: dict, rfc) -> None:
    master, identifier, _ = rfc
    bad = b"\x04" + bytes(256)
    with pytest.raises(InvalidKey):
        sakke.SakkeReceiver(identifier, bad, master.Z, validate=False, precompute=True)
    with pytest.raises(DecapsulationError):
        sakke.decapsulate(bytes.fromhex(vec["R_encoded"] + vec["H"]), identifier, bad, master.Z)


@settings(max_examples=25, deadline=None)
@given(seed=st.binary(min_size=128, max_size=128), h=st.binary(min_size=1, max_size=16))
def test_arbitrary_curve_points_as_r_raise_only_typed_errors(receiver, seed: bytes, h: bytes) -> None:
    """Any point of E(F_p) (a quarter of them in the q-subgroup) with any H is rejected cleanly."""
    p = SAKKE_CURVE.p
    x = int.from_bytes(seed, "big") % p
    rhs = (x**3 - 3 * x) % p
    if pow(rhs, (p - 1) // 2, p) == p - 1:  # f(-x) = -f(x) and -1 is a non-residue (p ≡ 3 mod 4)
        x, rhs = p - x, p - rhs
    y = pow(rhs, (p + 1) // 4, p)
    point = b"\x04" + int(x).to_bytes(128, "big") + int(y).to_bytes(128, "big")
    with pytest.raises((DecapsulationError, InvalidPoint)):
        receiver.decapsulate(point + h)


def test_streamwide_v5_test3_sed_decapsulates_to_the_pck(vectors_dir, streamwide_keysets: dict,
                                                          derived_vectors: dict) -> None:
    """The SAKKE payload of Streamwide's own I_MESSAGE (Test 3) opens with bob's RSK (interop)."""
    import base64

    text = (vectors_dir / "streamwide" / "imessages" / "imsg_17_StreamwideTestVectors_L109.txt").read_text()
    message = base64.b64decode(text.split()[1])
    # SAKKE payload (RFC 6509 §4.2): next payload, params = 1, ID scheme, length = 273, SED.
    starts = [i for i in range(5, len(message) - 273)
              if message[i - 4] == 1 and message[i - 2 : i] == b"\x01\x11" and message[i] == 4]
    assert len(starts) == 1
    sed = message[starts[0] : starts[0] + 273]
    ks = streamwide_keysets["streamwide_official_v5"]
    bob = ks["users"]["sip:bob@streamwide.com"]
    receiver = sakke.SakkeReceiver(bytes.fromhex(bob["uid"]), bytes.fromhex(bob["RSK"]), bytes.fromhex(ks["Z"]),
                                   precompute=True)
    assert receiver.decapsulate(sed).hex() == derived_vectors["streamwide_v5_test3_pck"]["SSV_PCK"]
    gms = ks["users"]["gms@streamwide.com"]
    with pytest.raises(DecapsulationError):
        sakke.SakkeReceiver(bytes.fromhex(gms["uid"]), bytes.fromhex(gms["RSK"]),
                            bytes.fromhex(ks["Z"])).decapsulate(sed)


def test_decapsulation_does_the_same_work_whatever_the_secret_pairing_value(monkeypatch) -> None:
    """Two re-encapsulation tests on every SED: a second one only when w's top octet is zero would
    time the secret pairing value (the minimal-length encoding of w differs only then)."""
    master = sakke.SakkeMasterKey.generate()
    identifier = b"sip:bob@example.org timing"
    rx = sakke.SakkeReceiver(identifier, master.issue_rsk(identifier), master.Z)
    _, z_table = sakke._z_point(master.Z)
    seds: dict[bool, bytes] = {}
    for i in range(20_000):  # about one SSV in 256 gives w a zero top octet
        ssv = i.to_bytes(16, "big")
        sed, w = sakke._encapsulate(ssv, identifier, z_table, 128)
        seds.setdefault(bool(w < sakke._SHORT_W), sed)
        if len(seds) == 2:
            break
    assert set(seds) == {False, True}
    calls: list[int] = []

    def counting(data: bytes, n: int):
        calls.append(1)
        return hash_to_integer_range(data, n)

    monkeypatch.setattr(sakke, "hash_to_integer_range", counting)
    work = {}
    for short, sed in seds.items():
        calls.clear()
        rx.decapsulate(sed)
        work[short] = len(calls)
    assert work[False] == work[True] == 4  # per encoding: the mask hash and the re-encapsulation hash
