"""The SAKKE pairing (RFC 6508 §3.2): g = <P, P>, bilinearity, symmetry, table form, g^r."""

from __future__ import annotations

import secrets

from crypto.ec import mul_public, to_affine
from crypto.pairing import G_PAIRING, SAKKE_CURVE, GtFixedBase, MillerTable, pairing


def gt_pow(t: int, k: int):
    return GtFixedBase(t, 4).pow(k)


def _mul(k: int):
    return to_affine(mul_public(SAKKE_CURVE, SAKKE_CURVE.generator, k), SAKKE_CURVE.p)


def test_g_is_pairing_of_p_with_itself(rfc_vectors: dict) -> None:
    P = SAKKE_CURVE.generator
    assert G_PAIRING == int(rfc_vectors["sakke_parameter_set_1"]["g"], 16)
    assert pairing(P, P) == G_PAIRING
    assert MillerTable(P).pairing(P) == G_PAIRING


def test_bilinear_symmetric_and_matches_gt_pow() -> None:
    a = secrets.randbelow(int(SAKKE_CURVE.n) - 1) + 1
    b = secrets.randbelow(int(SAKKE_CURVE.n) - 1) + 1
    A, B = _mul(a), _mul(b)
    w = pairing(A, B)
    assert w == pairing(B, A) == MillerTable(A).pairing(B) == MillerTable(B).pairing(A)
    assert w == gt_pow(G_PAIRING, a * b % int(SAKKE_CURVE.n))
    assert w != G_PAIRING


def test_rfc6508_w_equals_g_to_the_r(rfc_vectors: dict, derived_vectors: dict) -> None:
    d = derived_vectors["rfc6508"]
    r = int(d["r_HashToIntegerRange_SSV_b_q"], 16)
    assert gt_pow(G_PAIRING, r) == int(d["g_pow_r_as_F_p_integer_128_octets"], 16)
    vec = rfc_vectors["rfc6508_sakke"]
    R = SAKKE_CURVE.decode(bytes.fromhex(vec["R_encoded"]))
    K = (int(vec["RSK_x"], 16), int(vec["RSK_y"], 16))
    assert pairing(R, K) == int(d["g_pow_r_as_F_p_integer_128_octets"], 16)


def test_streamwide_w_from_pairing_of_r_and_bob_rsk(vectors_dir, streamwide_keysets: dict,
                                                    derived_vectors: dict) -> None:
    """w = <R, K_bob> for the R of Streamwide's Test 3 I_MESSAGE, in both argument orders."""
    import base64

    d = derived_vectors["streamwide_v5_test3_pck"]
    text = (vectors_dir / "streamwide" / "imessages" / "imsg_17_StreamwideTestVectors_L109.txt").read_text()
    message = base64.b64decode(text.split()[1])
    start = message.index(bytes.fromhex("010201110" + "4"))  # SAKKE params 1, ID scheme 2, length 273, 0x04
    R = SAKKE_CURVE.decode(message[start + 4 : start + 4 + 257])
    ks = streamwide_keysets["streamwide_official_v5"]
    K = SAKKE_CURVE.decode(bytes.fromhex(ks["users"]["sip:bob@streamwide.com"]["RSK"]))
    w = int(d["sakke_w_pairing_R_RSKbob"], 16)
    assert pairing(R, K) == pairing(K, R) == MillerTable(K).pairing(R) == w
    assert gt_pow(G_PAIRING, int(d["r_HashToIntegerRange_SSV_b_q"], 16)) == w


def test_gt_pow_identity_and_order() -> None:
    assert gt_pow(G_PAIRING, 0) == 0  # α^0 = 1 + 0·i
    assert gt_pow(G_PAIRING, 1) == G_PAIRING
    assert gt_pow(G_PAIRING, SAKKE_CURVE.n) == 0  # g has order q
