"""ECCSI identity-based signatures (RFC 6507) on P-256 with SHA-256, as used by MIKEY-SAKKE.

KMS side: :class:`EccsiMasterKey` (KSAK/KPAK, §5.1.1 user key issue). User side:
:func:`validate_signing_key` (§5.1.2), :class:`EccsiSigner` (§5.2.1) and :func:`verify` (§5.2.2).
Identifiers are octet strings; signatures are ``r ‖ s ‖ PVT`` (32 + 32 + 65 = 129 octets).

Encoding notes (../shared/specs/ECCSI-SAKKE.md §1): r = Jx is not reduced mod q (a fresh j is drawn
if Jx ≥ q so that peers which do reduce agree); the RFC's "q − s" rule never applies to P-256.

Side channels: every scalar multiplication ([j]G, [SSK]G, [v]G, [KSAK]G and the public ones of
verification) runs in OpenSSL (constant time); the scalar
arithmetic mod q (``s = j·(HE + r·SSK)⁻¹``) runs on Python/gmpy2 integers (the inverse with GMP's
mpz_powm_sec), whose products and reductions still take value-dependent time — see
:mod:`crypto.ec` for the residual risk this leaves.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from gmpy2 import mpz  # type: ignore[import-untyped]  # gmpy2 ships no type information

from crypto.ec import INFINITY, Affine, add, secret_inverse, to_affine
from crypto.errors import InvalidKey, InvalidPoint, InvalidSignature
from crypto.hashing import sha256
from crypto.p256 import G_BYTES, P256, mul_g, mul_point

__all__ = ["EccsiMasterKey", "EccsiSigner", "prepare_verification", "validate_signing_key", "verify", "SIGNATURE_LEN"]

_n = P256.n
_p = P256.p
SIGNATURE_LEN = 129


def _add(a: Affine | None, b: Affine | None) -> Affine | None:
    """Sum of two affine points (None is the point at infinity)."""
    ja = (a[0], a[1], mpz(1)) if a is not None else INFINITY
    jb = (b[0], b[1], mpz(1)) if b is not None else INFINITY
    return to_affine(add(ja, jb, _p), _p)


def _hs(identifier: bytes, pvt: bytes, kpak: bytes) -> bytes:
    """HS = hash(G ‖ KPAK ‖ ID ‖ PVT) (RFC 6507 §5.1.1 step 3)."""
    return sha256(G_BYTES, kpak, identifier, pvt)


def _check_identifier(identifier: bytes) -> bytes:
    if not isinstance(identifier, (bytes, bytearray)) or not identifier:
        raise InvalidKey("identifier must be a non-empty octet string")
    return bytes(identifier)


def _scalar(value: bytes, what: str) -> mpz:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InvalidKey(f"{what} must be 32 octets")
    return mpz(int.from_bytes(value, "big"))


class EccsiMasterKey:
    """KMS Secret Authentication Key (KSAK) and its public KPAK = [KSAK]G (RFC 6507 §4.2)."""

    __slots__ = ("ksak", "kpak")

    def __init__(self, ksak: int) -> None:
        ksak = int(ksak)
        if not 0 < ksak < _n:
            raise InvalidKey("KSAK must be in [1, q-1]")
        self.ksak = ksak
        self.kpak = P256.encode(mul_g(ksak))

    @classmethod
    def generate(cls) -> EccsiMasterKey:
        """A fresh random KSAK."""
        return cls(secrets.randbelow(int(_n) - 1) + 1)

    @classmethod
    def from_secret(cls, ksak: int) -> EccsiMasterKey:
        return cls(ksak)

    def __repr__(self) -> str:
        return f"EccsiMasterKey(kpak={self.kpak[:9].hex()}…, ksak=<secret>)"

    def issue(self, identifier: bytes, v: int | None = None) -> tuple[bytes, bytes]:
        """(SSK, PVT) for ``identifier`` (RFC 6507 §5.1.1); a random v unless one is given.

        With a caller-supplied v that yields HS·v ≡ 0, SSK ≡ 0 or SSK = KSAK this raises
        :class:`InvalidKey`; with a random v it draws again.
        """
        identifier = _check_identifier(identifier)
        while True:
            vv = secrets.randbelow(int(_n) - 1) + 1 if v is None else int(v)
            if not 0 < vv < _n:
                raise InvalidKey("v must be in [1, q-1]")
            pvt = P256.encode(mul_g(vv))
            hs = int.from_bytes(_hs(identifier, pvt, self.kpak), "big")
            ssk = (self.ksak + hs * vv) % _n
            if hs % _n and ssk and ssk != self.ksak:
                return int(ssk).to_bytes(32, "big"), pvt
            if v is not None:
                raise InvalidKey("this v yields a degenerate SSK; choose another")


def validate_signing_key(identifier: bytes, ssk: bytes, pvt: bytes, kpak: bytes) -> bytes:
    """Check a received (SSK, PVT) against KPAK (RFC 6507 §5.1.2); returns HS (32 octets).

    Raises :class:`InvalidPoint` for a malformed PVT/KPAK and :class:`InvalidKey` if
    ``[SSK]G ≠ KPAK + [HS]PVT``.
    """
    identifier = _check_identifier(identifier)
    kpak_pt = P256.decode(kpak, "KPAK")
    pvt_pt = P256.decode(pvt, "PVT")
    k = _scalar(ssk, "SSK")
    if not 0 < k < _n:
        raise InvalidKey("SSK out of range [1, q-1]")
    hs = _hs(identifier, bytes(pvt), bytes(kpak))
    rhs = _add(mul_point(pvt_pt, int.from_bytes(hs, "big")), kpak_pt)
    if rhs is None or mul_g(k) != rhs:
        raise InvalidKey("SSK/PVT validation failed ([SSK]G != KPAK + [HS]PVT)")
    return hs


class EccsiSigner:
    """A user's validated signing key: signs with SSK/PVT under an identifier (RFC 6507 §5.2.1)."""

    __slots__ = ("identifier", "pvt", "kpak", "hs", "_ssk")

    def __init__(self, identifier: bytes, ssk: bytes, pvt: bytes, kpak: bytes) -> None:
        self.hs = validate_signing_key(identifier, ssk, pvt, kpak)
        self.identifier = bytes(identifier)
        self.pvt = bytes(pvt)
        self.kpak = bytes(kpak)
        self._ssk = _scalar(ssk, "SSK")

    def __repr__(self) -> str:
        return f"EccsiSigner(identifier={self.identifier!r}, ssk=<secret>)"

    def sign(self, message: bytes, j: int | None = None) -> bytes:
        """129-octet signature ``r ‖ s ‖ PVT`` of ``message``; j is random unless given (tests)."""
        while True:
            jj = secrets.randbelow(int(_n) - 1) + 1 if j is None else int(j)
            if not 0 < jj < _n:
                raise InvalidKey("j must be in [1, q-1]")
            r = mul_g(jj)[0]
            if j is None and r >= _n:
                continue
            r_bytes = int(r).to_bytes(32, "big")
            he = int.from_bytes(sha256(self.hs, r_bytes, message), "big")
            t = (he + r * self._ssk) % _n
            if not t:
                if j is not None:
                    raise InvalidKey("this j yields HE + r·SSK ≡ 0; choose another")
                continue
            s = jj * secret_inverse(t, _n) % _n
            return r_bytes + int(s).to_bytes(32, "big") + self.pvt


