"""Pure, I/O-free identity-based cryptography for Secure Chorus.

ECCSI (RFC 6507), SAKKE (RFC 6508), the MIKEY-SAKKE I_MESSAGE (RFC 6509, 3GPP TS 33.180),
identifiers and key derivation. Bytes in, objects out; every failure is a subclass of
:class:`crypto.errors.CryptoError`.
"""
