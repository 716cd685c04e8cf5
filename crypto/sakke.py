"""SAKKE key encapsulation (RFC 6508) with parameter set 1 (RFC 6509 §4), as used by MIKEY-SAKKE.

KMS side: :class:`SakkeMasterKey` (z, Z = [z]P, §6.1.1 RSK issue). User side: :func:`validate_rsk`
(§6.1.2), :func:`encapsulate` (§6.2.1) and :class:`SakkeReceiver` / :func:`decapsulate` (§6.2.2,
with the mandatory re-encapsulation test). Identifiers are octet strings read as big-endian integers.
SED = ``0x04 ‖ Rx ‖ Ry ‖ H`` (257 + n/8 octets).

Speed: R = [r]([b]P + Z) is computed as [r·b]P + [r]Z from fixed-base tables of P and of the KMS
key Z (built once per KMS key and cached), so nothing is recomputed per identity; g^r uses the
fixed-base table of :class:`crypto.pairing.GtFixedBase`; a receiver can precompute the Miller-loop
lines of its RSK (``precompute=True``).

Interop (../shared/specs/ECCSI-SAKKE.md §2.9): the receiver retries with the minimal-length
encoding of w when the standard 128-octet one fails the re-encapsulation test, accepts a short H
(left-padded), and accepts 32-octet SSVs with ``n_bits=256``. :func:`encapsulate_new_ssv` draws a
fresh SSV whose g^r has a non-zero top octet so that both encodings agree.

Side channels: see :mod:`crypto.ec` (regular fixed-base recoding for r, z and (a + z)⁻¹; gmpy2
arithmetic and table indexing remain data-dependent in time).
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from gmpy2 import mpz  # type: ignore[import-untyped]  # gmpy2 ships no type information

from crypto.ec import Affine, FixedBase, Jacobian, add, add_affine, secret_inverse, to_affine
from crypto.errors import CryptoError, DecapsulationError, InvalidKey, InvalidPoint
from crypto.hashing import hash_to_integer_range
from crypto.pairing import G_PAIRING, SAKKE_CURVE, GtFixedBase, MillerTable, pairing

__all__ = [
    "SakkeMasterKey",
    "SakkeReceiver",
    "validate_rsk",
    "encapsulate",
    "encapsulate_new_ssv",
    "prepare_encapsulation",
    "decapsulate",
    "POINT_LEN",
]

_p = SAKKE_CURVE.p
_q = SAKKE_CURVE.n
POINT_LEN = 1 + 2 * SAKKE_CURVE.size  # 257
_W = 6
#: Smaller window for the per-receiver [b]P + Z table: half the build time, +0.05 ms per use.
_W_RECEIVER = 5
#: w values below this bound have a zero top octet (the "minimal length" interop case).
_SHORT_W = mpz(1) << (8 * (SAKKE_CURVE.size - 1))


@lru_cache(maxsize=1)
def _p_table() -> FixedBase:
    return FixedBase(SAKKE_CURVE, SAKKE_CURVE.generator, _W)


@lru_cache(maxsize=1)
def _g_table() -> GtFixedBase:
    return GtFixedBase(G_PAIRING, _W)


@lru_cache(maxsize=16)
def _kms_key(z_bytes: bytes) -> tuple[Affine, FixedBase]:
    """Decoded, subgroup-checked KMS public key Z and its fixed-base table (cached per KMS)."""
    point = SAKKE_CURVE.decode(z_bytes, "KMS public key Z")
    if not SAKKE_CURVE.in_subgroup(point):
        raise InvalidPoint("KMS public key Z is not in the order-q subgroup")
    return point, FixedBase(SAKKE_CURVE, point, _W)


def _z_point(Z: bytes) -> tuple[Affine, FixedBase]:
    if not isinstance(Z, (bytes, bytearray)):
        raise InvalidPoint("KMS public key Z: expected bytes")
    return _kms_key(bytes(Z))


def _identifier_int(identifier: bytes) -> int:
    if not isinstance(identifier, (bytes, bytearray)) or not identifier:
        raise InvalidKey("identifier must be a non-empty octet string")
    return int.from_bytes(identifier, "big")


def _ssv_len(n_bits: int) -> int:
    if n_bits not in (128, 256):
        raise CryptoError("n_bits must be 128 or 256")
    return n_bits // 8


def _r_times_qb(r: int, b: int, z_table: FixedBase) -> Jacobian:
    """[r]([b]P + Z) as [r·b]P + [r]Z (RFC 6508 §6.2.1 step 3)."""
    return add(_p_table().mul(r * b % _q), z_table.mul(r), _p)


def _mask(w: mpz, n_bits: int, minimal: bool = False) -> bytes:
    """HashToIntegerRange(OS(w), 2^n) as n/8 octets (RFC 6508 §6.2.1 step 4)."""
    size = SAKKE_CURVE.size
    if minimal:
        size = max(1, (int(w).bit_length() + 7) // 8)
    value = hash_to_integer_range(int(w).to_bytes(size, "big"), 1 << n_bits)
    return value.to_bytes(n_bits // 8, "big")


def _finite(point: Jacobian) -> Affine:
    """The affine form of a multiple [k]P with 0 < k < q, which is never the point at infinity."""
    affine = to_affine(point, _p)
    if affine is None:
        raise CryptoError("scalar multiple of P is the point at infinity")
    return affine


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class SakkeMasterKey:
    """KMS master secret z and public key Z = [z]P (RFC 6508 §2.2)."""

    __slots__ = ("z", "Z")

    def __init__(self, z: int) -> None:
        z = int(z)
        if not 0 < z < _q:
            raise InvalidKey("SAKKE master secret must be in [1, q-1]")
        self.z = z
        self.Z = SAKKE_CURVE.encode(_finite(_p_table().mul(z)))

    @classmethod
    def generate(cls) -> SakkeMasterKey:
        """A fresh random master secret in [2, q − 1]."""
        return cls(secrets.randbelow(int(_q) - 2) + 2)

    @classmethod
    def from_secret(cls, z: int) -> SakkeMasterKey:
        return cls(z)

    def __repr__(self) -> str:
        return f"SakkeMasterKey(Z={self.Z[:9].hex()}…, z=<secret>)"

    def issue_rsk(self, identifier: bytes) -> bytes:
        """RSK K_a = [(a + z)⁻¹]P for identifier a (RFC 6508 §6.1.1), 257 octets."""
        t = (_identifier_int(identifier) + self.z) % _q
        if not t:
            raise InvalidKey("identifier collides with the master secret; no RSK exists")
        return SAKKE_CURVE.encode(_finite(_p_table().mul(secret_inverse(t, _q))))


def validate_rsk(identifier: bytes, rsk: bytes, Z: bytes) -> None:
    """Check ⟨[a]P + Z, K_a⟩ == g (RFC 6508 §6.1.2) with K_a and Z in the order-q subgroup.

    Raises :class:`InvalidPoint` for malformed points, :class:`InvalidKey` if the check fails.
    """
    _validated_rsk(identifier, rsk, Z)


def _validated_rsk(identifier: bytes, rsk: bytes, Z: bytes) -> tuple[int, Affine, Affine]:
    b = _identifier_int(identifier)
    z_pt, _ = _z_point(Z)
    k_pt = SAKKE_CURVE.decode(rsk, "RSK")
    if not SAKKE_CURVE.in_subgroup(k_pt):
        raise InvalidKey("RSK is not in the order-q subgroup")
    qb = to_affine(add_affine(_p_table().mul(b), z_pt[0], z_pt[1], _p), _p)
    if qb is None:
        raise InvalidKey("[a]P + Z is the point at infinity for this identifier")
    if pairing(qb, k_pt) != G_PAIRING:
        raise InvalidKey("RSK validation failed (<[a]P + Z, K> != g)")
    return b, k_pt, qb


def _encapsulate(ssv: bytes, identifier: bytes, z_table: FixedBase, n_bits: int) -> tuple[bytes, mpz]:
    b = _identifier_int(identifier)
    r = hash_to_integer_range(ssv + identifier, _q)
    R = to_affine(_r_times_qb(r, b, z_table), _p)
    gr = _g_table().pow(r)
    if R is None or gr is None:
        raise CryptoError("degenerate SAKKE encapsulation (r = 0 or [b]P + Z = O)")
    h = _xor(ssv, _mask(gr, n_bits))
    return SAKKE_CURVE.encode(R) + h, gr


def prepare_encapsulation(Z: bytes) -> None:
    """Build the sender's tables now (g's fixed-base table, once per process, ~50 ms; Z's, once per KMS),
    so the first :func:`encapsulate` under ``Z`` does not pay for them. Thread-safe (worst case, two
    threads both build a table and one result is kept)."""
    _g_table()
    _z_point(Z)


def encapsulate(ssv: bytes, identifier: bytes, Z: bytes, *, n_bits: int = 128) -> bytes:
    """SED for ``ssv`` to ``identifier`` under KMS key Z (RFC 6508 §6.2.1).

    Raises :class:`InvalidKey` for a wrong-length SSV or empty identifier and
    :class:`InvalidPoint` for a malformed Z.
    """
    size = _ssv_len(n_bits)
    if not isinstance(ssv, (bytes, bytearray)) or len(ssv) != size:
        raise InvalidKey(f"SSV must be {size} octets for n = {n_bits}")
    _, z_table = _z_point(Z)
    return _encapsulate(bytes(ssv), bytes(identifier), z_table, n_bits)[0]


def encapsulate_new_ssv(identifier: bytes, Z: bytes, *, n_bits: int = 128) -> tuple[bytes, bytes]:
    """(SSV, SED) for a fresh random SSV whose g^r has a non-zero top octet.

    Such an SSV decapsulates identically under the fixed-length (RFC) and minimal-length
    (Streamwide, jim-b) encodings of g^r (../shared/specs/ECCSI-SAKKE.md §2.9).
    """
    size = _ssv_len(n_bits)
    _, z_table = _z_point(Z)
    _identifier_int(identifier)
    for _ in range(64):
        ssv = secrets.token_bytes(size)
        sed, gr = _encapsulate(ssv, bytes(identifier), z_table, n_bits)
        if gr >= _SHORT_W:
            return ssv, sed
    raise CryptoError("could not draw an SSV with a full-length g^r")  # probability ≈ 153^-64


class SakkeReceiver:
    """A user's SAKKE private key (RSK) for one identifier: decapsulates SEDs (RFC 6508 §6.2.2).

    ``validate`` runs the §6.1.2 RSK check once; ``precompute`` builds the per-RSK Miller-loop
    line table and a fixed-base table of [b]P + Z for the re-encapsulation test (tens of ms once;
    each decapsulation then costs less than half).
    """

    __slots__ = ("identifier", "_b", "_k", "_z_table", "_table", "_qb_table")

    def __init__(
        self, identifier: bytes, rsk: bytes, Z: bytes, *, validate: bool = True, precompute: bool = False
    ) -> None:
        if validate:
            b, k_pt, _ = _validated_rsk(identifier, rsk, Z)
        else:
            b = _identifier_int(identifier)
            k_pt = SAKKE_CURVE.decode(rsk, "RSK")
        self.identifier = bytes(identifier)
        self._b = b
        self._k = k_pt
        z_pt, self._z_table = _z_point(Z)
        self._table: MillerTable | None = None
        self._qb_table: FixedBase | None = None
        if precompute:
            try:
                self._table = MillerTable(k_pt)
            except InvalidPoint:
                raise InvalidKey("RSK is not a point of order q") from None
            qb = to_affine(add_affine(_p_table().mul(b), z_pt[0], z_pt[1], _p), _p)
            if qb is None:
                raise InvalidKey("[b]P + Z is the point at infinity for this identifier")
            self._qb_table = FixedBase(SAKKE_CURVE, qb, _W_RECEIVER)

    def __repr__(self) -> str:
        return f"SakkeReceiver(identifier={self.identifier!r}, rsk=<secret>)"

    @property
    def precomputed(self) -> bool:
        """The Miller-loop and re-encapsulation tables are built (``precompute=True``)."""
        return self._table is not None and self._qb_table is not None

    def decapsulate(self, sed: bytes, *, n_bits: int = 128) -> bytes:
        """The SSV carried by ``sed`` (RFC 6508 §6.2.2, re-encapsulation test included).

        Raises :class:`InvalidPoint` if R is malformed and :class:`DecapsulationError` if the SED
        has the wrong length or fails the re-encapsulation test (tampered R or H, wrong RSK or
        identity).
        """
        size = _ssv_len(n_bits)
        if not isinstance(sed, (bytes, bytearray)):
            raise DecapsulationError("SED must be bytes")
        sed = bytes(sed)
        if not POINT_LEN < len(sed) <= POINT_LEN + size:
            raise DecapsulationError(f"SED must be {POINT_LEN + 1}..{POINT_LEN + size} octets, got {len(sed)}")
        R = SAKKE_CURVE.decode(sed[:POINT_LEN], "SED point R")
        if not R[1]:
            raise InvalidPoint("SED point R has order 2")
        h = sed[POINT_LEN:].rjust(size, b"\x00")
        w = self._table.pairing(R) if self._table is not None else pairing(self._k, R)
        if w is None:
            raise DecapsulationError("SED point R is degenerate for the pairing")
        # Both encodings of w are tried every time, whatever its top octet: w is the secret pairing
        # value, and a second re-encapsulation only when its top octet is zero would time it.
        full = self._try(R, h, w, n_bits, minimal=False)
        short = self._try(R, h, w, n_bits, minimal=True)
        ssv = full if full is not None else short
        if ssv is None:
            raise DecapsulationError("SAKKE re-encapsulation test failed (tampered SED, wrong RSK or identity)")
        return ssv

    def _try(self, R: Affine, h: bytes, w: mpz, n_bits: int, minimal: bool) -> bytes | None:
        """SSV if the re-encapsulation test [r]([b]P + Z) == R passes for this encoding of w."""
        ssv = _xor(h, _mask(w, n_bits, minimal))
        r = hash_to_integer_range(ssv + self.identifier, _q)
        if self._qb_table is not None:
            X, Y, Z = self._qb_table.mul(r)
        else:
            X, Y, Z = _r_times_qb(r, self._b, self._z_table)
        if not Z:
            return None
        z2 = Z * Z % _p
        if (X - R[0] * z2) % _p or (Y - R[1] * z2 * Z) % _p:
            return None
        return ssv


def decapsulate(sed: bytes, identifier: bytes, rsk: bytes, Z: bytes, *, n_bits: int = 128) -> bytes:
    """One-shot decapsulation (RFC 6508 §6.2.2); validates nothing about the RSK beyond its encoding.

    Use :class:`SakkeReceiver` to validate the RSK once and reuse it across messages.
    """
    return SakkeReceiver(identifier, rsk, Z, validate=False).decapsulate(sed, n_bits=n_bits)
