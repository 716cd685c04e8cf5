"""Hash helpers shared by ECCSI and SAKKE (SHA-256 throughout, as RFC 6509 §4 fixes)."""

from __future__ import annotations

import hashlib


def sha256(*parts: bytes) -> bytes:
    """SHA-256 of the concatenation of ``parts``."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def hash_to_integer_range(s: bytes, n: int) -> int:
    """HashToIntegerRange(s, n) of RFC 6508 §5.1 with hashfn = SHA-256.

    ``l = ceil(lg(n) / 256)`` where lg is the exact base-2 logarithm, so ``n = 2^256`` gives
    ``l = 1`` (not 2) and ``n = q`` (1022 bits) gives ``l = 4``.
    """
    n = int(n)
    if n < 2:
        raise ValueError("HashToIntegerRange needs n >= 2")
    lg_ceil = n.bit_length() - 1 if n & (n - 1) == 0 else n.bit_length()
    count = (lg_ceil + 255) // 256
    a = hashlib.sha256(s).digest()
    h = bytes(32)
    blocks = []
    for _ in range(count):
        h = hashlib.sha256(h).digest()
        blocks.append(hashlib.sha256(h + a).digest())
    return int.from_bytes(b"".join(blocks), "big") % n
