"""Registration (RFC 3261 §10) without I/O: REGISTER requests, their outcomes, refresh timing.

:class:`Registration` builds each REGISTER (one Call-ID, CSeq increasing across refreshes,
§10.2.4) and turns a final response into an :class:`Outcome`: the granted expiry, a retry with
the registrar's ``Min-Expires`` (423), or :class:`RegistrationFailed`. The UA sends the requests
(answering digest challenges) and sleeps until :func:`refresh_delay`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

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

    def request(self, contact: NameAddr, expires: int, from_tag: str, *, contact_text: str | None = None) -> Request:
        """The next REGISTER for ``contact`` with ``expires`` (0 removes the binding); ``contact_text``
        replaces the Contact's text (e.g. with ``+sip.instance`` and ``reg-id``)."""
        self.cseq += 1
        req = Request(method="REGISTER", uri=self.registrar)
        req.headers.add("From", f"<{self.aor}>;tag={from_tag}")
        req.headers.add("To", f"<{self.aor}>")
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{self.cseq} REGISTER")
        req.headers.add("Contact", f"{contact_text or contact};expires={expires}")
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


# -- recovery (RFC 5626 §4.4, §4.5): retry with backoff, re-register on flow failure, keep-alives ---------


class RegState(Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    RETRYING = "retrying"


class Action(Enum):
    """What the driver must do now: send a REGISTER, or send a keep-alive ping on the flow."""

    REGISTER = "register"
    PING = "ping"


@dataclass(frozen=True)
class RegistrationStatus:
    """A snapshot for the user: state, when the binding lapses / the next retry is (same clock as
    the machine's ``now``), why the last attempt failed, consecutive failures, where we registered."""

    state: RegState
    expires_at: float | None = None
    retry_at: float | None = None
    reason: str | None = None
    failures: int = 0
    target: str | None = None

    def describe(self, now: float) -> str:
        """``registered (expires in 3570 s)``, ``retrying in 12 s (503 Service Unavailable)``, …"""
        if self.state is RegState.REGISTERED and self.expires_at is not None:
            return f"registered (expires in {max(0, round(self.expires_at - now))} s)"
        if self.state is RegState.RETRYING and self.retry_at is not None:
            return f"retrying in {max(0, round(self.retry_at - now))} s ({self.reason or 'failed'})"
        return self.state.value


@dataclass(frozen=True)
class Backoff:
    """RFC 5626 §4.5: wait a random 50-100 % of ``min(max_time, base_time * 2 ** failures)``."""

    base_time: float = 30.0
    max_time: float = 1800.0

    def bound(self, failures: int) -> float:
        return min(self.max_time, self.base_time * 2 ** min(failures, 32))

    def delay(self, failures: int, rng: Callable[[], float]) -> float:
        return self.bound(failures) * (0.5 + 0.5 * rng())


class Recovery:
    """The registration's life as a machine: register, refresh, retry, keep the flow alive.

    Inputs: :meth:`start`, :meth:`registered` (granted expiry, optional ``Flow-Timer``),
    :meth:`failed` (a REGISTER attempt failed: timeout, transport error, error response),
    :meth:`flow_failed` (the connection closed, a pong or STUN response did not come),
    :meth:`pong`, :meth:`advance` and :meth:`stop`. Each returns the :class:`Action` list to do now;
    ``deadline`` is when :meth:`advance` must next be called. ``keepalive`` is the ping interval
    (None: no keep-alives); each ping is sent after a random 80-100 % of it (§4.4.1) and a flow
    whose pong is ``pong_timeout`` seconds late has failed, once the peer has answered a ping on
    this flow at least once (a registrar that never answers keep-alives gets pings that keep NAT
    bindings open, not a re-registration every interval). A failed flow is replaced at once; failed
    attempts are retried after :class:`Backoff`.
    """

    def __init__(self, *, backoff: Backoff | None = None, rng: Callable[[], float],
                 keepalive: float | None = None, pong_timeout: float = 10.0) -> None:
        self.backoff = backoff or Backoff()
        self.rng = rng
        self.keepalive = keepalive
        self.pong_timeout = pong_timeout
        self.status = RegistrationStatus(RegState.UNREGISTERED)
        self.timers: dict[str, float] = {}
        self._interval = keepalive
        self._answered = False

    @property
    def state(self) -> RegState:
        return self.status.state

    @property
    def deadline(self) -> float | None:
        return min(self.timers.values(), default=None)

    @property
    def flow_answered(self) -> bool:
        """Whether the peer has answered a keep-alive on the current flow."""
        return self._answered

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def start(self, now: float) -> list[Action]:
        self.timers.clear()
        self._set(state=RegState.REGISTERING, retry_at=None)
        return [Action.REGISTER]

    def registered(self, granted: int, now: float, *, flow_timer: int | None = None,
                   target: str | None = None, new_flow: bool = True) -> list[Action]:
        """A REGISTER succeeded; ``new_flow``: over a different connection than the last one."""
        self.timers.clear()
        if new_flow:
            self._answered = False
        self._set(state=RegState.REGISTERED, expires_at=now + granted, retry_at=None, reason=None, failures=0,
                  target=target)
        self.timers["refresh"] = now + refresh_delay(granted)
        self._interval = float(flow_timer) if flow_timer else self.keepalive
        self._schedule_ping(now)
        return []

    def _schedule_ping(self, now: float) -> None:
        if self._interval:
            self.timers["keepalive"] = now + self._interval * (0.8 + 0.2 * self.rng())

    def failed(self, reason: str, now: float) -> list[Action]:
        failures = self.status.failures + 1
        retry_at = now + self.backoff.delay(failures, self.rng)
        self.timers.clear()
        self.timers["retry"] = retry_at
        self._set(state=RegState.RETRYING, retry_at=retry_at, reason=reason, failures=failures, expires_at=None)
        return []

    def flow_failed(self, reason: str, now: float) -> list[Action]:
        if self.state is not RegState.REGISTERED:
            return []
        self.timers.clear()
        self._set(state=RegState.REGISTERING, reason=reason, expires_at=None)
        return [Action.REGISTER]

    def pong(self, now: float) -> list[Action]:
        self.timers.pop("pong", None)
        self._answered = True
        return []

    def stop(self) -> None:
        self.timers.clear()
        self.status = RegistrationStatus(RegState.UNREGISTERED)

    def advance(self, now: float) -> list[Action]:
        due = {name for name, at in self.timers.items() if at <= now}
        if "pong" in due:
            if self._answered:
                return self.flow_failed("keep-alive not answered", now)
            del self.timers["pong"]
        actions: list[Action] = []
        if due & {"refresh", "retry"}:
            self.timers.pop("refresh", None)
            self.timers.pop("retry", None)
            self.timers.pop("keepalive", None)
            self.timers.pop("pong", None)
            if self.state is RegState.RETRYING:
                self._set(state=RegState.REGISTERING)
            return [Action.REGISTER]
        if "keepalive" in due:
            self.timers.setdefault("pong", now + self.pong_timeout)  # the oldest unanswered ping counts
            self._schedule_ping(now)
            actions.append(Action.PING)
        return actions
