"""Short Weierstrass curves y² = x³ − 3x + b over a prime field, on gmpy2 integers.

Shared by ECCSI (NIST P-256, RFC 6507 §3) and SAKKE (the supersingular curve y² = x³ − 3x of
RFC 6508 §2.1 / parameter set 1). Points are plain tuples so the hot loops stay cheap:

* affine ``(x, y)``, never the point at infinity (encodings cannot represent it);
* Jacobian ``(X, Y, Z)`` meaning ``(X/Z², Y/Z³)``; ``Z == 0`` is the point at infinity.

Scalar multiplication comes in two shapes:

* :class:`FixedBase` — a per-base table of affine points ``[(2j+1)·2^(w·i)]B``, so ``[k]B`` is a
  sum of one table entry per window and needs no doublings (used for P, Z and [b]P + Z). The
  scalar is recoded into a *regular* signed-digit form (every digit odd and non-zero, a fixed
  number of digits for a given group order), so the sequence of field operations does not depend
  on the scalar bits. An even scalar ``k`` is replaced by ``k + n`` (same point, odd).
* :func:`mul_public` — any base, public scalars only (subgroup checks): double-and-add on the NAF.

Side channels — the honest residual risk of doing this in CPython:

* What is done: every secret P-256 multiplication runs in OpenSSL (constant time); secret SAKKE
  scalars (z, (a + z)⁻¹, r) use the regular fixed-base recoding, so the *sequence* of field
  operations is the same for every scalar; the pairing loop follows the public q only; inverses
  of secrets use GMP's mpz_powm_sec (:func:`secret_inverse`). SAKKE decapsulation runs the
  re-encapsulation test for both encodings of the secret pairing value (fixed- and minimal-length)
  on every SED, so the number of scalar multiplications does not reveal whether its top octet is
  zero (one test only in that case measured 7.2 ms against 8.6 ms for two).
* What remains: GMP's ordinary mpz multiplication, reduction and inversion take time that depends
  on operand values (normalised lengths, leading zero limbs, extended-gcd steps); CPython's own
  int operations in the recoding and hashing are likewise value dependent; table look-ups index
  Python lists by secret digits (cache-timing visible to a co-located attacker); point addition
  and the tree sum take other paths in their exceptional cases (equal or opposite points,
  probability about 2⁻²⁵⁰ for the scalars used); the interpreter's allocator and garbage
  collector add noise that is data dependent too. Python integers are immutable, so secrets
  cannot be wiped from memory — they live until collected.
* Consequence: fine against remote network timing at call-setup granularity (one SAKKE/ECCSI
  operation per call, jitter of milliseconds), not against a co-resident attacker measuring
  caches or power. Keys that need that belong in constant-time native code or an HSM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2  # type: ignore[import-untyped]  # gmpy2 ships no type information
from gmpy2 import mpz

from crypto.errors import InvalidPoint

Affine = tuple[mpz, mpz]
Jacobian = tuple[mpz, mpz, mpz]

_ZERO = mpz(0)
_ONE = mpz(1)
INFINITY: Jacobian = (_ONE, _ONE, _ZERO)


@dataclass(frozen=True)
class Curve:
    """Curve y² = x³ − 3x + b over F_p with a generator of prime order n (cofactor h)."""

    name: str
    p: mpz
    b: mpz
    n: mpz
    gx: mpz
    gy: mpz
    cofactor: int = 1
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", (int(self.p).bit_length() + 7) // 8)

    @property
    def generator(self) -> Affine:
        return (self.gx, self.gy)

    def on_curve(self, x: mpz, y: mpz) -> bool:
        p = self.p
        return (y * y - (x * x * x - 3 * x + self.b)) % p == 0

    def encode(self, point: Affine) -> bytes:
        """``0x04 ‖ OS(x, L) ‖ OS(y, L)`` (SEC 1 uncompressed, as RFC 6507 §3.3 / RFC 6508 §2.1 use)."""
        size = self.size
        return b"\x04" + int(point[0]).to_bytes(size, "big") + int(point[1]).to_bytes(size, "big")

    def decode(self, data: bytes, what: str = "point") -> Affine:
        """Parse an uncompressed point and check it is on the curve (raises :class:`InvalidPoint`).

        The point at infinity has no encoding, so a decoded point is never infinity. Subgroup
        membership is checked separately (:meth:`in_subgroup`) where the protocol needs it.
        """
        size = self.size
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidPoint(f"{what}: expected bytes")
        data = bytes(data)
        if len(data) != 1 + 2 * size:
            raise InvalidPoint(f"{what}: expected {1 + 2 * size} octets, got {len(data)}")
        if data[0] != 0x04:
            raise InvalidPoint(f"{what}: only uncompressed points (prefix 0x04) are accepted")
        x = mpz(int.from_bytes(data[1 : 1 + size], "big"))
        y = mpz(int.from_bytes(data[1 + size :], "big"))
        if x >= self.p or y >= self.p:
            raise InvalidPoint(f"{what}: coordinate not reduced modulo p")
        if not self.on_curve(x, y):
            raise InvalidPoint(f"{what}: not on {self.name}")
        return (x, y)

    def in_subgroup(self, point: Affine) -> bool:
        """True if ``[n]point`` is infinity (always true when the cofactor is 1)."""
        if self.cofactor == 1:
            return True
        return mul_public(self, point, self.n)[2] == 0


def secret_inverse(value: int, prime: mpz) -> mpz:
    """value⁻¹ mod prime for a secret value, by Fermat with GMP's side-channel-silent powm."""
    return gmpy2.powmod_sec(mpz(value), prime - 2, prime)


