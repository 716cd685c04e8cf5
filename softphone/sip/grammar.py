"""Shared lexical rules of the SIP and SDP grammars (RFC 3261 §25.1, RFC 5234 core rules)."""

from __future__ import annotations

from .errors import ParseError

DIGITS = frozenset("0123456789")


def is_ascii_digits(text: str) -> bool:
    """True for one or more ASCII digits (RFC 5234 ``DIGIT``); ``str.isdigit`` also takes ² and ３."""
    return bool(text) and all(c in DIGITS for c in text)


def ascii_int(text: str, what: str, *, max_digits: int = 10, status: int = 400) -> int:
    """``1*DIGIT`` as an int; anything else (signs, spaces, non-ASCII digits) raises :class:`ParseError`."""
    if not is_ascii_digits(text) or len(text) > max_digits:
        raise ParseError(f"bad {what}", status)
    return int(text)
