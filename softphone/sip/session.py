"""INVITE sessions (RFC 3261 §13-15, RFC 3264 offer/answer carried as opaque bodies).

One :class:`InviteSession` per call, outgoing or incoming, with an explicit state and an
event queue the call layer reads. The SDP bodies are bytes the call layer builds with
:mod:`.sdp`; this module never looks inside them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .dialog import Dialog
from .errors import CallFailed, ParseError, SessionStateError, SipError, TransactionTimeout
from .message import Request, Response, make_response

if TYPE_CHECKING:
    from .ua import ServerTxDriver, UserAgent

log = logging.getLogger(__name__)


class CallState(enum.Enum):
    CALLING = "calling"          # INVITE sent, nothing back yet
    PROCEEDING = "proceeding"    # 1xx without To tag (100 Trying)
    EARLY = "early"              # 1xx with To tag (180 Ringing, 183)
    INCOMING = "incoming"        # INVITE received, not yet answered
    CONFIRMED = "confirmed"      # 2xx + ACK
    TERMINATED = "terminated"


@dataclass(frozen=True)
class SessionEvent:
    """One thing that happened to a call: its new state and the message that caused it."""

    kind: str                    # "state", "provisional", "reinvite", "bye"
    state: CallState
    message: Request | Response | None = None


class Reject(SipError):
    """Raised by an ``on_offer`` handler to refuse a re-INVITE with ``status`` and a Warning."""

    def __init__(self, status: int, warning: str | None = None) -> None:
        super().__init__(f"{status} {warning or ''}".strip())
        self.status = status
        self.warning = warning


OfferHandler = Callable[[bytes], bytes]


class InviteSession:
    """A call: the INVITE transaction, its dialog, state transitions and in-dialog requests.

    Outgoing: created by :meth:`UserAgent.invite`; ``await answered()``; ``cancel()``.
    Incoming: delivered on ``UserAgent.incoming``; ``ring()``, ``answer(body)``, ``reject(...)``.
    Both: ``reinvite(body)``, ``bye()``, ``events``, ``history``, ``wait_state(...)``.
    ``on_offer(body) -> answer body`` answers incoming re-INVITEs (raise :class:`Reject` to refuse).
    """

    def __init__(self, ua: UserAgent, invite: Request, outgoing: bool) -> None:
        self.ua = ua
        self.invite = invite
        self.outgoing = outgoing
        self.call_id = invite.call_id
        self.state = CallState.CALLING if outgoing else CallState.INCOMING
        self.history: list[CallState] = [self.state]
        self.events: asyncio.Queue[SessionEvent] = asyncio.Queue(maxsize=256)
        self.dialog: Dialog | None = None
        self.local_tag = invite.from_.tag if outgoing else ua.new_tag()
        self.local_body: bytes = invite.body if outgoing else b""
        self.remote_body: bytes = b"" if outgoing else invite.body
        self.final_response: Response | None = None
        self.on_offer: OfferHandler | None = None
        self.server_tx: ServerTxDriver | None = None
        self._answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state_changed = asyncio.Event()
        self._pending_reinvite = False
        self._cancelled = False
        self._ok_retx: asyncio.TimerHandle | None = None
        self._ok_timeout: asyncio.TimerHandle | None = None
        self._ok_bytes: bytes | None = None
        self._ack_bytes: bytes | None = None
        self._ack_dest: tuple | None = None

    def __repr__(self) -> str:
        return f"<InviteSession {'out' if self.outgoing else 'in'} {self.call_id!r} {self.state.value}>"

    # -- state --------------------------------------------------------------------------
    def _set_state(self, state: CallState, message: Request | Response | None = None) -> None:
        if state is self.state or self.state is CallState.TERMINATED:
            return
        self.state = state
        self.history.append(state)
        self._emit(SessionEvent("state", state, message))
        self._state_changed.set()
        self._state_changed = asyncio.Event()
        if state is CallState.TERMINATED:
            self._stop_ok_retx()
            self.ua.forget_session(self)

    def _emit(self, event: SessionEvent) -> None:
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("call event queue full; dropping %s", event.kind)

    async def wait_state(self, state: CallState, timeout: float = 10.0) -> None:
        """Wait until the call is (or has been) in ``state``; TimeoutError otherwise (``inf``: no limit)."""
        async with asyncio.timeout(None if timeout == float("inf") else timeout):  # some loops reject inf delays
            while state not in self.history:
                await self._state_changed.wait()

    # -- outgoing -----------------------------------------------------------------------
    async def answered(self, timeout: float | None = None) -> Response:
        """The 2xx that answered the INVITE; raises CallFailed for a final error response."""
        return await asyncio.wait_for(asyncio.shield(self._answered), timeout)

    def _on_invite_response(self, resp: Response) -> None:
        if resp.status < 200:
            to = resp.to
            self._set_state(CallState.EARLY if to.tag else CallState.PROCEEDING, resp)
            self._emit(SessionEvent("provisional", self.state, resp))
            return
        if resp.status < 300:
            if self.dialog is None:
                try:
                    self.dialog = Dialog.from_uac(self.invite, resp)
                except ParseError as exc:
                    log.info("unusable 2xx to INVITE: %s", exc)
                    return
                self.ua.register_dialog(self)
                self.remote_body = resp.body
                self.final_response = resp
                self._send_ack(self.invite.cseq[0])
                if self._cancelled:
                    asyncio.get_running_loop().create_task(self.bye())
                self._set_state(CallState.CONFIRMED, resp)
                if not self._answered.done():
                    self._answered.set_result(resp)
            elif resp.to.tag == self.dialog.remote_tag:
                self._resend_ack()
            return
        self.final_response = resp
        if not self._answered.done():
            self._answered.set_exception(
                CallFailed(resp.status, resp.reason, resp.headers.get("Warning")))
            self._answered.exception()  # mark retrieved: callers may only watch events
        self._set_state(CallState.TERMINATED, resp)

    def _on_invite_timeout(self, exc: TransactionTimeout) -> None:
        if not self._answered.done():
            self._answered.set_exception(CallFailed(408, "Request Timeout"))
            self._answered.exception()
        self._set_state(CallState.TERMINATED)

    def _send_ack(self, cseq: int) -> None:
        assert self.dialog is not None
        ack = self.dialog.new_request("ACK", cseq=cseq)
        self.ua.spawn(self._deliver_ack(ack))

    async def _deliver_ack(self, ack: Request) -> None:
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

    async def cancel(self) -> None:
        """CANCEL a pending outgoing INVITE (§9.1); the INVITE then ends with 487."""
        if not self.outgoing or self.state not in (CallState.CALLING, CallState.PROCEEDING, CallState.EARLY):
            raise SessionStateError("only an unanswered outgoing call can be cancelled")
        self._cancelled = True
        tx = self.ua.client_tx_for(self.invite)
        if tx is None:
            raise SessionStateError("INVITE transaction already finished")
        cancel = Request(method="CANCEL", uri=tx.request.uri)
        cancel.headers.add("Via", tx.request.headers.get_all("Via")[0])
        for route in tx.request.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        cancel.headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, tx.request.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{tx.request.cseq[0]} CANCEL")
        await self.ua.send_request(cancel, keep_via=True, dest=self.ua.last_dest(tx))

    # -- incoming -----------------------------------------------------------------------
    def _respond(self, status: int, reason: str | None = None, body: bytes = b"",
                 extra: list[tuple[str, str]] | None = None) -> Response:
        if 100 < status < 300:  # dialog-creating responses copy Record-Route (§12.1.1)
            extra = [("Record-Route", rr) for rr in self.invite.headers.get_all("Record-Route")] + list(extra or [])
        resp = make_response(self.invite, status, reason, to_tag=self.local_tag, body=body, extra=extra)
        if self.server_tx is not None:
            self.server_tx.respond(resp)
        return resp

    async def ring(self) -> None:
        """Send 180 Ringing (creates an early dialog at the caller)."""
        if self.state is CallState.INCOMING:
            self._respond(180, extra=[("Contact", str(self.ua.contact))])

    async def answer(self, body: bytes, content_type: str = "application/sdp",
                     ack_timeout: float | None = None) -> None:
        """Send 200 OK with ``body`` and wait for the ACK (2xx retransmitted until then, §13.3.1.4)."""
        if self.outgoing or self.state is not CallState.INCOMING:
            raise SessionStateError("call is not waiting for an answer")
        self.dialog = Dialog.from_uas(self.invite, self.local_tag)
        self.ua.register_dialog(self)
        self.local_body = body
        resp = self._respond(200, body=body, extra=self.ua.session_headers(content_type if body else None))
        self._start_ok_retx(resp)
        await asyncio.wait_for(asyncio.shield(self._acked), ack_timeout or 64 * self.ua.timers.t1 + 1)

    async def reject(self, status: int = 486, reason: str | None = None, warning: str | None = None) -> None:
        """Refuse the INVITE: 486 busy, 488 with a Warning saying why, 603 ..."""
        if self.outgoing or self.state is not CallState.INCOMING:
            raise SessionStateError("call is not waiting for an answer")
        if not 300 <= status <= 699:
            raise ValueError("reject needs a 3xx-6xx status")
        extra = [("Warning", self.ua.warning(warning))] if warning else None
        resp = self._respond(status, reason, extra=extra)
        self.final_response = resp
        self._set_state(CallState.TERMINATED, resp)

    def _on_cancel(self) -> None:
        if self.state is CallState.INCOMING:
            resp = self._respond(487)
            self.final_response = resp
            self._set_state(CallState.TERMINATED, resp)

    def _start_ok_retx(self, resp: Response) -> None:
        tx = self.server_tx
        assert tx is not None
        self._ok_bytes = resp.encode()
        loop = asyncio.get_running_loop()
        if not tx.reliable:
            def retx(interval: float) -> None:
                if self._acked.done() or self._ok_bytes is None:
                    return
                tx.send_raw(self._ok_bytes)
                nxt = min(interval * 2, self.ua.timers.t2)
                self._ok_retx = loop.call_later(nxt, retx, nxt)
            self._ok_retx = loop.call_later(self.ua.timers.t1, retx, self.ua.timers.t1)
        self._ok_timeout = loop.call_later(64 * self.ua.timers.t1, self._no_ack)
        self._set_state(CallState.CONFIRMED, resp)

    def _no_ack(self) -> None:
        if not self._acked.done():
            log.info("no ACK for 2xx on %s; ending the call", self.call_id)
            self._acked.set_exception(TransactionTimeout("no ACK for 2xx"))
            self._acked.exception()
            self.ua.spawn(self.bye())

    def _stop_ok_retx(self) -> None:
        for handle in (self._ok_retx, self._ok_timeout):
            if handle:
                handle.cancel()

    def _on_ack(self, ack: Request) -> None:
        if not self._acked.done():
            self._acked.set_result(None)
            self._stop_ok_retx()
            if ack.body:
                self.remote_body = ack.body

    def _on_invite_retransmission(self) -> None:
        if self._ok_bytes and not self._acked.done() and self.server_tx is not None:
            self.server_tx.send_raw(self._ok_bytes)

    # -- both directions ----------------------------------------------------------------
    async def reinvite(self, body: bytes, content_type: str = "application/sdp",
                       timeout: float | None = None) -> Response:
        """Send a re-INVITE (hold/resume, §14.1); returns the 2xx, raises CallFailed (491 on glare)."""
        if self.dialog is None or self.state is not CallState.CONFIRMED:
            raise SessionStateError("re-INVITE needs a confirmed call")
        if self._pending_reinvite:
            raise CallFailed(491, "Request Pending")
        self._pending_reinvite = True
        try:
            req = self.dialog.new_request("INVITE", body=body, content_type=content_type)
            for name, value in self.ua.session_headers(None):
                req.headers.add(name, value)
            resp = await self.ua.request(req, dest_uri=self.dialog.next_hop(), timeout=timeout)
            if 200 <= resp.status < 300:
                self._send_ack(req.cseq[0])
                self.local_body = body
                self.remote_body = resp.body
                contact = resp.contact
                if contact is not None:
                    self.dialog.remote_target = contact.uri
                return resp
            if resp.status in (408, 481):
                self.ua.spawn(self.bye())
            raise CallFailed(resp.status, resp.reason, resp.headers.get("Warning"))
        finally:
            self._pending_reinvite = False

    def _on_reinvite(self, req: Request, tx: ServerTxDriver) -> None:
        if self._pending_reinvite:  # glare: our own re-INVITE is in progress (§14.2)
            tx.respond(make_response(req, 491, extra=[("Retry-After", "1")]))
            return
        if not self._acked.done():  # a newer INVITE implies the ACK still in flight (RFC 6337 §3.1.3)
            self._acked.set_result(None)
            self._stop_ok_retx()
        try:
            answer = self.on_offer(req.body) if self.on_offer else self.local_body
        except Reject as exc:
            extra = [("Warning", self.ua.warning(exc.warning))] if exc.warning else None
            tx.respond(make_response(req, exc.status, extra=extra))
            return
        self.remote_body = req.body
        self.local_body = answer
        contact = req.contact
        if contact is not None and self.dialog is not None:
            self.dialog.remote_target = contact.uri
        resp = make_response(req, 200, body=answer,
                             extra=self.ua.session_headers("application/sdp" if answer else None))
        self.server_tx = tx
        self._acked = asyncio.get_running_loop().create_future()
        tx.respond(resp)
        self._start_ok_retx(resp)
        self._emit(SessionEvent("reinvite", self.state, req))

    async def bye(self, timeout: float | None = None) -> Response | None:
        """End a confirmed call with BYE (§15.1); the state is TERMINATED at once."""
        if self.dialog is None or self.state is CallState.TERMINATED:
            return None
        req = self.dialog.new_request("BYE")
        self._set_state(CallState.TERMINATED, req)
        try:
            return await self.ua.request(req, dest_uri=self.dialog.next_hop(), timeout=timeout)
        except SipError as exc:
            log.info("BYE got no answer: %s", exc)
            return None

    def _on_bye(self, req: Request) -> None:
        self._emit(SessionEvent("bye", self.state, req))
        self._set_state(CallState.TERMINATED, req)
