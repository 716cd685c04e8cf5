"""NIST P-256 (FIPS 186-4 D.1.2.3), the ECCSI curve of RFC 6507 §3 as profiled by RFC 6509.

Fixed-base multiples of G for secret scalars (KSAK → KPAK, v → PVT, j → J) go to OpenSSL through
``cryptography`` (constant-time C); everything else uses :mod:`crypto.ec` on gmpy2.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec as _openssl_ec
from gmpy2 import mpz

from crypto.ec import Affine, Curve, FixedBase

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


def mul_g_secret(k: int) -> Affine:
    """``[k]G`` for a secret k in [1, n − 1], computed by OpenSSL in constant time."""
    numbers = _openssl_ec.derive_private_key(int(k), _openssl_ec.SECP256R1()).public_key().public_numbers()
    return (mpz(numbers.x), mpz(numbers.y))


@lru_cache(maxsize=1)
def g_table() -> FixedBase:
    """Fixed-base table for public multiples of G (signature verification)."""
    return FixedBase(P256, P256.generator, 6)


@lru_cache(maxsize=64)
def point_table(encoded: bytes) -> FixedBase:
    """Fixed-base table for a long-lived public point (a KMS's KPAK), keyed by its encoding."""
    return FixedBase(P256, P256.decode(encoded), 6)
