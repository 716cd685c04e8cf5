"""ECCSI (RFC 6507): the Appendix A vector bit-exactly, key validation, round trips, forgeries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import eccsi
from crypto.errors import CryptoError, InvalidKey, InvalidPoint, InvalidSignature


@pytest.fixture(scope="module")
def vec(rfc_vectors: dict) -> dict:
    return rfc_vectors["rfc6507_eccsi"]


@pytest.fixture(scope="module")
def rfc_keys(vec: dict) -> tuple[eccsi.EccsiMasterKey, bytes, bytes, bytes]:
    identifier = bytes.fromhex(vec["ID_hex"])
    master = eccsi.EccsiMasterKey.from_secret(int(vec["KSAK"], 16))
    ssk, pvt = master.issue(identifier, v=int(vec["v"], 16))
    return master, identifier, ssk, pvt


def test_rfc6507_kms_values(vec: dict, rfc_keys) -> None:
    master, _, ssk, pvt = rfc_keys
    assert master.kpak == bytes.fromhex(vec["KPAK"])
    assert pvt == bytes.fromhex(vec["PVT"])
    assert ssk == bytes.fromhex(vec["SSK"])


def test_rfc6507_validation_returns_hs(vec: dict, rfc_keys) -> None:
    master, identifier, ssk, pvt = rfc_keys
    assert eccsi.validate_signing_key(identifier, ssk, pvt, master.kpak) == bytes.fromhex(vec["HS"])


def test_rfc6507_signature_with_fixed_j(vec: dict, derived_vectors: dict, rfc_keys) -> None:
    master, identifier, ssk, pvt = rfc_keys
    signer = eccsi.EccsiSigner(identifier, ssk, pvt, master.kpak)
    sig = signer.sign(bytes.fromhex(vec["M_hex"]), j=int(vec["j"], 16))
    assert sig == bytes.fromhex(vec["signature"])
    assert sig[:32].hex().upper() == derived_vectors["rfc6507"]["Jx_equals_r"]
    assert sig[32:64] == bytes.fromhex(vec["s"])
    eccsi.verify(bytes.fromhex(vec["M_hex"]), sig, identifier, master.kpak)


def test_rfc6507_signature_rejected_for_other_message_or_identity(vec: dict) -> None:
    sig = bytes.fromhex(vec["signature"])
    kpak = bytes.fromhex(vec["KPAK"])
    identifier = bytes.fromhex(vec["ID_hex"])
    with pytest.raises(InvalidSignature):
        eccsi.verify(b"message\x01", sig, identifier, kpak)
    with pytest.raises(InvalidSignature):
        eccsi.verify(bytes.fromhex(vec["M_hex"]), sig, identifier[:-1] + b"\x01", kpak)


@pytest.mark.parametrize("position", [0, 31, 32, 63, 64 + 20, 128])
def test_flipped_bit_anywhere_in_signature_is_rejected(vec: dict, position: int) -> None:
    sig = bytearray(bytes.fromhex(vec["signature"]))
    sig[position] ^= 0x01
    with pytest.raises(InvalidSignature):
        eccsi.verify(bytes.fromhex(vec["M_hex"]), bytes(sig), bytes.fromhex(vec["ID_hex"]), bytes.fromhex(vec["KPAK"]))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1],
        lambda s: s + b"\x00",
        lambda s: bytes(32) + s[32:],
        lambda s: s[:32] + bytes(32) + s[64:],
        lambda s: s[:32] + b"\xff" * 32 + s[64:],
        lambda s: s[:64] + b"\x02" + s[65:],
    ],
    ids=["short", "long", "r=0", "s=0", "s>=q", "compressed-pvt"],
)
def test_malformed_signatures_raise_invalid_signature(vec: dict, mangle) -> None:
    with pytest.raises(InvalidSignature):
        eccsi.verify(
            bytes.fromhex(vec["M_hex"]),
            mangle(bytes.fromhex(vec["signature"])),
            bytes.fromhex(vec["ID_hex"]),
            bytes.fromhex(vec["KPAK"]),
        )


def test_wrong_ssk_or_foreign_pvt_fails_validation(vec: dict, rfc_keys) -> None:
    master, identifier, ssk, pvt = rfc_keys
    bad_ssk = (int.from_bytes(ssk, "big") + 1).to_bytes(32, "big")
    with pytest.raises(InvalidKey):
        eccsi.EccsiSigner(identifier, bad_ssk, pvt, master.kpak)
    with pytest.raises(InvalidKey):
        eccsi.validate_signing_key(identifier + b"x", ssk, pvt, master.kpak)
    with pytest.raises(InvalidKey):
        eccsi.validate_signing_key(identifier, bytes(32), pvt, master.kpak)
    off_curve = pvt[:-1] + bytes([pvt[-1] ^ 1])
    with pytest.raises(InvalidPoint):
        eccsi.validate_signing_key(identifier, ssk, off_curve, master.kpak)
    with pytest.raises(InvalidPoint):
        eccsi.validate_signing_key(identifier, ssk, pvt, master.kpak[:-1])


def test_streamwide_v5_signing_keys_validate(streamwide_keysets: dict) -> None:
    ks = streamwide_keysets["streamwide_official_v5"]
    assert len(ks["users"]) == 4
    for user in ks["users"].values():
        hs = eccsi.validate_signing_key(
            bytes.fromhex(user["uid"]), bytes.fromhex(user["SSK"]), bytes.fromhex(user["PVT"]),
            bytes.fromhex(ks["KPAK"]),
        )
        assert len(hs) == 32


def test_streamwide_v5_hs_of_alice_matches_intermediate(streamwide_keysets: dict, derived_vectors: dict) -> None:
    ks = streamwide_keysets["streamwide_official_v5"]
    alice = ks["users"]["sip:alice@streamwide.com"]
    signer = eccsi.EccsiSigner(
        bytes.fromhex(alice["uid"]), bytes.fromhex(alice["SSK"]), bytes.fromhex(alice["PVT"]), bytes.fromhex(ks["KPAK"])
    )
    assert signer.hs.hex() == derived_vectors["streamwide_v5_test3_pck"]["HS_alice"]


def test_alea_keysets_good_users_pass_and_u2alea_fails(streamwide_keysets: dict) -> None:
    ks = streamwide_keysets["alea_v3"]
    kpak = bytes.fromhex(ks["KPAK"])
    for name, user in ks["users"].items():
        args = (bytes.fromhex(user["uid"]), bytes.fromhex(user["SSK"]), bytes.fromhex(user["PVT"]), kpak)
        if name == "sip:u2alea@veronica-cluster":
            with pytest.raises(InvalidKey):
                eccsi.validate_signing_key(*args)
        else:
            eccsi.validate_signing_key(*args)


@settings(max_examples=15, deadline=None)
@given(identifier=st.binary(min_size=1, max_size=64), message=st.binary(max_size=300))
def test_random_round_trip_and_cross_identity_rejection(identifier: bytes, message: bytes) -> None:
    master = eccsi.EccsiMasterKey.generate()
    ssk, pvt = master.issue(identifier)
    signer = eccsi.EccsiSigner(identifier, ssk, pvt, master.kpak)
    sig = signer.sign(message)
    assert len(sig) == 129 and sig[64:] == pvt
    assert int.from_bytes(sig[:32], "big") < int(eccsi.P256.n)
    eccsi.verify(message, sig, identifier, master.kpak)
    with pytest.raises(InvalidSignature):
        eccsi.verify(message + b"!", sig, identifier, master.kpak)
    with pytest.raises(InvalidSignature):
        eccsi.verify(message, sig, identifier + b"\x00", master.kpak)
    other = eccsi.EccsiMasterKey.generate()
    with pytest.raises(InvalidSignature):
        eccsi.verify(message, sig, identifier, other.kpak)


def test_signatures_are_randomised() -> None:
    master = eccsi.EccsiMasterKey.generate()
    ssk, pvt = master.issue(b"alice")
    signer = eccsi.EccsiSigner(b"alice", ssk, pvt, master.kpak)
    assert signer.sign(b"m") != signer.sign(b"m")


def test_secrets_stay_out_of_reprs_and_errors(rfc_keys, vec: dict) -> None:
    master, identifier, ssk, pvt = rfc_keys
    signer = eccsi.EccsiSigner(identifier, ssk, pvt, master.kpak)
    for text in (repr(master), repr(signer)):
        assert ssk.hex() not in text.lower() and "12345" not in text
    bad = (int.from_bytes(ssk, "big") ^ 1).to_bytes(32, "big")
    with pytest.raises(CryptoError) as info:
        eccsi.validate_signing_key(identifier, bad, pvt, master.kpak)
    assert bad.hex() not in str(info.value).lower()


def test_bad_parameters_are_typed_errors() -> None:
    with pytest.raises(InvalidKey):
        eccsi.EccsiMasterKey.from_secret(0)
    master = eccsi.EccsiMasterKey.from_secret(0x12345)
    with pytest.raises(InvalidKey):
        master.issue(b"")
    with pytest.raises(InvalidKey):
        master.issue(b"id", v=0)


def test_streamwide_v5_test3_signature_verifies(vectors_dir, streamwide_keysets: dict, derived_vectors: dict) -> None:
    """Alice's ECCSI signature on Streamwide's own I_MESSAGE (Test 3) verifies (interop)."""
    import base64

    text = (vectors_dir / "streamwide" / "imessages" / "imsg_17_StreamwideTestVectors_L109.txt").read_text()
    message = base64.b64decode(text.split()[1])
    assert len(message) == derived_vectors["streamwide_v5_test3_pck"]["imessage_len"]
    signed, signature = message[:554], message[554:]  # signed span includes the SIGN header 0x2081
    ks = streamwide_keysets["streamwide_official_v5"]
    kpak = bytes.fromhex(ks["KPAK"])
    alice = bytes.fromhex(ks["users"]["sip:alice@streamwide.com"]["uid"])
    eccsi.verify(signed, signature, alice, kpak)
    with pytest.raises(InvalidSignature):
        eccsi.verify(signed[:-1] + b"\x00", signature, alice, kpak)
    with pytest.raises(InvalidSignature):
        eccsi.verify(signed, signature, bytes.fromhex(ks["users"]["sip:bob@streamwide.com"]["uid"]), kpak)


def test_prepare_verification_takes_a_valid_kpak_and_refuses_a_malformed_one(rfc_keys) -> None:
    master = rfc_keys[0]
    eccsi.prepare_verification(master.kpak)  # public values only; nothing to return
    with pytest.raises(InvalidPoint):
        eccsi.prepare_verification(b"\x04" + b"\x01" * 64)
