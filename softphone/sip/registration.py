"""Registration (RFC 3261 §10) without I/O: REGISTER requests, their outcomes, refresh timing.

:class:`Registration` builds each REGISTER (one Call-ID, CSeq increasing across refreshes,
§10.2.4) and turns a final response into an :class:`Outcome`: the granted expiry, a retry with
the registrar's ``Min-Expires`` (423), or :class:`RegistrationFailed`. The UA sends the requests
(answering digest challenges) and sleeps until :func:`refresh_delay`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParseError, RegistrationFailed
from .grammar import is_ascii_digits
from .message import Request, Response
from .uri import NameAddr, SipUri

MAX_ATTEMPTS = 3  # 423 Interval Too Brief is followed at most twice


@dataclass(frozen=True)
class Outcome:
    """``granted``: the binding's expiry in seconds (0 after an unregister); ``retry``: ask again
    with this expiry (423 with Min-Expires)."""

    granted: int | None = None
    retry: int | None = None


class Registration:
    """The REGISTER dialog-less sequence of one AOR binding."""

    def __init__(self, aor: SipUri, call_id: str, registrar: SipUri) -> None:
        self.aor = aor
        self.call_id = call_id
        self.registrar = registrar
        self.cseq = 0
        self.expires: int | None = None   # the granted expiry while registered

    def request(self, contact: NameAddr, expires: int, from_tag: str) -> Request:
        """The next REGISTER for ``contact`` with ``expires`` (0 removes the binding)."""
        self.cseq += 1
        req = Request(method="REGISTER", uri=self.registrar)
        req.headers.add("From", f"<{self.aor}>;tag={from_tag}")
        req.headers.add("To", f"<{self.aor}>")
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{self.cseq} REGISTER")
        req.headers.add("Contact", f"{contact};expires={expires}")
        req.headers.add("Expires", str(expires))
        return req

    def resent_with_credentials(self, cseq: int) -> None:
        """The UA re-sent a challenged REGISTER with CSeq ``cseq`` (§22.2: CSeq + 1)."""
        self.cseq = cseq

    def outcome(self, resp: Response, contact: NameAddr, expires: int) -> Outcome:
        """What the final response to a REGISTER asking for ``expires`` means."""
        min_expires = resp.headers.get("Min-Expires") or ""
        if resp.status == 423 and is_ascii_digits(min_expires) and len(min_expires) <= 10:
            return Outcome(retry=int(min_expires))
        if not 200 <= resp.status < 300:
            raise RegistrationFailed(resp.status, resp.reason)
        if expires == 0:
            self.expires = None
            return Outcome(granted=0)
        granted = expires
        for value in resp.headers.get_all("Contact"):  # the registrar may shorten our expiry (§10.2.4)
            try:
                bound = NameAddr.parse(value)
            except ParseError:
                continue
            given = str(bound.params.get("expires") or "")
            ours = bound.uri.user == contact.uri.user and bound.uri.port == contact.uri.port
            if ours and is_ascii_digits(given) and len(given) <= 10:
                granted = int(given)
        self.expires = granted
        return Outcome(granted=granted)


def refresh_delay(expires: int) -> float:
    """Seconds until a binding of ``expires`` seconds is refreshed: half of a short one, else 30 s early."""
    return max(0.5, expires / 2 if expires < 60 else expires - 30)


def failed_refresh_expiry(expires: int) -> int:
    """The expiry to retry with after a refresh failed: half, at least 2 s."""
    return max(expires // 2, 2)
