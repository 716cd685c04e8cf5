"""INVITE sessions on asyncio: the driver of one :class:`~.invite.InviteMachine` per call.

The machine decides; this class executes its actions through the UA (server transactions,
client transactions, stateless ACKs), arms its deadline on the event loop, and turns its
events into the awaitables and the event queue the call layer reads. The UA hands it every
message for the call through :meth:`InviteSession.receive`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .dialog import Dialog
from .errors import CallFailed, SipError, TransactionTimeout
from .invite import (
    CallState,
    InviteMachine,
    OfferHandler,
    Reject,
    SendAck,
    SendCancel,
    SendRequest,
    SendResponse,
    SessionEvent,
    SessionStep,
)
from .message import Request, Response

if TYPE_CHECKING:
    from .drivers import ServerTxDriver
    from .resolve import Failover
    from .transport import Addr, StreamConnection
    from .ua import UserAgent
    from .uri import SipUri

__all__ = ["CallState", "InviteSession", "OfferHandler", "Reject", "SessionEvent"]
log = logging.getLogger(__name__)


class InviteSession:
    """A call: its INVITE machine, driven on the UA's loop.

    Outgoing: created by :meth:`UserAgent.invite`; ``await answered()``; ``cancel()``.
    Incoming: delivered on ``UserAgent.incoming``; ``ring()``, ``answer(body)``, ``reject(...)``.
    Both: ``reinvite(body)``, ``bye()``, ``events``, ``history``, ``wait_state(...)``.
    ``on_offer(body) -> answer body`` answers incoming re-INVITEs (raise :class:`Reject` to refuse).
    """

    def __init__(self, ua: UserAgent, invite: Request, outgoing: bool,
                 server_tx: ServerTxDriver | None = None) -> None:
        self.ua = ua
        self.machine = InviteMachine(
            invite, outgoing, invite.from_.tag or ua.new_tag() if outgoing else ua.new_tag(), ua.timers,
            headers=ua.session_headers, warning=ua.warning, rng=ua.rng,
            reliable=server_tx.reliable if server_tx is not None else False)
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue(maxsize=256)
        self.server_tx = server_tx
        self._server_txs: dict[int, ServerTxDriver] = {}
        if server_tx is not None:
            self._server_txs[invite.cseq[0]] = server_tx
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._answered: asyncio.Future[Response] = loop.create_future()
        self._acked: asyncio.Future[None] = loop.create_future()
        self._reinvite_result: asyncio.Future[Response] | None = None
        self._bye_result: asyncio.Future[Response | None] = loop.create_future()
        self._state_changed = asyncio.Event()
        self._handle: asyncio.TimerHandle | None = None
        self._ack_bytes: bytes | None = None
        self._ack_dest: tuple[Addr, StreamConnection | None] | None = None
        self._dialog_registered = False
        self.failover: Failover[tuple[Addr, str]] | None = None   # the INVITE's RFC 3263 targets (outgoing)
        self.replaces: InviteSession | None = None     # the call an incoming INVITE with Replaces takes over
        self.on_refer: Callable[[Request], None] | None = None    # the peer's REFER (202 already sent)
        self.notifies: asyncio.Queue[Request] = asyncio.Queue(maxsize=64)   # NOTIFYs of our REFER

    def __repr__(self) -> str:
        return f"<InviteSession {'out' if self.outgoing else 'in'} {self.call_id!r} {self.state.value}>"

    # -- the machine's state, read-only for the call layer ------------------------------------------
    @property
    def invite(self) -> Request:
        return self.machine.invite

    @invite.setter
    def invite(self, request: Request) -> None:  # the UA re-sends an INVITE with credentials
        self.machine.invite = request

    @property
    def call_id(self) -> str:
        return self.machine.call_id

    @property
    def outgoing(self) -> bool:
        return self.machine.outgoing

    @property
    def state(self) -> CallState:
        return self.machine.state

    @property
    def history(self) -> list[CallState]:
        return self.machine.history

    @property
    def dialog(self) -> Dialog | None:
        return self.machine.dialog

    @property
    def local_tag(self) -> str:
        return self.machine.local_tag

    @property
    def local_body(self) -> bytes:
        return self.machine.local_body

    @property
    def remote_body(self) -> bytes:
        return self.machine.remote_body

    @property
    def final_response(self) -> Response | None:
        return self.machine.final_response

    @property
    def on_offer(self) -> OfferHandler | None:
        return self.machine.on_offer

    @on_offer.setter
    def on_offer(self, handler: OfferHandler | None) -> None:
        self.machine.on_offer = handler

    # -- driving the machine --------------------------------------------------------------------------
    def now(self) -> float:
        return self._loop.time()

    def receive(self, message: Request | Response, tx: ServerTxDriver | None = None) -> None:
        """A message for this call from the UA's dispatcher (``tx``: the server transaction of a request)."""
        if tx is not None and isinstance(message, Request):
            self._server_txs[message.cseq[0]] = tx
            self.machine.reliable = tx.reliable
        self._apply(self.machine.receive(message, self.now()))

    def transaction_timeout(self, request: Request) -> None:
        """Our INVITE or re-INVITE client transaction timed out (Timer B)."""
        self._apply(self.machine.transaction_timeout(request, self.now()))

    def detach(self) -> None:
        """Stop the machine's timer (the UA is closing)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = None
        self._apply(self.machine.advance(max(self.now(), self.machine.deadline or 0.0)))

    def _apply(self, step: SessionStep) -> None:
        for action in step.actions:
            self._execute(action)
        if self.machine.dialog is not None and not self._dialog_registered:
            self._dialog_registered = True
            self.ua.register_dialog(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        deadline = self.machine.deadline
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._tick)
        for event in step.events:
            self._deliver(event)

    def _execute(self, action: SendResponse | SendRequest | SendCancel | SendAck) -> None:
        if isinstance(action, SendResponse):
            tx = self._server_txs.get(action.response.cseq[0])
            if tx is not None:
                tx.respond(action.response)
        elif isinstance(action, SendAck):
            if action.resend:
                self._resend_ack()
            elif action.request is not None:
                self.ua.spawn(self._deliver_ack(action.request))
        elif isinstance(action, SendCancel):
            self.ua.spawn(self._send_cancel(action.request))
        elif action.request.method == "BYE":
            self.ua.spawn(self._send_bye(action.request))
        elif action.request.method == "PRACK":
            self.ua.spawn(self._send_prack(action.request, action.dest))
        else:
            self.ua.spawn(self._send_reinvite(action.request))

    def _deliver(self, event: SessionEvent) -> None:
        kind = event.kind
        if kind == "state":
            self._state_changed.set()
            self._state_changed = asyncio.Event()
            if event.state is CallState.TERMINATED:
                if self._handle is not None:
                    self._handle.cancel()
                    self._handle = None
                self.ua.forget_session(self)
        elif kind == "answered" and isinstance(event.message, Response):
            _resolve(self._answered, event.message)
        elif kind == "failed":
            _fail(self._answered, event.error or CallFailed(500, "Server Internal Error"))
        elif kind == "refer" and isinstance(event.message, Request) and self.on_refer is not None:
            self.on_refer(event.message)
        elif kind == "notify" and isinstance(event.message, Request):
            try:
                self.notifies.put_nowait(event.message)
            except asyncio.QueueFull:
                log.info("too many NOTIFYs for %s; dropped one", self.call_id)
        elif kind == "acked":
            _resolve(self._acked, None)
        elif kind == "ack-timeout":
            log.info("no ACK for 2xx on %s; ending the call", self.call_id)
            _fail(self._acked, TransactionTimeout("no ACK for 2xx"))
        elif kind == "reinvite":
            self._acked = self._loop.create_future()
        elif kind == "reinvite-answered" and self._reinvite_result is not None:
            if isinstance(event.message, Response):
                _resolve(self._reinvite_result, event.message)
        elif kind == "reinvite-failed" and self._reinvite_result is not None:
            _fail(self._reinvite_result, event.error or CallFailed(500, "Server Internal Error"))
        if kind in ("state", "provisional", "reinvite", "bye"):
            try:
                self.events.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("call event queue full; dropping %s", kind)

    # -- sending what the machine asked for -----------------------------------------------------------
    async def _deliver_ack(self, ack: Request) -> None:
        assert self.dialog is not None
        try:
            self._ack_bytes, self._ack_dest = await self.ua.send_stateless(ack, self.dialog.next_hop())
        except SipError as exc:
            log.info("could not send ACK: %s", exc)

    def _resend_ack(self) -> None:
        if self._ack_bytes and self._ack_dest:
            try:
                self.ua.transport.send_bytes(self._ack_bytes, *self._ack_dest)
            except SipError as exc:
                log.info("could not resend ACK: %s", exc)

    async def _send_cancel(self, cancel: Request) -> None:
        tx = self.ua.client_tx_for(self.invite)
        if tx is None:
            return  # the INVITE transaction already ended: nothing left to cancel
        try:
            await self.ua.send_request(cancel, keep_via=True, dest=self.ua.last_dest(tx))
        except SipError as exc:
            log.info("could not send CANCEL: %s", exc)

    async def _send_bye(self, bye: Request) -> None:
        assert self.dialog is not None
        try:
            resp: Response | None = await self.ua.request(bye, dest_uri=self.dialog.next_hop(),
                                                          timeout=64 * self.ua.timers.t1 + 1)
        except SipError as exc:
            log.info("BYE got no answer: %s", exc)
            resp = None
        _resolve(self._bye_result, resp)

    async def _send_prack(self, prack: Request, dest: SipUri | None) -> None:
        """PRACK a reliable provisional (RFC 3262 §4); its own transaction retransmits it."""
        try:
            resp = await self.ua.request(prack, dest_uri=dest, timeout=64 * self.ua.timers.t1 + 1)
        except SipError as exc:
            log.info("PRACK got no answer: %s", exc)
            return
        if resp.status >= 300:
            log.info("PRACK refused: %d %s", resp.status, resp.reason)

    async def _send_reinvite(self, req: Request) -> None:
        assert self.dialog is not None
        try:
            await self.ua.send_request(req, dest_uri=self.dialog.next_hop())
        except SipError as exc:
            if self._reinvite_result is not None:
                _fail(self._reinvite_result, exc)

    # -- the call layer's API ---------------------------------------------------------------------------
    async def wait_state(self, state: CallState, timeout: float = 10.0) -> None:
        """Wait until the call is (or has been) in ``state``; TimeoutError otherwise (``inf``: no limit)."""
        async with asyncio.timeout(None if timeout == float("inf") else timeout):  # some loops reject inf delays
            while state not in self.history:
                await self._state_changed.wait()

    async def answered(self, timeout: float | None = None) -> Response:
        """The 2xx that answered the INVITE; raises CallFailed for a final error response."""
        return await asyncio.wait_for(asyncio.shield(self._answered), timeout)

    async def cancel(self) -> None:
        """CANCEL a pending outgoing INVITE (§9.1; sent once a 1xx arrived); it then ends with 487."""
        self._apply(self.machine.cancel(self.now()))

    async def ring(self) -> None:
        """Send 180 Ringing (creates an early dialog at the caller)."""
        self._apply(self.machine.ring(self.now()))

    async def early_media(self, body: bytes, content_type: str = "application/sdp") -> None:
        """Send 183 Session Progress with ``body`` (early media); reliable (PRACKed) when the caller
        requires 100rel."""
        self._apply(self.machine.early_media(body, self.now(), content_type))

    async def answer(self, body: bytes, content_type: str = "application/sdp",
                     ack_timeout: float | None = None) -> None:
        """Send 200 OK with ``body`` and wait for the ACK (2xx retransmitted until then, §13.3.1.4)."""
        self._apply(self.machine.answer(body, self.now(), content_type))
        await asyncio.wait_for(asyncio.shield(self._acked), ack_timeout or 64 * self.ua.timers.t1 + 1)

    async def reject(self, status: int = 486, reason: str | None = None, warning: str | None = None) -> None:
        """Refuse the INVITE: 486 busy, 488 with a Warning saying why, 603 ..."""
        self._apply(self.machine.reject(status, self.now(), reason, warning))

    async def reinvite(self, body: bytes, content_type: str = "application/sdp",
                       timeout: float | None = None, retry_glare: bool = False) -> Response:
        """Send a re-INVITE (hold/resume, §14.1); returns the 2xx, raises CallFailed (491 on glare).

        ``retry_glare``: after a 491, wait the §14.1 window and offer ``body`` once more.
        """
        step = self.machine.reinvite(body, self.now(), content_type, retry_glare)
        result: asyncio.Future[Response] = self._loop.create_future()
        self._reinvite_result = result
        self._apply(step)
        try:
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(result), timeout)
                except CallFailed as exc:
                    if exc.status != 491 or "glare" not in self.machine.timers:
                        raise
                    result = self._reinvite_result = self._loop.create_future()
        except TimeoutError:
            pending = self.machine.pending_reinvite
            if pending is not None:
                self.transaction_timeout(pending)
            raise TransactionTimeout("no final response to INVITE") from None
        finally:
            if self._reinvite_result is result:
                self._reinvite_result = None

    async def refer(self, refer_to: str, referred_by: str | None = None, timeout: float | None = None) -> Response:
        """Send REFER (RFC 3515) in this dialog; returns its final response (202 when accepted). The
        progress arrives as NOTIFYs on :attr:`notifies` (sipfrag bodies, :func:`~.invite.sipfrag_status`)."""
        req = self.machine.refer(refer_to, referred_by)
        assert self.dialog is not None
        return await self.ua.request(req, dest_uri=self.dialog.next_hop(),
                                     timeout=timeout or 64 * self.ua.timers.t1 + 1)

    async def notify(self, status: int, reason: str, final: bool, timeout: float | None = None) -> Response | None:
        """Tell the REFER's sender how our call to its Refer-To goes (NOTIFY with a sipfrag)."""
        if self.dialog is None or self.state is CallState.TERMINATED:
            return None
        req = self.machine.notify(status, reason, final)
        try:
            return await self.ua.request(req, dest_uri=self.dialog.next_hop(),
                                         timeout=timeout or 64 * self.ua.timers.t1 + 1)
        except SipError as exc:
            log.info("NOTIFY got no answer: %s", exc)
            return None

    async def bye(self, timeout: float | None = None) -> Response | None:
        """Hang up (§15.1): BYE when confirmed, CANCEL before an answer; the state is TERMINATED at once
        when a BYE goes out. Returns the BYE's final response, or None."""
        confirmed = self.dialog is not None and self.state is CallState.CONFIRMED
        self._apply(self.machine.bye(self.now()))
        if not confirmed or self.machine.bye_pending:
            return None  # nothing to wait for: a CANCEL or decline, or a BYE that waits for the ACK
        try:
            return await asyncio.wait_for(asyncio.shield(self._bye_result), timeout)
        except TimeoutError:
            return None


def _resolve(fut: asyncio.Future[Response] | asyncio.Future[None] | asyncio.Future[Response | None],
             value: object) -> None:
    if not fut.done():
        fut.set_result(value)  # type: ignore[arg-type]


def _fail(fut: asyncio.Future[Response] | asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()  # mark retrieved: callers may only watch events
