"""Transaction layer (RFC 3261 §17, RFC 6026): INVITE and non-INVITE, client and server.

Sans-IO state machines: every input is a message or a clock reading ``now`` (seconds, any
monotonic origin) and every call returns a :class:`Step` — the datagrams to send and the
events for the transaction user. ``deadline`` says when ``advance(now)`` must be called next
(``None``: no timer is running). Nothing here sleeps, reads a clock or touches a socket; the
UA drives the machines from asyncio.

Timers by name (``timers`` maps the running ones to their due time):

* client INVITE: A (retransmit, T1 doubling, unreliable only), B (64*T1 timeout), D (linger
  after a non-2xx final: ``Timers.d`` unreliable, 0 reliable), M (RFC 6026 Accepted: 64*T1);
* client non-INVITE: E (retransmit, doubling capped at T2; T2 once Proceeding), F (64*T1),
  K (T4 unreliable, 0 reliable);
* server INVITE: G (final retransmit, doubling capped at T2, unreliable only), H (64*T1 wait
  for ACK), I (T4 unreliable, 0 reliable), L (RFC 6026 Accepted: 64*T1);
* server non-INVITE: J (64*T1 unreliable, 0 reliable).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import SessionStateError
from .message import Request, Response


@dataclass(frozen=True)
class Timers:
    """RFC 3261 §17 timer base values in seconds (Table 4); ``d`` is Timer D over UDP (>= 32 s)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# -- events for the transaction user ------------------------------------------------------------
@dataclass(frozen=True)
class ResponseReceived:
    """A response the TU must see: 1xx, the first final, and (INVITE) every 2xx retransmission."""

    response: Response
    retransmission: bool = False


@dataclass(frozen=True)
class TimedOut:
    """Timer B/F fired with no final response (client), or Timer H with no ACK (server)."""

    timer: str


@dataclass(frozen=True)
class RequestRetransmitted:
    """The request arrived again while the server INVITE transaction is Accepted (RFC 6026)."""

    request: Request


@dataclass(frozen=True)
class Acked:
    """The ACK for a non-2xx final response arrived (server INVITE)."""

    request: Request


@dataclass(frozen=True)
class Terminated:
    """The transaction is over; the TU may forget it."""


TransactionEvent = ResponseReceived | TimedOut | RequestRetransmitted | Acked | Terminated


@dataclass
class Step:
    """What one input produced: bytes to send, in order, and events for the TU."""

    send: list[bytes] = field(default_factory=list)
    events: list[TransactionEvent] = field(default_factory=list)

    def extend(self, other: Step) -> Step:
        self.send += other.send
        self.events += other.events
        return self


class _Machine:
    invite: bool

    def __init__(self, request: Request, reliable: bool, timers: Timers) -> None:
        self.request = request
        self.reliable = reliable
        self.config = timers
        self.state = State.TRYING
        self.timers: dict[str, float] = {}   # running timer name -> due time

    @property
    def deadline(self) -> float | None:
        """When :meth:`advance` must next be called, or None."""
        return min(self.timers.values()) if self.timers else None

    def advance(self, now: float) -> Step:
        """Fire every timer due at or before ``now``, earliest first."""
        step = Step()
        while self.timers:
            name, due = min(self.timers.items(), key=lambda item: item[1])
            if due > now:
                break
            del self.timers[name]
            step.extend(self._fire(name, due))
        return step

    def terminate(self) -> Step:
        """End the transaction at once (the TU gave up on it)."""
        if self.state is State.TERMINATED:
            return Step()
        self.state = State.TERMINATED
        self.timers.clear()
        return Step(events=[Terminated()])

    def _end_now(self, step: Step) -> Step:
        """A zero linger (reliable transport: D, I, J, K are 0) terminates within this step."""
        return step.extend(self.terminate())

    def _fire(self, name: str, due: float) -> Step:
        raise NotImplementedError


