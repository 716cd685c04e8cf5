"""SAKKE parameter set 1 and its Tate–Lichtenbaum pairing (RFC 6508 §2.1, §3.2; RFC 6509 §4).

E: y² = x³ − 3x over F_p (p ≡ 3 mod 4, 1024 bits), a supersingular curve with #E(F_p) = p + 1 =
4q. The pairing ⟨R, Q⟩ is the reduced Tate pairing of R and ψ(Q), ψ(x, y) = (−x, i·y), valued in
PF_p = (F_p²)*/(F_p)*, an element ``x₁ + i·x₂`` being represented by the integer ``x₂/x₁ mod p``
(RFC 6508 §2.3). Because PF_p quotients out every F_p factor, the (p − 1) part of the final
exponent (p² − 1)/q disappears and only the power c = (p + 1)/q = 4 remains; vertical lines and
any F_p scaling of the line functions vanish for the same reason.

Speed: the Miller loop runs over a signed-digit form of q − 1 with the base point in Jacobian
coordinates (no inversion in the loop); :class:`MillerTable` precomputes the line coefficients of a
fixed first argument (the receiver's RSK) so each step costs one F_p² squaring and one
multiplication by a line normalised to u + i (four F_p products per line; a doubling line and the
addition line after it are merged into one quadratic factor). :class:`GtFixedBase` computes g^r from a table of
normalised powers of g, two F_p products per 6-bit window.

Timing side channels: see :mod:`crypto.ec`. The loop scalar q is public, so the sequence of
operations in the pairing does not depend on secrets; gmpy2's arithmetic itself is not constant
time.
"""

from __future__ import annotations

import gmpy2  # type: ignore[import-untyped]  # gmpy2 ships no type information
from gmpy2 import mpz

from crypto.ec import Affine, Curve, naf_digits, regular_digits
from crypto.errors import InvalidPoint

P_HEX = (
    "997ABB1F0A563FDA65C61198DAD0657A416C0CE19CB48261BE9AE358B3E01A2EF40AAB27E2FC0F1B228730D531A59CB0"
    "E791B39FF7C88A19356D27F4A666A6D0E26C6487326B4CD4512AC5CD65681CE1B6AFF4A831852A82A7CF3C521C3C09AA"
    "9F94D6AF56971F1FFCE3E82389857DB080C5DF10AC7ACE87666D807AFEA85FEB"
)
Q_HEX = (
    "265EAEC7C2958FF69971846636B4195E905B0338672D20986FA6B8D62CF8068BBD02AAC9F8BF03C6C8A1CC354C69672C"
    "39E46CE7FDF222864D5B49FD2999A9B4389B1921CC9AD335144AB173595A07386DABFD2A0C614AA0A9F3CF14870F026A"
    "A7E535ABD5A5C7C7FF38FA08E2615F6C203177C42B1EB3A1D99B601EBFAA17FB"
)
PX_HEX = (
    "53FC09EE332C29AD0A7990053ED9B52A2B1A2FD60AEC69C698B2F204B6FF7CBFB5EDB6C0F6CE2308AB10DB9030B09E10"
    "43D5F22CDB9DFA55718BD9E7406CE8909760AF765DD5BCCB337C86548B72F2E1A702C3397A60DE74A7C1514DBA66910D"
    "D5CFB4CC80728D87EE9163A5B63F73EC80EC46C4967E0979880DC8ABEAE63895"
)
PY_HEX = (
    "0A8249063F6009F1F9F1F0533634A135D3E82016029906963D778D821E141178F5EA69F4654EC2B9E7F7F5E5F0DE55F6"
    "6B598CCF9A140B2E416CFF0CA9E032B970DAE117AD547C6CCAD696B5B7652FE0AC6F1E80164AA989492D979FC5A4D5F2"
    "13515AD7E9CB99A980BDAD5AD5BB4636ADB9B5706A67DCDE75573FD71BEF16D7"
)
G_HEX = (
    "66FC2A432B6EA392148F15867D623068C6A87BD1FB94C41E27FABE658E015A87371E94744C96FEDA449AE9563F8BC446"
    "CBFDA85D5D00EF577072DA8F541721BEEE0FAED1828EAB90B99DFB0138C7843355DF0460B4A9FD74B4F1A32BCAFA1FFA"
    "D682C033A7942BCCE3720F20B9B7B0403C8CAE87B7A0042ACDE0FAB36461EA46"
)

