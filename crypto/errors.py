"""Typed errors for the crypto package. Messages never contain secret material."""


class CryptoError(Exception):
    """Base class of every error raised by :mod:`crypto`."""


class InvalidPoint(CryptoError):
    """A point is malformed, not on its curve, the point at infinity, or outside the subgroup."""


class InvalidKey(CryptoError):
    """A key failed validation (RFC 6507 §5.1.2 SSK/PVT check, RFC 6508 §6.1.2 RSK check, range)."""


class InvalidSignature(CryptoError):
    """An ECCSI signature is malformed or does not verify."""


class DecapsulationError(CryptoError):
    """SAKKE decapsulation failed (malformed SED, wrong RSK or identity, re-encapsulation test)."""
