"""Typed MIKEY errors. Each message names the reason (the call layer puts it in a SIP 488 Warning)."""

from crypto.errors import CryptoError


class MikeyError(CryptoError):
    """Base class of every I_MESSAGE failure."""


class MalformedMessage(MikeyError, ValueError):
    """The octets are not a well-formed MIKEY message (truncated, bad length, unknown payload, ...)."""


class UnsupportedMessage(MikeyError):
    """Well-formed, but not a MIKEY-SAKKE I_MESSAGE we can process (data type, SAKKE params, ...)."""


class StaleTimestamp(MikeyError):
    """The T payload lies outside the accepted time window."""


class ReplayedMessage(MikeyError):
    """The same I_MESSAGE (or RAND + CSB ID) was already accepted within the window."""


class ExpiredKeyPeriod(MikeyError):
    """No key set of the receiver covers the key period the message was made for."""


class IdentityMismatch(MikeyError):
    """The message is for another receiver, or its initiator is not the claimed sender."""


class SignatureRejected(MikeyError):
    """The ECCSI signature does not verify under either known signed-octet scope."""


class KeyUnwrapFailed(MikeyError):
    """SAKKE decapsulation failed (wrong RSK for this identity, or a tampered SED)."""