SAKKE_CURVE = Curve(
    name="SAKKE parameter set 1",
    p=mpz(P_HEX, 16),
    b=mpz(0),
    n=mpz(Q_HEX, 16),
    gx=mpz(PX_HEX, 16),
    gy=mpz(PY_HEX, 16),
    cofactor=4,
)
#: g = ⟨P, P⟩ as a PF_p integer (RFC 6508 §2.1).
G_PAIRING = mpz(G_HEX, 16)

_p = SAKKE_CURVE.p
_q = SAKKE_CURVE.n


#: Miller loop digits for q − 1, the NAF after its leading 1 (the loop starts from R itself); every
#: F_p-scaled chain computing f_{q−1} gives the same PF_p value.
_DIGITS = naf_digits(int(_q) - 1)[1:]


def _final(v1: mpz, v2: mpz) -> mpz | None:
    """Raise to c = 4 (two squarings) and map x₁ + i·x₂ to x₂/x₁; None if x₁ = 0."""
    p = _p
    for _ in range(2):
        v1, v2 = (v1 + v2) * (v1 - v2) % p, 2 * v1 * v2 % p
    if not v1:
        return None
    return v2 * gmpy2.invert(v1, p) % p


def pairing(R: Affine, Q: Affine) -> mpz | None:
    """⟨R, Q⟩ of RFC 6508 §3.2 for affine R, Q in E(F_p)[q]; None on a degenerate input.

    Degenerate means the Miller loop met the point at infinity or the value has x₁ = 0, which
    cannot happen for points of order q; callers turn None into their own typed error.
    """
    p = _p
    xr, yr = R
    xq, yq = Q
    nyr = p - yr
    X, Y, Z = xr, yr, mpz(1)
    v1, v2 = mpz(1), mpz(0)
    for d in _DIGITS:
        if not Z or not Y:
            return None
        # v = v² · l_{C,C}(ψ(Q)); doubling (dbl-2001-b) with the tangent scaled by 2Y·Z³.
        v1, v2 = (v1 + v2) * (v1 - v2) % p, 2 * v1 * v2 % p
        delta = Z * Z % p
        gamma = Y * Y % p
        beta = X * gamma % p
        alpha = 3 * (X - delta) * (X + delta) % p
        Z3 = ((Y + Z) * (Y + Z) - gamma - delta) % p
        a = (alpha * (xq * delta + X) - 2 * gamma) % p
        b = yq * Z3 * delta % p
        t1 = v1 * a
        t2 = v2 * b
        v1, v2 = (t1 - t2) % p, ((v1 + v2) * (a + b) - t1 - t2) % p
        X = (alpha * alpha - 8 * beta) % p
        Y = (alpha * (4 * beta - X) - 8 * gamma * gamma) % p
        Z = Z3
        if d:
            # v = v · l_{C,±R}(ψ(Q)); mixed addition with the chord scaled by Z·H.
            ys = yr if d > 0 else nyr
            Z1Z1 = Z * Z % p
            H = (xr * Z1Z1 - X) % p
            r = (ys * Z * Z1Z1 - Y) % p
            if not H:
                return None
            Z3 = Z * H % p
            a = (r * (xq + xr) - ys * Z3) % p
            b = yq * Z3 % p
            t1 = v1 * a
            t2 = v2 * b
            v1, v2 = (t1 - t2) % p, ((v1 + v2) * (a + b) - t1 - t2) % p
            HH = H * H % p
            HHH = H * HH % p
            V = X * HH % p
            X = (r * r - HHH - 2 * V) % p
            Y = (r * (V - X) - Y * HHH) % p
            Z = Z3
    return _final(v1, v2)


