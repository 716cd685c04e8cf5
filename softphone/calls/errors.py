"""The root of every error of call control (profiles, negotiation, calls)."""

from softphone.errors import SoftphoneError


class CallError(SoftphoneError):
    """A call could not be placed, answered or changed; the message is one line without secrets."""