class ClientTransaction(_Machine):
    """INVITE (§17.1.1) or non-INVITE (§17.1.2) client transaction."""

    def __init__(self, request: Request, reliable: bool, timers: Timers) -> None:
        super().__init__(request, reliable, timers)
        self.invite = request.method == "INVITE"
        self.state = State.CALLING if self.invite else State.TRYING
        self.data = request.encode()
        self.final: Response | None = None
        self.ack: bytes | None = None
        self._interval = timers.t1
        self.started = False

    def start(self, now: float) -> Step:
        """Send the request and start Timers A/B (INVITE) or E/F (non-INVITE)."""
        if self.started:
            raise SessionStateError("transaction already started")
        self.started = True
        if not self.reliable:
            self.timers["A" if self.invite else "E"] = now + self.config.t1
        self.timers["B" if self.invite else "F"] = now + 64 * self.config.t1
        return Step(send=[self.data])

    def _fire(self, name: str, due: float) -> Step:
        if name == "A":
            self._interval *= 2
            self.timers["A"] = due + self._interval
            return Step(send=[self.data])
        if name == "E":
            t2 = self.config.t2
            self._interval = t2 if self.state is State.PROCEEDING else min(self._interval * 2, t2)
            self.timers["E"] = due + self._interval
            return Step(send=[self.data])
        if name in ("B", "F"):
            step = Step(events=[TimedOut(name)])
            return step.extend(self.terminate())
        return self.terminate()  # D, K, M

    def receive(self, resp: Response, now: float) -> Step:
        """Feed a response whose top Via branch and CSeq method match this transaction."""
        if self.state is State.TERMINATED:
            return Step()
        if resp.status < 200:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.state = State.PROCEEDING
                if self.invite:
                    self.timers.pop("A", None)
                return Step(events=[ResponseReceived(resp)])
            return Step()
        if self.state in (State.COMPLETED, State.ACCEPTED):
            if self.state is State.COMPLETED and self.ack is not None:
                return Step(send=[self.ack])  # retransmitted non-2xx final: repeat the ACK (§17.1.1.2)
            if self.state is State.ACCEPTED and resp.status < 300:
                return Step(events=[ResponseReceived(resp, retransmission=True)])
            return Step()
        for name in ("A", "B", "E", "F"):
            self.timers.pop(name, None)
        self.final = resp
        step = Step(events=[ResponseReceived(resp)])
        if self.invite and resp.status < 300:
            self.state = State.ACCEPTED  # RFC 6026: absorb 2xx retransmissions, the TU ACKs them
            self.timers["M"] = now + 64 * self.config.t1
            return step
        self.state = State.COMPLETED
        if self.invite:
            self.ack = build_non2xx_ack(self.request, resp).encode()
            step.send.append(self.ack)
            linger = 0.0 if self.reliable else self.config.d   # Timer D
            name = "D"
        else:
            linger = 0.0 if self.reliable else self.config.t4  # Timer K
            name = "K"
        if linger > 0:
            self.timers[name] = now + linger
            return step
        return self._end_now(step)


class ServerTransaction(_Machine):
    """INVITE (§17.2.1, RFC 6026) or non-INVITE (§17.2.2) server transaction."""

    def __init__(self, request: Request, reliable: bool, timers: Timers) -> None:
        super().__init__(request, reliable, timers)
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last: bytes | None = None
        self.last_response: Response | None = None
        self._interval = timers.t1

    def respond(self, resp: Response, now: float) -> Step:
        """Send a response from the TU and move the state machine."""
        if self.state is State.ACCEPTED and 200 <= resp.status < 300:
            return Step(send=[resp.encode()])  # the TU's own 2xx retransmission (RFC 6026 §7.1)
        if self.state is not State.TRYING and self.state is not State.PROCEEDING:
            return Step()  # nothing may follow a final response
        self.last = resp.encode()
        self.last_response = resp
        step = Step(send=[self.last])
        if resp.status < 200:
            self.state = State.PROCEEDING
            return step
        t1 = self.config.t1
        if self.invite and resp.status < 300:
            self.state = State.ACCEPTED
            self.timers["L"] = now + 64 * t1
            return step
        self.state = State.COMPLETED
        if not self.invite:  # Timer J holds only what it needs: the encoded final and the identity
            self.request = _skeleton(self.request)
            self.last_response = None
        if self.invite:
            if not self.reliable:
                self.timers["G"] = now + t1
            self.timers["H"] = now + 64 * t1
            return step
        if self.reliable:
            return self._end_now(step)
        self.timers["J"] = now + 64 * t1
        return step

    def receive(self, req: Request, now: float) -> Step:
        """The request arrived again, or (INVITE) its ACK for a non-2xx final response."""
        if req.method == "ACK":
            if self.state is not State.COMPLETED:
                return Step()
            self.state = State.CONFIRMED
            self.timers.pop("G", None)
            self.timers.pop("H", None)
            step = Step(events=[Acked(req)])
            if self.reliable:
                return self._end_now(step)
            self.timers["I"] = now + self.config.t4
            return step
        if self.state is State.ACCEPTED:
            return Step(events=[RequestRetransmitted(req)])
        if self.last and self.state in (State.PROCEEDING, State.TRYING, State.COMPLETED):
            return Step(send=[self.last])
        return Step()

    def _fire(self, name: str, due: float) -> Step:
        if name == "G":
            self._interval = min(self._interval * 2, self.config.t2)
            self.timers["G"] = due + self._interval
            return Step(send=[self.last] if self.last else [])
        if name == "H":
            step = Step(events=[TimedOut("H")])
            return step.extend(self.terminate())
        return self.terminate()  # I, J, L


def _skeleton(req: Request) -> Request:
    """``req`` without its body and with only the headers that identify it (§17.2.3, §8.2.6)."""
    out = Request(method=req.method, uri=req.uri)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in req.headers.get_all(name):
            out.headers.add(name, value)
    return out


def build_non2xx_ack(invite: Request, resp: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx-6xx (RFC 3261 §17.1.1.3)."""
    ack = Request(method="ACK", uri=invite.uri)
    ack.headers.add("Via", invite.headers.get_all("Via")[0])
    for value in invite.headers.get_all("Route"):
        ack.headers.add("Route", value)
    ack.headers.add("Max-Forwards", "70")
    ack.headers.add("From", invite.headers.get("From") or "")
    ack.headers.add("To", resp.headers.get("To") or "")
    ack.headers.add("Call-ID", invite.call_id)
    ack.headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return ack