class MillerTable:
    """Line coefficients of the Miller loop for a fixed first argument K (RFC 6508 §3.2).

    Each line through multiples of K, evaluated at ψ(x, y), is (up to an F_p factor)
    ``λ·x + μ + i·y``; storing (λ, μ) in affine form makes ⟨K, Q⟩ cost one F_p product per line
    plus the F_p² arithmetic. Holds values derived from a secret key: never log or repr it.
    """

    __slots__ = ("_lines",)

    def __init__(self, K: Affine) -> None:
        p = _p
        xk, yk = mpz(K[0]), mpz(K[1])
        nyk = p - yk
        X, Y, Z = xk, yk, mpz(1)
        nums: list[tuple[mpz, mpz]] = []
        dens: list[mpz] = []
        for d in _DIGITS:
            if not Z or not Y:
                raise InvalidPoint("degenerate Miller loop: the point is not of order q")
            delta = Z * Z % p
            gamma = Y * Y % p
            beta = X * gamma % p
            alpha = 3 * (X - delta) * (X + delta) % p
            Z3 = ((Y + Z) * (Y + Z) - gamma - delta) % p
            # real = alpha·δ·x + (alpha·X − 2γ), imag = Z3·δ·y  →  divide by Z3·δ.
            nums.append((alpha * delta % p, (alpha * X - 2 * gamma) % p))
            dens.append(Z3 * delta % p)
            X = (alpha * alpha - 8 * beta) % p
            Y = (alpha * (4 * beta - X) - 8 * gamma * gamma) % p
            Z = Z3
            if d:
                ys = yk if d > 0 else nyk
                Z1Z1 = Z * Z % p
                H = (xk * Z1Z1 - X) % p
                r = (ys * Z * Z1Z1 - Y) % p
                if not H:
                    raise InvalidPoint("degenerate Miller loop: the point is not of order q")
                Z3 = Z * H % p
                # real = r·x + (r·xk − ys·Z3), imag = Z3·y  →  divide by Z3.
                nums.append((r, (r * xk - ys * Z3) % p))
                dens.append(Z3)
                HH = H * H % p
                HHH = H * HH % p
                V = X * HH % p
                X = (r * r - HHH - 2 * V) % p
                Y = (r * (V - X) - Y * HHH) % p
                Z = Z3
        # Batch inversion of the denominators (Montgomery's trick).
        prefix = []
        acc = mpz(1)
        for den in dens:
            prefix.append(acc)
            acc = acc * den % p
        inv = gmpy2.invert(acc, p)
        lines: list[tuple[mpz, mpz]] = [(mpz(0), mpz(0))] * len(dens)
        for idx in range(len(dens) - 1, -1, -1):
            di = inv * prefix[idx] % p
            inv = inv * dens[idx] % p
            lam, mu = nums[idx]
            lines[idx] = (lam * di % p, mu * di % p)
        self._lines = _group_lines(lines)

    def __repr__(self) -> str:
        return "MillerTable(<secret>)"

    def pairing(self, Q: Affine) -> mpz | None:
        """⟨K, Q⟩ for the table's K; None on a degenerate result."""
        p = _p
        xq, yq = Q
        if not yq:
            return None
        # Scale every line by 1/yq (an F_p factor): λ·x + μ + i·y becomes u + i, u = λ·x/y + μ/y.
        w = gmpy2.invert(yq, p)
        xw = xq * w % p
        xw2, xww, w2 = xw * xw % p, xw * w % p, w * w % p
        v1, v2 = mpz(1), mpz(0)
        for step in self._lines:
            v1, v2 = (v1 + v2) * (v1 - v2) % p, 2 * v1 * v2 % p
            if len(step) == 2:
                u = (step[0] * xw + step[1] * w) % p
                v1, v2 = (v1 * u - v2) % p, (v1 + v2 * u) % p
            else:
                # Doubling and addition lines merged: (u₁ + i)(u₂ + i) = (u₁u₂ − 1) + i(u₁ + u₂).
                a, b, c, lsum, msum = step
                re = (a * xw2 + b * xww + c * w2 - 1) % p
                im = (lsum * xw + msum * w) % p
                t1 = v1 * re
                t2 = v2 * im
                v1, v2 = (t1 - t2) % p, ((v1 + v2) * (re + im) - t1 - t2) % p
        return _final(v1, v2)