def double(P: Jacobian, p: mpz) -> Jacobian:
    """Jacobian doubling for a = −3 (dbl-2001-b: 3M + 5S)."""
    X, Y, Z = P
    if not Z or not Y:
        return INFINITY
    delta = Z * Z % p
    gamma = Y * Y % p
    beta = X * gamma % p
    alpha = 3 * (X - delta) * (X + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    Z3 = ((Y + Z) * (Y + Z) - gamma - delta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return (X3, Y3, Z3)


def add_affine(P: Jacobian, x2: mpz, y2: mpz, p: mpz) -> Jacobian:
    """Jacobian + affine point (mixed addition, 8M + 3S); handles the exceptional cases."""
    X1, Y1, Z1 = P
    if not Z1:
        return (x2, y2, _ONE)
    Z1Z1 = Z1 * Z1 % p
    H = (x2 * Z1Z1 - X1) % p
    r = (y2 * Z1 * Z1Z1 - Y1) % p
    if not H:
        if not r:
            return double((x2, y2, _ONE), p)
        return INFINITY
    HH = H * H % p
    HHH = H * HH % p
    V = X1 * HH % p
    X3 = (r * r - HHH - 2 * V) % p
    Y3 = (r * (V - X3) - Y1 * HHH) % p
    return (X3, Y3, Z1 * H % p)


def add(P: Jacobian, Q: Jacobian, p: mpz) -> Jacobian:
    """General Jacobian addition (add-1998-cmo-2: 12M + 4S); handles the exceptional cases."""
    X1, Y1, Z1 = P
    X2, Y2, Z2 = Q
    if not Z1:
        return Q
    if not Z2:
        return P
    Z1Z1 = Z1 * Z1 % p
    Z2Z2 = Z2 * Z2 % p
    U1 = X1 * Z2Z2 % p
    S1 = Y1 * Z2 * Z2Z2 % p
    H = (X2 * Z1Z1 - U1) % p
    r = (Y2 * Z1 * Z1Z1 - S1) % p
    if not H:
        if not r:
            return double(P, p)
        return INFINITY
    HH = H * H % p
    HHH = H * HH % p
    V = U1 * HH % p
    X3 = (r * r - HHH - 2 * V) % p
    Y3 = (r * (V - X3) - S1 * HHH) % p
    return (X3, Y3, Z1 * Z2 * H % p)


def to_affine(P: Jacobian, p: mpz) -> Affine | None:
    """Affine form of a Jacobian point, or None for infinity."""
    X, Y, Z = P
    if not Z:
        return None
    zi = gmpy2.invert(Z, p)
    zi2 = zi * zi % p
    return (X * zi2 % p, Y * zi2 * zi % p)


def batch_to_affine(points: Sequence[Jacobian], p: mpz) -> list[Affine]:
    """Affine forms of many finite Jacobian points with one inversion (Montgomery's trick)."""
    prefix = []
    acc = _ONE
    for *_, Z in points:
        if not Z:
            raise ValueError("point at infinity in a batch normalisation")
        prefix.append(acc)
        acc = acc * Z % p
    inv = gmpy2.invert(acc, p)
    out: list[Affine] = [(_ZERO, _ZERO)] * len(points)
    for idx in range(len(points) - 1, -1, -1):
        X, Y, Z = points[idx]
        zi = inv * prefix[idx] % p
        inv = inv * Z % p
        zi2 = zi * zi % p
        out[idx] = (X * zi2 % p, Y * zi2 * zi % p)
    return out


def regular_digits(k: int, n: int, w: int) -> list[int]:
    """Signed odd digits d_i in [−(2^w − 1), 2^w − 1] with ``Σ d_i·2^(w·i) ≡ k (mod n)``.

    The count depends only on ``n`` and ``w``: ``k`` is first made odd (``k`` or ``k + n``) by
    arithmetic, then every step peels one odd digit (Joye–Tunstall regular recoding).
    """
    k = int(k) % int(n)
    n = int(n)
    k += n * (1 - (k & 1))
    count = (n.bit_length() + 1 + w - 1) // w + 1
    half = 1 << w
    mask = (half << 1) - 1
    digits = []
    for _ in range(count - 1):
        d = (k & mask) - half
        digits.append(d)
        k = (k - d) >> w
    digits.append(k)
    return digits


def _odd_multiples(base: Jacobian, count: int, p: mpz) -> list[Jacobian]:
    """[B, 3B, 5B, …, (2·count − 1)B] in Jacobian coordinates."""
    twice = double(base, p)
    out = [base]
    for _ in range(count - 1):
        out.append(add(out[-1], twice, p))
    return out


class FixedBase:
    """Precomputed affine table for ``[k]B`` with a fixed base B (fixed-base windowing).

    Window ``i`` stores ``[(2j+1)·2^(w·i)]B`` for ``j < 2^(w−1)``; ``[k]B`` is then the sum of one
    ±entry per window of the regular recoding of ``k`` — no doublings, and the same sequence of
    additions for every scalar.
    """

    __slots__ = ("curve", "w", "windows", "table")

    def __init__(self, curve: Curve, base: Affine, w: int) -> None:
        self.curve = curve
        self.w = w
        p = curve.p
        self.windows = len(regular_digits(1, curve.n, w))
        half = 1 << (w - 1)
        flat: list[Jacobian] = []
        cur: Jacobian = (mpz(base[0]), mpz(base[1]), _ONE)
        for _ in range(self.windows):
            mults = _odd_multiples(cur, half, p)
            flat.extend(mults)
            cur = add(mults[-1], cur, p)  # (2^w − 1)B + B = 2^w·B
        aff = batch_to_affine(flat, p)
        self.table = [aff[i * half : (i + 1) * half] for i in range(self.windows)]

    def terms(self, k: int) -> list[Affine]:
        """The affine points ±T[i][|d_i|] whose sum is ``[k]B`` (one per window)."""
        p = self.curve.p
        out = []
        for digit, row in zip(regular_digits(k, self.curve.n, self.w), self.table, strict=True):
            x, y = row[abs(digit) >> 1]
            out.append((x, y) if digit > 0 else (x, p - y))
        return out

    def mul(self, k: int) -> Jacobian:
        """``[k]B`` in Jacobian coordinates."""
        return sum_points(self.terms(k), self.curve.p)


def sum_points(points: list[Affine], p: mpz) -> Jacobian:
    """Sum of affine points by pairwise affine additions, one batched inversion per tree level.

    An affine addition costs 1 inversion + 3 multiplications; sharing one inversion among all the
    additions of a level (Montgomery's trick, 3 more multiplications each) makes the whole sum
    about 6 multiplications per point instead of 11 for mixed Jacobian additions. If two points
    of a level share an x-coordinate (probability about 2^-250 for the recoded scalars used
    here) the sum falls back to Jacobian additions, which handle every case.
    """
    level = list(points)
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        pairs = len(level) >> 1
        prefix = []
        acc = _ONE
        for idx in range(pairs):
            prefix.append(acc)
            acc = acc * (level[2 * idx + 1][0] - level[2 * idx][0]) % p
        if not acc:
            return _sum_jacobian(level, p)
        inv = gmpy2.invert(acc, p)
        nxt: list[Affine] = [(_ZERO, _ZERO)] * pairs
        for idx in range(pairs - 1, -1, -1):
            x1, y1 = level[2 * idx]
            x2, y2 = level[2 * idx + 1]
            dx = x2 - x1
            lam = (y2 - y1) * inv * prefix[idx] % p
            inv = inv * dx % p
            x3 = (lam * lam - x1 - x2) % p
            nxt[idx] = (x3, (lam * (x1 - x3) - y1) % p)
        if odd is not None:
            nxt.append(odd)
        level = nxt
    if not level:
        return INFINITY
    return (level[0][0], level[0][1], _ONE)


def _sum_jacobian(points: list[Affine], p: mpz) -> Jacobian:
    acc = INFINITY
    for x, y in points:
        acc = add_affine(acc, x, y, p)
    return acc


def naf_digits(k: int) -> list[int]:
    """Non-adjacent form of ``k`` ≥ 0: digits in {−1, 0, 1}, no two adjacent non-zero, most significant first."""
    k = int(k)
    digits = []
    while k:
        if k & 1:
            d = 2 - (k & 3)
            k -= d
        else:
            d = 0
        digits.append(d)
        k >>= 1
    digits.reverse()
    return digits


def mul_public(curve: Curve, point: Affine, k: int) -> Jacobian:
    """``[k]P`` for a public scalar (any k ≥ 0, not reduced): plain double-and-add on its NAF."""
    p = curve.p
    x, y = mpz(point[0]), mpz(point[1])
    ny = p - y
    acc = INFINITY
    for d in naf_digits(k):
        acc = double(acc, p)
        if d == 1:
            acc = add_affine(acc, x, y, p)
        elif d == -1:
            acc = add_affine(acc, x, ny, p)
    return acc
