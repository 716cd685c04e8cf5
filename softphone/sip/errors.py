"""Typed SIP errors (RFC 3261). Messages are one line and never carry secrets."""

from __future__ import annotations

from softphone.errors import SoftphoneError


class SipError(SoftphoneError):
    """Base class of every error raised by ``softphone.sip``."""


class ParseError(SipError):
    """A message, header, URI or SDP body does not follow its grammar.

    ``status`` is the response a server should send (400 Bad Request, 413, 505 ...).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TransactionTimeout(SipError):
    """No final response before Timer B/F fired (RFC 3261 §17.1)."""


class TransportError(SipError):
    """A message could not be sent (no route, connection refused, TLS failure)."""


class CallFailed(SipError):
    """An INVITE or re-INVITE ended with a non-2xx final response."""

    def __init__(self, status: int, reason: str, warning: str | None = None) -> None:
        text = f"{status} {reason}" + (f" ({warning})" if warning else "")
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.warning = warning


class RegistrationFailed(SipError):
    """REGISTER was refused or could not be authenticated."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"registration failed: {status} {reason}")
        self.status = status
        self.reason = reason


class SessionStateError(SipError):
    """A call operation was asked for in a state that does not allow it (answer after CANCEL ...)."""