def _group_lines(lines: list[tuple[mpz, mpz]]) -> list[tuple[mpz, ...]]:
    """One entry per loop digit: (λ, μ) after a doubling, or the merged coefficients
    (λ₁λ₂, λ₁μ₂ + λ₂μ₁, μ₁μ₂, λ₁ + λ₂, μ₁ + μ₂) of a doubling line followed by an addition line."""
    p = _p
    steps: list[tuple[mpz, ...]] = []
    idx = 0
    for d in _DIGITS:
        if d:
            (l1, m1), (l2, m2) = lines[idx], lines[idx + 1]
            steps.append((l1 * l2 % p, (l1 * m2 + l2 * m1) % p, m1 * m2 % p, (l1 + l2) % p, (m1 + m2) % p))
            idx += 2
        else:
            steps.append(lines[idx])
            idx += 1
    return steps


class GtFixedBase:
    """Fixed-base table for powers of a fixed PF_p element (g), RFC 6508 §6.2.1 step 4.

    Window ``i`` stores t with 1 + i·t = α^((2j+1)·2^(w·i)) for odd multiples; negative digits
    use the conjugate (1 − i·t), the inverse in PF_p because α·ᾱ lies in F_p. Each window then
    costs one multiplication by a normalised element: two F_p products.
    """

    __slots__ = ("w", "table")

    def __init__(self, t: int, w: int = 6) -> None:
        p = _p
        self.w = w
        windows = len(regular_digits(1, _q, w))
        half = 1 << (w - 1)
        flat: list[tuple[mpz, mpz]] = []
        b1, b2 = mpz(1), mpz(t) % p
        for _ in range(windows):
            s1, s2 = (b1 + b2) * (b1 - b2) % p, 2 * b1 * b2 % p  # base squared
            c1, c2 = b1, b2
            for _ in range(half):
                flat.append((c1, c2))
                c1, c2 = (c1 * s1 - c2 * s2) % p, (c1 * s2 + c2 * s1) % p
            l1, l2 = flat[-1]  # base^(2^w − 1); times base gives the next window's base
            b1, b2 = (l1 * b1 - l2 * b2) % p, (l1 * b2 + l2 * b1) % p
        # Normalise every entry to x₁ = 1 with one batched inversion.
        prefix = []
        acc = mpz(1)
        for c1, _ in flat:
            prefix.append(acc)
            acc = acc * c1 % p
        inv = gmpy2.invert(acc, p)
        norm = [mpz(0)] * len(flat)
        for idx in range(len(flat) - 1, -1, -1):
            c1, c2 = flat[idx]
            norm[idx] = c2 * inv * prefix[idx] % p
            inv = inv * c1 % p
        self.table = [norm[i * half : (i + 1) * half] for i in range(windows)]

    def __repr__(self) -> str:
        return f"GtFixedBase(w={self.w})"

    def pow(self, k: int) -> mpz | None:
        """α^k as a PF_p integer; None if the result has x₁ = 0."""
        p = _p
        v1, v2 = mpz(1), mpz(0)
        for digit, row in zip(regular_digits(k, _q, self.w), self.table, strict=True):
            s = row[abs(digit) >> 1]
            if digit < 0:
                s = p - s
            v1, v2 = (v1 - v2 * s) % p, (v2 + v1 * s) % p
        if not v1:
            return None
        return v2 * gmpy2.invert(v1, p) % p
