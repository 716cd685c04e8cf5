"""The asyncio drivers of the sans-IO transaction machines (:mod:`.transaction`).

A driver sends the bytes a machine returns, arms one loop timer at the machine's deadline and
hands the machine's events to the UA. This and :mod:`.session` (for INVITE sessions) are where
the SIP core meets the event loop; the machines themselves never do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .errors import SipError
from .message import Request, Response
from .transaction import ClientTransaction, ServerTransaction, State, Step, TransactionEvent

log = logging.getLogger(__name__)


Send = Callable[[bytes], None]


class _TxDriver:
    """Runs one sans-IO transaction machine on the event loop: sends its bytes, arms its deadline."""

    machine: ClientTransaction | ServerTransaction

    def __init__(self, send: Send, on_event: Callable[[TransactionEvent], None]) -> None:
        self._send = send
        self._on_event = on_event
        self._handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.send_error: SipError | OSError | None = None   # the last failed send, if any

    @property
    def request(self) -> Request:
        return self.machine.request

    @property
    def reliable(self) -> bool:
        return self.machine.reliable

    @property
    def state(self) -> State:
        return self.machine.state

    def now(self) -> float:
        return self._loop.time()

    def send_raw(self, data: bytes) -> None:
        """Send bytes on this transaction's path (a lost connection must not break timers)."""
        try:
            self._send(data)
        except (SipError, OSError) as exc:
            self.send_error = exc
            log.info("transaction send failed: %s", exc)

    def apply(self, step: Step) -> None:
        for data in step.send:
            self.send_raw(data)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        deadline = self.machine.deadline
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._tick)
        for event in step.events:
            self._on_event(event)

    def _tick(self) -> None:
        self._handle = None
        deadline = self.machine.deadline
        self.apply(self.machine.advance(max(self.now(), deadline or 0.0)))

    def terminate(self) -> None:
        self.apply(self.machine.terminate())


class ClientTxDriver(_TxDriver):
    """A client transaction on the loop; ``final`` resolves with the first final response."""

    def __init__(self, machine: ClientTransaction, send: Send,
                 on_event: Callable[[TransactionEvent], None]) -> None:
        super().__init__(send, on_event)
        self.machine: ClientTransaction = machine
        self.final: asyncio.Future[Response] = self._loop.create_future()

    def start(self) -> None:
        self.apply(self.machine.start(self.now()))

    def receive(self, resp: Response) -> None:
        self.apply(self.machine.receive(resp, self.now()))


class ServerTxDriver(_TxDriver):
    """A server transaction on the loop."""

    def __init__(self, machine: ServerTransaction, send: Send,
                 on_event: Callable[[TransactionEvent], None], *,
                 key: tuple[str, str, str] | None = None, owner: str = "") -> None:
        super().__init__(send, on_event)
        self.machine: ServerTransaction = machine
        self.key = key        # its entry in the UA's server table
        self.owner = owner    # the source address it is counted against ("" for our trusted hop)

    @property
    def last_response(self) -> Response | None:
        return self.machine.last_response

    def respond(self, resp: Response) -> None:
        self.apply(self.machine.respond(resp, self.now()))

    def receive(self, req: Request) -> None:
        self.apply(self.machine.receive(req, self.now()))

