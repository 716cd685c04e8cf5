"""Curve arithmetic (crypto.ec) on P-256 and the SAKKE curve: encodings, scalar multiplication shapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.ec import FixedBase, add, mul_public, naf_digits, regular_digits, to_affine
from crypto.errors import InvalidPoint
from crypto.p256 import P256, mul_g, mul_point
from crypto.pairing import SAKKE_CURVE


def test_p256_generator_has_order_n() -> None:
    assert P256.on_curve(*P256.generator)
    assert mul_public(P256, P256.generator, P256.n)[2] == 0
    assert mul_public(P256, P256.generator, P256.n - 1)[2] != 0


def test_sakke_parameters(rfc_vectors: dict) -> None:
    params = rfc_vectors["sakke_parameter_set_1"]
    p, q = SAKKE_CURVE.p, SAKKE_CURVE.n
    assert p == int(params["p"], 16) and q == int(params["q"], 16)
    assert (SAKKE_CURVE.gx, SAKKE_CURVE.gy) == (int(params["Px"], 16), int(params["Py"], 16))
    assert p % 4 == 3 and int(p).bit_length() == 1024 and 4 * q == p + 1
    assert SAKKE_CURVE.size == 128
    assert SAKKE_CURVE.on_curve(*SAKKE_CURVE.generator)
    assert SAKKE_CURVE.in_subgroup(SAKKE_CURVE.generator)


@pytest.mark.parametrize("k", [1, 2, 3, 15, 16, 17, 2**255, 2**256 - 1])
def test_regular_digits_reconstruct_scalar(k: int) -> None:
    for curve in (P256, SAKKE_CURVE):
        for w in (4, 5, 6):
            digits = regular_digits(k, curve.n, w)
            assert len(digits) == len(regular_digits(1, curve.n, w))
            assert all(d % 2 == 1 and abs(d) < 2**w for d in digits)
            assert sum(d << (w * i) for i, d in enumerate(digits)) % curve.n == k % curve.n


@given(st.integers(min_value=0, max_value=2**1030))
def test_naf_digits_reconstruct_scalar_without_adjacent_non_zeros(k: int) -> None:
    digits = naf_digits(k)
    assert sum(d << i for i, d in enumerate(reversed(digits))) == k
    assert all(d in (-1, 0, 1) for d in digits) and (not digits or digits[0] == 1)
    assert all(not (a and b) for a, b in zip(digits, digits[1:], strict=False))


@settings(max_examples=10, deadline=None)
@given(k=st.integers(min_value=1, max_value=2**256))
def test_p256_multiplications_agree_with_openssl(k: int) -> None:
    k %= int(P256.n)
    if k == 0:
        k = 1
    expected = mul_g(k)
    p = P256.p
    assert to_affine(mul_public(P256, P256.generator, k), p) == expected
    assert to_affine(FixedBase(P256, P256.generator, 4).mul(k), p) == expected
    q = mul_g(0x1234567)
    assert mul_point(q, k) == to_affine(mul_public(P256, q, k), p)


@pytest.mark.parametrize("k", [0, 1, 2, -1, -2])
def test_p256_mul_point_edge_scalars(k: int) -> None:
    q = mul_g(0xABCDEF)
    expected = to_affine(mul_public(P256, q, k % int(P256.n)), P256.p)
    assert mul_point(q, k) == expected


def test_sakke_fixed_base_agrees_with_double_and_add() -> None:
    table = FixedBase(SAKKE_CURVE, SAKKE_CURVE.generator, 4)
    p = SAKKE_CURVE.p
    for k in (1, 2, 12345, int(SAKKE_CURVE.n) - 1, 3**600):
        assert to_affine(table.mul(k), p) == to_affine(mul_public(SAKKE_CURVE, SAKKE_CURVE.generator, k), p)


def test_addition_handles_doubling_and_inverse() -> None:
    p = P256.p
    g = (P256.gx, P256.gy, 1)
    neg = (P256.gx, p - P256.gy, 1)
    assert add(g, neg, p)[2] == 0
    assert to_affine(add(g, g, p), p) == to_affine(mul_public(P256, P256.generator, 2), p)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x04", b"\x02" + bytes(64), b"\x04" + bytes(64), b"\x04" + b"\xff" * 64, b"\x04" + bytes(63)],
)
def test_decode_rejects_malformed_points(data: bytes) -> None:
    with pytest.raises(InvalidPoint):
        P256.decode(data)


def test_decode_round_trip_and_sakke_small_order_point_rejected() -> None:
    assert P256.decode(P256.encode(P256.generator)) == P256.generator
    two_torsion = b"\x04" + bytes(256)  # (0, 0) lies on y^2 = x^3 - 3x but has order 2
    point = SAKKE_CURVE.decode(two_torsion)
    assert not SAKKE_CURVE.in_subgroup(point)
