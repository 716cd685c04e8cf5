"""Transaction layer (RFC 3261 §17): INVITE and non-INVITE, client and server, with §17 timers.

The state machines are plain objects; time is the only I/O they touch, through
``loop.call_later``. Sending is a callback (``send(bytes)``) supplied by the UA core,
so retransmission never knows about sockets.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import TransactionTimeout
from .message import Request, Response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timers:
    """RFC 3261 §17 timer base values in seconds (Table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


Send = Callable[[bytes], None]


class _Base:
    def __init__(self, request: Request, send: Send, reliable: bool, timers: Timers,
                 on_terminated: Callable[[_Base], None]) -> None:
        self.request = request
        self.send = send
        self.reliable = reliable
        self.timers = timers
        self._on_terminated = on_terminated
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self.state = State.TRYING

    def _timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel(name)
        self._handles[name] = asyncio.get_running_loop().call_later(delay, fn)

    def _cancel(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle:
            handle.cancel()

    def _safe_send(self, data: bytes) -> None:
        try:
            self.send(data)
        except Exception as exc:  # a lost connection must not break timers  # noqa: BLE001
            log.info("transaction send failed: %s", exc)

    def terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._on_terminated(self)


class ClientTransaction(_Base):
    """INVITE (§17.1.1) or non-INVITE (§17.1.2) client transaction.

    ``on_response`` gets every response the TU must see (1xx, the first final, and for
    INVITE every 2xx retransmission so the TU re-sends its ACK). ``final`` resolves with
    the first final response or TransactionTimeout.
    """

    def __init__(self, request: Request, send: Send, reliable: bool, timers: Timers,
                 on_terminated: Callable[[_Base], None],
                 on_response: Callable[[Response], None]) -> None:
        super().__init__(request, send, reliable, timers, on_terminated)
        self.invite = request.method == "INVITE"
        self.on_response = on_response
        self.final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._data = request.encode()
        self._ack: bytes | None = None

    def start(self) -> None:
        self.state = State.CALLING if self.invite else State.TRYING
        self._safe_send(self._data)
        if not self.reliable:
            self._timer("retx", self.timers.t1, lambda: self._retransmit(self.timers.t1))
        self._timer("timeout", 64 * self.timers.t1, self._timeout)  # Timer B / F

    def _retransmit(self, interval: float) -> None:
        if self.state not in (State.CALLING, State.TRYING, State.PROCEEDING):
            return
        if self.invite and self.state is State.PROCEEDING:
            return
        self._safe_send(self._data)
        nxt = interval * 2 if self.invite else min(interval * 2, self.timers.t2)
        if not self.invite and self.state is State.PROCEEDING:
            nxt = self.timers.t2
        self._timer("retx", nxt, lambda: self._retransmit(nxt))

    def _timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if not self.final.done():
                self.final.set_exception(TransactionTimeout(f"no final response to {self.request.method}"))
            self.terminate()

    def receive(self, resp: Response) -> None:
        """Feed a response whose top Via branch and CSeq method match this transaction."""
        if self.state is State.TERMINATED:
            return
        if resp.status < 200:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.state = State.PROCEEDING
                if self.invite:
                    self._cancel("retx")
                self.on_response(resp)
            return
        if self.state is State.COMPLETED:
            if self.invite and self._ack and resp.status >= 300:
                self._safe_send(self._ack)  # retransmitted final: repeat the ACK (§17.1.1.2)
            elif self.invite and resp.status < 300:
                self.on_response(resp)
            return
        self._cancel("retx")
        first = not self.final.done()
        if first:
            self.final.set_result(resp)
        self.on_response(resp)
        if self.invite and resp.status < 300:
            # RFC 6026 "Accepted": absorb 2xx retransmissions for 64*T1, TU sends the ACKs
            self.state = State.COMPLETED
            self._timer("timeout", 64 * self.timers.t1, self.terminate)
            return
        if self.invite:
            self._ack = build_non2xx_ack(self.request, resp).encode()
            self._safe_send(self._ack)
            linger = 0.0 if self.reliable else 32.0  # Timer D
        else:
            linger = 0.0 if self.reliable else self.timers.t4  # Timer K
        self.state = State.COMPLETED
        self._timer("timeout", linger, self.terminate)


class ServerTransaction(_Base):
    """INVITE (§17.2.1) or non-INVITE (§17.2.2) server transaction."""

    def __init__(self, request: Request, send: Send, reliable: bool, timers: Timers,
                 on_terminated: Callable[[_Base], None]) -> None:
        super().__init__(request, send, reliable, timers, on_terminated)
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last: bytes | None = None
        self.last_response: Response | None = None
        self.acked = asyncio.get_running_loop().create_future()

    def respond(self, resp: Response) -> None:
        """Send a response from the TU and move the state machine."""
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            log.debug("ignoring a response after the final one")
            return
        self.last = resp.encode()
        self.last_response = resp
        self._safe_send(self.last)
        if resp.status < 200:
            self.state = State.PROCEEDING
            return
        if self.invite and resp.status < 300:
            self.terminate()  # the UA core retransmits 2xx until the ACK (§13.3.1.4)
            return
        self.state = State.COMPLETED
        if self.invite:
            if not self.reliable:
                self._timer("retx", self.timers.t1, lambda: self._retransmit(self.timers.t1))  # Timer G
            self._timer("timeout", 64 * self.timers.t1, self.terminate)  # Timer H
        else:
            self._timer("timeout", 0.0 if self.reliable else 64 * self.timers.t1, self.terminate)  # Timer J

    def _retransmit(self, interval: float) -> None:
        if self.state is State.COMPLETED and self.last:
            self._safe_send(self.last)
            nxt = min(interval * 2, self.timers.t2)
            self._timer("retx", nxt, lambda: self._retransmit(nxt))

    def retransmission(self) -> None:
        """The request arrived again: repeat the last response (§17.2.1, §17.2.2)."""
        if self.last and self.state in (State.PROCEEDING, State.TRYING, State.COMPLETED):
            self._safe_send(self.last)

    def ack(self) -> None:
        """ACK for a non-2xx final response (§17.2.1): stop retransmitting, Timer I."""
        if not self.acked.done():
            self.acked.set_result(None)
        if self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._cancel("retx")
            self._timer("timeout", 0.0 if self.reliable else self.timers.t4, self.terminate)


def build_non2xx_ack(invite: Request, resp: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 3xx-6xx (RFC 3261 §17.1.1.3)."""
    ack = Request(method="ACK", uri=invite.uri)
    ack.headers.add("Via", invite.headers.get_all("Via")[0])
    for name in ("Route",):
        for value in invite.headers.get_all(name):
            ack.headers.add(name, value)
    ack.headers.add("Max-Forwards", "70")
    ack.headers.add("From", invite.headers.get("From") or "")
    ack.headers.add("To", resp.headers.get("To") or "")
    ack.headers.add("Call-ID", invite.call_id)
    ack.headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return ack
