"""NIST P-256 (FIPS 186-4 D.1.2.3), the ECCSI curve of RFC 6507 §3 as profiled by RFC 6509.

Scalar multiplications go to OpenSSL through ``cryptography`` (constant-time C): ``[k]G`` as a
key derivation, ``[k]Q`` for any point as two ECDH x-coordinates (of [k]Q and [k+1]Q) from which
the y-coordinate of [k]Q is recovered (Okeya–Sakurai). Point additions and encodings use
:mod:`crypto.ec` on gmpy2.
"""

from __future__ import annotations

import gmpy2  # type: ignore[import-untyped]  # gmpy2 ships no type information
from cryptography.hazmat.primitives.asymmetric import ec as _openssl_ec
from gmpy2 import mpz

from crypto.ec import Affine, Curve

P256 = Curve(
    name="P-256",
    p=mpz("FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF", 16),
    b=mpz("5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B", 16),
    n=mpz("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16),
    gx=mpz("6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296", 16),
    gy=mpz("4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5", 16),
)
#: 65-octet encoding of G, hashed into HS (RFC 6507 §5.1.1 step 3).
G_BYTES = P256.encode(P256.generator)


def mul_g(k: int) -> Affine:
    """``[k]G`` for k in [1, n − 1] (secret or not), computed by OpenSSL in constant time."""
    numbers = _openssl_ec.derive_private_key(int(k), _openssl_ec.SECP256R1()).public_key().public_numbers()
    return (mpz(numbers.x), mpz(numbers.y))


def mul_point(point: Affine, k: int) -> Affine | None:
    """``[k]Q`` for a valid P-256 point Q, or None for the point at infinity.

    OpenSSL gives x([k]Q) and x([k+1]Q) by ECDH; with Q = (x, y) the y-coordinate of [k]Q = (x₁, y₁)
    follows from y₁ = (2b + (a + x·x₁)(x + x₁) − x₂·(x − x₁)²) / (2y), x₂ = x([k+1]Q), a = −3.
    """
    p, n = P256.p, P256.n
    k = int(k) % int(n)
    if k == 0:
        return None
    if k == n - 1:
        return (point[0], (p - point[1]) % p)
    curve = _openssl_ec.SECP256R1()
    peer = _openssl_ec.EllipticCurvePublicNumbers(int(point[0]), int(point[1]), curve).public_key()
    x1 = mpz(int.from_bytes(_openssl_ec.derive_private_key(k, curve).exchange(_openssl_ec.ECDH(), peer), "big"))
    x2 = mpz(int.from_bytes(_openssl_ec.derive_private_key(k + 1, curve).exchange(_openssl_ec.ECDH(), peer), "big"))
    x, y = point
    num = 2 * P256.b + (x * x1 - 3) * (x + x1) - x2 * (x - x1) * (x - x1)
    y1 = num * gmpy2.invert(2 * y, p) % p
    return (x1, y1)