@lru_cache(maxsize=256)
def _signer_point(identifier: bytes, pvt: bytes, kpak: bytes) -> tuple[bytes, tuple[mpz, mpz]]:
    """(HS, Y = [HS]PVT + KPAK) for a signer, cached: peers sign many messages (RFC 6507 §5.2.2 4)."""
    kpak_pt = P256.decode(kpak, "KPAK")
    try:
        pvt_pt = P256.decode(pvt, "PVT in signature")
    except InvalidPoint as exc:
        raise InvalidSignature(str(exc)) from None
    hs = _hs(identifier, pvt, kpak)
    y = _add(mul_point(pvt_pt, int.from_bytes(hs, "big")), kpak_pt)
    if y is None:
        raise InvalidSignature("signer key point is the point at infinity")
    return hs, y


def prepare_verification(kpak: bytes) -> None:
    """Pay the scalar-multiplication backend's one-time set-up now (OpenSSL's first P-256 key derivation
    and ECDH in a process: ~0.6 ms, then ~0.05 ms each), with public values only ([1]G, [2]KPAK), so the
    first :func:`verify` (and the first signature) under ``kpak`` does not. Raises :class:`InvalidPoint`
    for a malformed KPAK. Thread-safe."""
    kpak_pt = P256.decode(kpak, "KPAK")
    mul_g(1)
    mul_point(kpak_pt, 2)


def verify(message: bytes, signature: bytes, identifier: bytes, kpak: bytes) -> None:
    """Verify an ECCSI signature by ``identifier`` under ``kpak`` (RFC 6507 §5.2.2).

    Raises :class:`InvalidSignature` (malformed or not verifying) or :class:`InvalidPoint` for a
    malformed KPAK.
    """
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_LEN:
        raise InvalidSignature(f"ECCSI signature must be {SIGNATURE_LEN} octets")
    if not isinstance(message, (bytes, bytearray)):
        raise InvalidSignature("message must be bytes")
    if not isinstance(kpak, (bytes, bytearray)):
        raise InvalidPoint("KPAK: expected bytes")
    signature = bytes(signature)
    identifier = _check_identifier(identifier)
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not 0 < r < _p:
        raise InvalidSignature("signature r out of range")
    if not 0 < s < _n:
        raise InvalidSignature("signature s out of range")
    hs, y = _signer_point(identifier, signature[64:], bytes(kpak))
    he = int.from_bytes(sha256(hs, signature[:32], message), "big")
    # J = [s]([HE]G + [r]Y) = [s·HE]G + [s·r]Y.
    a = s * he % _n
    j_aff = _add(mul_g(a) if a else None, mul_point(y, s * r % _n))
    if j_aff is None or j_aff[0] % _p == 0 or j_aff[0] != r % _p:
        raise InvalidSignature("ECCSI signature does not verify")
