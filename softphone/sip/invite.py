"""INVITE sessions as a sans-IO state machine (RFC 3261 §9, §13-15; RFC 6337 §3.1.3).

:class:`InviteMachine` holds one call's state, dialog and bodies. Its inputs are messages
(:meth:`InviteMachine.receive`), the user's commands (``answer``, ``reject``, ``cancel``,
``reinvite``, ``bye`` ...) and the clock (``advance(now)`` at ``deadline``). Each returns a
:class:`SessionStep`: actions for the driver (responses on a server transaction, new client
transactions, stateless ACKs) and :class:`SessionEvent` values. It never sleeps, reads a clock,
draws random numbers of its own or touches a socket; the SDP bodies are opaque bytes.

Timers (``timers`` maps the running ones to their due time):

* ``2xx``: the UAS retransmits its 2xx every T1, doubling up to T2, until the ACK (§13.3.1.4;
  unreliable transports only); ``2xx-timeout`` at 64*T1 gives up and sends BYE;
* ``1xx``: the UAS retransmits a reliable provisional (RFC 3262 §3, when the INVITE requires
  ``100rel``) every T1, doubling (no cap), until its PRACK, on any transport; ``1xx-timeout``
  at 64*T1 rejects the INVITE with 504 (§3 "SHOULD reject ... with a 5xx");
* ``glare``: after a 491 to our re-INVITE, the §14.1 retry window (owner of the Call-ID:
  2.1-4 s, otherwise 0-2 s, in 10 ms steps, drawn from the injected ``rng``).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .dialog import Dialog
from .errors import CallFailed, ParseError, SessionStateError, SipError
from .message import Request, Response, make_response
from .transaction import Timers
from .uri import SipUri


class CallState(enum.Enum):
    CALLING = "calling"          # INVITE sent, nothing back yet
    PROCEEDING = "proceeding"    # 1xx without To tag (100 Trying)
    EARLY = "early"              # 1xx with To tag (180 Ringing, 183)
    INCOMING = "incoming"        # INVITE received, not yet answered
    CONFIRMED = "confirmed"      # 2xx (+ ACK)
    TERMINATED = "terminated"


@dataclass(frozen=True)
class SessionEvent:
    """One thing that happened to a call, with its state afterwards and the message that caused it.

    ``kind``: ``state`` (new state), ``provisional``, ``answered`` (2xx to our INVITE), ``failed``
    (our INVITE ended without a 2xx; ``error``), ``acked``, ``ack-timeout``, ``reinvite`` (a peer's
    re-INVITE was accepted), ``reinvite-answered``, ``reinvite-failed`` (``error``), ``bye``,
    ``prack`` (the PRACK of our reliable provisional arrived, RFC 3262), ``refer`` (the peer asks us
    to call its Refer-To, RFC 3515; answered 202), ``notify`` (progress of our REFER: a sipfrag).
    """

    kind: str
    state: CallState
    message: Request | Response | None = None
    error: CallFailed | None = None


class Reject(SipError):
    """Raised by an ``on_offer`` handler to refuse a re-INVITE with ``status`` and a Warning."""

    def __init__(self, status: int, warning: str | None = None) -> None:
        super().__init__(f"{status} {warning or ''}".strip())
        self.status = status
        self.warning = warning


# -- actions for the driver -----------------------------------------------------------------------
@dataclass(frozen=True)
class SendResponse:
    """Send ``response`` on the server transaction of the request it answers (same CSeq)."""

    response: Response


@dataclass(frozen=True)
class SendRequest:
    """Start a client transaction for ``request`` (BYE, re-INVITE, PRACK); the driver adds the Via.
    ``dest``: where it goes when not the confirmed dialog's next hop (a PRACK in an early dialog)."""

    request: Request
    dest: SipUri | None = None


@dataclass(frozen=True)
class SendCancel:
    """Send ``request`` (a CANCEL carrying the INVITE's Via) on the INVITE's path (§9.1)."""

    request: Request


@dataclass(frozen=True)
class SendAck:
    """Send the ACK for a 2xx outside any transaction (§13.2.2.4); ``resend``: repeat the last one."""

    request: Request | None
    resend: bool = False


SessionAction = SendResponse | SendRequest | SendCancel | SendAck


@dataclass
class SessionStep:
    actions: list[SessionAction] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)

    def extend(self, other: SessionStep) -> SessionStep:
        self.actions += other.actions
        self.events += other.events
        return self


OfferHandler = Callable[[bytes], bytes]
HeaderSource = Callable[[str | None], list[tuple[str, str]]]


def _no_headers(content_type: str | None) -> list[tuple[str, str]]:
    return [("Content-Type", content_type)] if content_type else []


def glare_delay(owner: bool, rng: Callable[[], float]) -> float:
    """The §14.1 wait before retrying a re-INVITE that got 491, in 10 ms units.

    ``owner`` (we generated the Call-ID): 2.10 to 4.00 s; otherwise 0.00 to 2.00 s.
    ``rng`` returns a float in [0, 1).
    """
    if owner:
        return (210 + math.floor(rng() * 191)) / 100
    return math.floor(rng() * 201) / 100


class InviteMachine:
    """One call, outgoing (``outgoing=True``: ``invite`` is the INVITE we send) or incoming.

    ``headers(content_type)`` supplies Contact/Allow (and Content-Type) for our dialog-creating
    responses and re-INVITEs; ``warning(text)`` formats a Warning value; ``rng`` draws the glare
    retry delay; ``reliable`` is whether the INVITE came over TCP/TLS (no 2xx retransmission).
    """

    def __init__(self, invite: Request, outgoing: bool, local_tag: str, timers: Timers, *,
                 headers: HeaderSource = _no_headers, warning: Callable[[str], str] = str,
                 rng: Callable[[], float] = random.random, reliable: bool = False) -> None:
        self.invite = invite
        self.outgoing = outgoing
        self.call_id = invite.call_id
        self.local_tag = local_tag
        self.config = timers
        self.headers = headers
        self.warning = warning
        self.rng = rng
        self.reliable = reliable
        self.state = CallState.CALLING if outgoing else CallState.INCOMING
        self.history: list[CallState] = [self.state]
        self.dialog: Dialog | None = None
        self.local_body: bytes = invite.body if outgoing else b""
        self.remote_body: bytes = b"" if outgoing else invite.body
        self.final_response: Response | None = None
        self.on_offer: OfferHandler | None = None
        self.timers: dict[str, float] = {}
        self.acked = outgoing            # a UAS waits for the ACK of each 2xx it sends
        self.cancel_requested = False
        self.cancel_sent = False
        self.bye_pending = False         # BYE asked for before the ACK of our 2xx arrived (§15)
        self.retry_glare = False
        self._ok: Response | None = None               # the 2xx we retransmit until the ACK
        self._ok_interval = timers.t1
        self._reinvite: Request | None = None          # our re-INVITE awaiting its final response
        self._last_reinvite: Request | None = None     # ... and the last one answered with 2xx
        self._glare_body: tuple[bytes, str] | None = None
        self._ack: Request | None = None
        # RFC 3262: reliable provisionals. UAC: the early dialogs (by remote tag) and the last RSeq
        # PRACKed in each; UAS: whether the INVITE requires 100rel, the unacknowledged reliable 1xx
        # (retransmitted), the ones waiting behind it (§3: one at a time) and the next RSeq.
        self.early: dict[str, Dialog] = {}
        self.rseq_seen: dict[str, int] = {}
        self.prack_required = not outgoing and "100rel" in option_tags(invite, "Require")
        self._reliable: Response | None = None
        self._reliable_interval = timers.t1
        self._reliable_queue: list[Response] = []
        self._next_rseq = 1 + math.floor(rng() * 2**20)

    @property
    def pending_reinvite(self) -> Request | None:
        """Our re-INVITE still waiting for its final response."""
        return self._reinvite

    # -- clock ------------------------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def advance(self, now: float) -> SessionStep:
        """Fire every timer due at or before ``now``, earliest first."""
        step = SessionStep()
        while self.timers:
            name, due = min(self.timers.items(), key=lambda item: item[1])
            if due > now:
                break
            del self.timers[name]
            step.extend(self._fire(name, due))
        return step

    def _fire(self, name: str, due: float) -> SessionStep:
        if name == "2xx" and self._ok is not None and not self.acked:
            self._ok_interval = min(self._ok_interval * 2, self.config.t2)
            self.timers["2xx"] = due + self._ok_interval
            return SessionStep([SendResponse(self._ok)])
        if name == "2xx-timeout" and not self.acked:
            self.timers.pop("2xx", None)
            self.acked = True   # give up waiting (§13.3.1.4) ...
            step = SessionStep(events=[SessionEvent("ack-timeout", self.state, self._ok)])
            self.bye_pending = False
            return step.extend(self._send_bye())  # ... and end the dialog
        if name == "1xx" and self._reliable is not None and self.state is CallState.INCOMING:
            self._reliable_interval *= 2
            self.timers["1xx"] = due + self._reliable_interval
            return SessionStep([SendResponse(self._reliable)])
        if name == "1xx-timeout" and self._reliable is not None and self.state is CallState.INCOMING:
            self._reliable = None
            self._reliable_queue.clear()
            self.timers.pop("1xx", None)
            resp = self._respond(504, "No PRACK")
            self.final_response = resp
            return SessionStep([SendResponse(resp)]).extend(self._set_state(CallState.TERMINATED, resp))
        if name == "glare" and self._glare_body is not None and self.state is CallState.CONFIRMED:
            body, content_type = self._glare_body
            self._glare_body = None
            return self._start_reinvite(body, content_type)
        return SessionStep()

    # -- state ------------------------------------------------------------------------------------
    def _set_state(self, state: CallState, message: Request | Response | None = None) -> SessionStep:
        if state is self.state or self.state is CallState.TERMINATED:
            return SessionStep()
        self.state = state
        self.history.append(state)
        if state is CallState.TERMINATED:
            self.timers.clear()
        return SessionStep(events=[SessionEvent("state", state, message)])

    def _event(self, kind: str, message: Request | Response | None = None,
               error: CallFailed | None = None) -> SessionEvent:
        return SessionEvent(kind, self.state, message, error)

    # -- inputs -----------------------------------------------------------------------------------
    def receive(self, message: Request | Response, now: float) -> SessionStep:
        """A request or response for this call, routed here by the UA's dispatcher.

        Requests: ACK, CANCEL (its own 200 is the dispatcher's), BYE (likewise), a retransmitted
        INVITE, an in-dialog re-INVITE. Responses: to our INVITE or re-INVITE.
        """
        if isinstance(message, Response):
            if message.cseq[1] != "INVITE":
                return SessionStep()  # BYE/CANCEL responses change nothing here
            if message.cseq[0] == self.invite.cseq[0] and self.outgoing:
                return self._invite_response(message, now)
            return self._reinvite_response(message, now)
        method = message.method
        if method == "ACK":
            return self._ack_received(message)
        if method == "CANCEL":
            return self._cancel_received(message)
        if method == "BYE":
            return self._bye_received(message)
        if method == "PRACK":
            return self._prack_received(message, now)
        if method in ("REFER", "NOTIFY"):
            return self._transfer_request(message)
        if method == "INVITE":
            if message.cseq[0] == self.invite.cseq[0] and not self.outgoing:
                return self._invite_retransmitted()
            if self._ok is not None and message.cseq[0] == self._ok.cseq[0]:
                return self._invite_retransmitted()
            return self._reinvite_received(message, now)
        return SessionStep()

    def transaction_timeout(self, request: Request, now: float) -> SessionStep:
        """Our INVITE or re-INVITE got no final response before Timer B (or the caller's timeout)."""
        if request.method != "INVITE":
            return SessionStep()
        if self.outgoing and request.cseq[0] == self.invite.cseq[0] and self.final_response is None:
            error = CallFailed(408, "Request Timeout")
            step = SessionStep(events=[self._event("failed", None, error)])
            return step.extend(self._set_state(CallState.TERMINATED))
        if self._reinvite is not None and request.cseq[0] == self._reinvite.cseq[0]:
            self._reinvite = None
            error = CallFailed(408, "Request Timeout")
            step = SessionStep(events=[self._event("reinvite-failed", None, error)])
            return step.extend(self._send_bye())  # §14.1: a 408 to a re-INVITE ends the dialog
        return SessionStep()

    # -- outgoing INVITE --------------------------------------------------------------------------
    def _invite_response(self, resp: Response, now: float) -> SessionStep:
        if resp.status < 200:
            if self.final_response is not None or self.state is CallState.TERMINATED:
                return SessionStep()
            prack: SendRequest | None = None
            if resp.status > 100 and resp.to.tag and "100rel" in option_tags(resp, "Require"):
                rseq = resp.headers.get("RSeq") or ""
                if not rseq.strip().isdigit():
                    return SessionStep()  # a reliable 1xx without RSeq is unusable (§4)
                number, tag = int(rseq), resp.to.tag
                if number <= self.rseq_seen.get(tag, -1):
                    return SessionStep()  # a retransmission: discarded, our PRACK's transaction repeats (§4)
                early = self.early.get(tag)
                if early is None:
                    try:
                        early = self.early[tag] = Dialog.from_uac(self.invite, resp)
                    except ParseError:
                        return SessionStep()
                self.rseq_seen[tag] = number
                req = early.new_request("PRACK")
                req.headers.add("RAck", f"{number} {self.invite.cseq[0]} INVITE")
                prack = SendRequest(req, early.next_hop())
            step = self._set_state(CallState.EARLY if resp.to.tag else CallState.PROCEEDING, resp)
            if prack is not None:
                step.actions.append(prack)
            step.events.append(self._event("provisional", resp))
            if self.cancel_requested and not self.cancel_sent:
                step.actions.append(self._cancel_request())  # deferred until a 1xx (§9.1)
            return step
        if resp.status < 300:
            if self.dialog is not None:
                if resp.to.tag == self.dialog.remote_tag:
                    return SessionStep([SendAck(self._ack, resend=True)])  # our ACK was lost
                return SessionStep()
            try:
                self.dialog = Dialog.from_uac(self.invite, resp)
            except ParseError:
                return SessionStep()  # unusable 2xx; Timer M absorbs the rest
            self.remote_body = resp.body
            self.final_response = resp
            early = self.early.get(self.dialog.remote_tag)
            if early is not None:  # our PRACKs used CSeq numbers in this dialog already (RFC 3262 §4)
                self.dialog.local_seq = max(self.dialog.local_seq, early.local_seq)
            self._ack = self.dialog.new_request("ACK", cseq=self.invite.cseq[0])
            step = SessionStep([SendAck(self._ack)])
            step.extend(self._set_state(CallState.CONFIRMED, resp))
            step.events.append(self._event("answered", resp))
            if self.cancel_requested:  # 200 crossed our CANCEL: confirm, then hang up (§9.1, §15)
                step.extend(self._send_bye())
            return step
        if self.final_response is not None:
            return SessionStep()
        self.final_response = resp
        error = CallFailed(resp.status, resp.reason, resp.headers.get("Warning"))
        step = SessionStep(events=[self._event("failed", resp, error)])
        return step.extend(self._set_state(CallState.TERMINATED, resp))

    def cancel(self, now: float) -> SessionStep:
        """Hang up an unanswered outgoing call: CANCEL now, or once a 1xx arrives (§9.1)."""
        if not self.outgoing or self.state not in (CallState.CALLING, CallState.PROCEEDING, CallState.EARLY):
            raise SessionStateError("only an unanswered outgoing call can be cancelled")
        self.cancel_requested = True
        if self.state is CallState.CALLING:
            return SessionStep()
        return SessionStep([self._cancel_request()])

    def _cancel_request(self) -> SendCancel:
        self.cancel_sent = True
        inv = self.invite
        cancel = Request(method="CANCEL", uri=inv.uri)
        cancel.headers.add("Via", inv.headers.get_all("Via")[0])
        for route in inv.headers.get_all("Route"):
            cancel.headers.add("Route", route)
        cancel.headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            cancel.headers.add(name, inv.headers.get(name) or "")
        cancel.headers.add("CSeq", f"{inv.cseq[0]} CANCEL")
        return SendCancel(cancel)

    # -- incoming INVITE --------------------------------------------------------------------------
    def _respond(self, status: int, reason: str | None = None, body: bytes = b"",
                 extra: list[tuple[str, str]] | None = None) -> Response:
        if 100 < status < 300:  # dialog-creating responses copy Record-Route (§12.1.1)
            extra = [("Record-Route", rr) for rr in self.invite.headers.get_all("Record-Route")] + list(extra or [])
        return make_response(self.invite, status, reason, to_tag=self.local_tag, body=body, extra=extra)

    def _check_incoming(self) -> None:
        if self.outgoing or self.state is not CallState.INCOMING:
            raise SessionStateError("call is not waiting for an answer")

    def ring(self, now: float) -> SessionStep:
        """180 Ringing (creates an early dialog at the caller); reliable when the INVITE requires 100rel."""
        if self.state is not CallState.INCOMING:
            return SessionStep()
        contact = [(n, v) for n, v in self.headers(None) if n == "Contact"]
        return self._provisional(self._respond(180, extra=contact), now)

    def early_media(self, body: bytes, now: float, content_type: str = "application/sdp") -> SessionStep:
        """183 Session Progress with ``body`` (early media, RFC 3960); reliable when 100rel is required."""
        self._check_incoming()
        self.local_body = body
        return self._provisional(self._respond(183, body=body, extra=self.headers(content_type)), now)

    def _provisional(self, resp: Response, now: float) -> SessionStep:
        if not self.prack_required:
            return SessionStep([SendResponse(resp)])
        resp.headers.add("Require", "100rel")
        resp.headers.add("RSeq", str(self._next_rseq))
        self._next_rseq += 1
        if self._reliable is not None:  # one unacknowledged reliable 1xx at a time (§3)
            self._reliable_queue.append(resp)
            return SessionStep()
        return self._send_reliable(resp, now)

    def _send_reliable(self, resp: Response, now: float) -> SessionStep:
        self._reliable = resp
        self._reliable_interval = self.config.t1
        self.timers["1xx"] = now + self.config.t1
        self.timers["1xx-timeout"] = now + 64 * self.config.t1
        return SessionStep([SendResponse(resp)])

    def _prack_received(self, req: Request, now: float) -> SessionStep:
        """A PRACK: 200 when its RAck names our unacknowledged reliable 1xx, else 481 (RFC 3262 §3)."""
        rack = (req.headers.get("RAck") or "").split()
        pending = self._reliable
        if (pending is None or len(rack) != 3 or rack[0] != pending.headers.get("RSeq")
                or rack[1] != str(self.invite.cseq[0]) or rack[2].upper() != "INVITE"):
            return SessionStep([SendResponse(make_response(req, 481))])
        self._reliable = None
        self.timers.pop("1xx", None)
        self.timers.pop("1xx-timeout", None)
        step = SessionStep([SendResponse(make_response(req, 200))], [self._event("prack", req)])
        if self._reliable_queue and self.state is CallState.INCOMING:
            step.extend(self._send_reliable(self._reliable_queue.pop(0), now))
        return step

    def answer(self, body: bytes, now: float, content_type: str = "application/sdp") -> SessionStep:
        """200 OK with ``body``; retransmitted until the ACK (§13.3.1.4)."""
        self._check_incoming()
        self.dialog = Dialog.from_uas(self.invite, self.local_tag)
        self.local_body = body
        resp = self._respond(200, body=body, extra=self.headers(content_type if body else None))
        step = self._start_2xx(resp, now)
        return step.extend(self._set_state(CallState.CONFIRMED, resp))

    def reject(self, status: int, now: float, reason: str | None = None, warning: str | None = None) -> SessionStep:
        """Refuse the INVITE: 486 busy, 488 with a Warning saying why, 603 ..."""
        self._check_incoming()
        if not 300 <= status <= 699:
            raise ValueError("reject needs a 3xx-6xx status")
        extra = [("Warning", self.warning(warning))] if warning else None
        resp = self._respond(status, reason, extra=extra)
        self.final_response = resp
        self._stop_reliable()
        return SessionStep([SendResponse(resp)]).extend(self._set_state(CallState.TERMINATED, resp))

    def _stop_reliable(self) -> None:
        """A final response ends the provisional phase: no more 1xx retransmissions."""
        self._reliable = None
        self._reliable_queue.clear()
        self.timers.pop("1xx", None)
        self.timers.pop("1xx-timeout", None)

    def _start_2xx(self, resp: Response, now: float) -> SessionStep:
        self._stop_reliable()
        self._ok = resp
        self.acked = False
        self._ok_interval = self.config.t1
        if not self.reliable:
            self.timers["2xx"] = now + self.config.t1
        self.timers["2xx-timeout"] = now + 64 * self.config.t1
        return SessionStep([SendResponse(resp)])

    def _invite_retransmitted(self) -> SessionStep:
        if self._ok is not None and not self.acked:
            return SessionStep([SendResponse(self._ok)])
        return SessionStep()

    def _ack_received(self, ack: Request) -> SessionStep:
        if self._ok is None or self.acked or ack.cseq[0] != self._ok.cseq[0]:
            return SessionStep()
        self.acked = True
        self.timers.pop("2xx", None)
        self.timers.pop("2xx-timeout", None)
        if ack.body:
            self.remote_body = ack.body
        step = SessionStep(events=[self._event("acked", ack)])
        if self.bye_pending:
            self.bye_pending = False
            step.extend(self._send_bye())
        return step

    def _cancel_received(self, cancel: Request) -> SessionStep:
        if self.state is not CallState.INCOMING:
            return SessionStep()  # answered already: the CANCEL has no effect (§9.2)
        resp = self._respond(487)
        self.final_response = resp
        return SessionStep([SendResponse(resp)]).extend(self._set_state(CallState.TERMINATED, resp))

    # -- re-INVITE --------------------------------------------------------------------------------
    def reinvite(self, body: bytes, now: float, content_type: str = "application/sdp",
                 retry_glare: bool = False) -> SessionStep:
        """Offer ``body`` in a re-INVITE (§14.1). ``retry_glare``: after a 491, retry once in the window."""
        if self.dialog is None or self.state is not CallState.CONFIRMED:
            raise SessionStateError("re-INVITE needs a confirmed call")
        if self._reinvite is not None or self._glare_body is not None:
            raise CallFailed(491, "Request Pending")
        self.retry_glare = retry_glare
        return self._start_reinvite(body, content_type)

    def _start_reinvite(self, body: bytes, content_type: str) -> SessionStep:
        assert self.dialog is not None
        req = self.dialog.new_request("INVITE", body=body, content_type=content_type)
        for name, value in self.headers(None):
            req.headers.add(name, value)
        self._reinvite = req
        return SessionStep([SendRequest(req)])

    def _reinvite_response(self, resp: Response, now: float) -> SessionStep:
        pending = self._reinvite
        if pending is None or resp.cseq[0] != pending.cseq[0]:
            last = self._last_reinvite
            if (last is not None and resp.cseq[0] == last.cseq[0] and 200 <= resp.status < 300
                    and self._ack is not None):
                return SessionStep([SendAck(self._ack, resend=True)])  # 2xx retransmitted: ACK lost
            return SessionStep()
        if resp.status < 200:
            return SessionStep()
        self._reinvite = None
        if resp.status < 300 and self.dialog is not None:
            self._last_reinvite = pending
            self._ack = self.dialog.new_request("ACK", cseq=pending.cseq[0])
            self.local_body = pending.body
            self.remote_body = resp.body
            contact = resp.contact
            if contact is not None:
                self.dialog.remote_target = contact.uri
            return SessionStep([SendAck(self._ack)], [self._event("reinvite-answered", resp)])
        error = CallFailed(resp.status, resp.reason, resp.headers.get("Warning"))
        step = SessionStep(events=[self._event("reinvite-failed", resp, error)])
        if resp.status == 491 and self.retry_glare:
            self.retry_glare = False
            self._glare_body = (pending.body, pending.content_type or "application/sdp")
            self.timers["glare"] = now + glare_delay(self.outgoing, self.rng)
        elif resp.status in (408, 481):
            step.extend(self._send_bye())  # §14.1: the dialog is gone
        return step

    def _reinvite_received(self, req: Request, now: float) -> SessionStep:
        if self._reinvite is not None:  # glare: our own re-INVITE is in progress (§14.2)
            return SessionStep([SendResponse(make_response(req, 491))])
        if not self.acked:  # a newer INVITE implies the ACK is still in flight (RFC 6337 §3.1.3)
            self.acked = True
            self.timers.pop("2xx", None)
            self.timers.pop("2xx-timeout", None)
        try:
            answer = self.on_offer(req.body) if self.on_offer else self.local_body
        except Reject as exc:
            extra = [("Warning", self.warning(exc.warning))] if exc.warning else None
            return SessionStep([SendResponse(make_response(req, exc.status, extra=extra))])
        self.remote_body = req.body
        self.local_body = answer
        contact = req.contact
        if contact is not None and self.dialog is not None:
            self.dialog.remote_target = contact.uri
        resp = make_response(req, 200, body=answer, extra=self.headers("application/sdp" if answer else None))
        step = self._start_2xx(resp, now)
        step.events.append(self._event("reinvite", req))
        return step

    # -- transfer (RFC 3515 REFER, RFC 3891 Replaces) ------------------------------------------------
    def refer(self, refer_to: str, referred_by: str | None = None) -> Request:
        """A REFER asking the peer to call ``refer_to`` (a name-addr, maybe with ``?Replaces=``); the
        driver sends it as a transaction of its own and reads the 202."""
        if self.dialog is None or self.state is not CallState.CONFIRMED:
            raise SessionStateError("REFER needs a confirmed call")
        req = self.dialog.new_request("REFER")
        req.headers.add("Refer-To", refer_to)
        if referred_by:
            req.headers.add("Referred-By", referred_by)
        for name, value in self.headers(None):
            if name == "Contact":
                req.headers.add(name, value)
        return req

    def notify(self, status: int, reason: str, final: bool) -> Request:
        """A NOTIFY of the implicit refer subscription (RFC 3515 §2.4.4) whose sipfrag body is the
        status line of the transferred call's INVITE; ``final`` ends the subscription."""
        if self.dialog is None:
            raise SessionStateError("NOTIFY needs a dialog")
        body = f"SIP/2.0 {status} {reason}\r\n".encode()
        req = self.dialog.new_request("NOTIFY", body=body, content_type="message/sipfrag;version=2.0")
        req.headers.add("Event", "refer")
        req.headers.add("Subscription-State", "terminated;reason=noresource" if final else "active;expires=60")
        for name, value in self.headers(None):
            if name == "Contact":
                req.headers.add(name, value)
        return req

    def _transfer_request(self, req: Request) -> SessionStep:
        """An in-dialog REFER (202, event ``refer``) or NOTIFY of our REFER (200, event ``notify``)."""
        if self.state is not CallState.CONFIRMED and req.method == "REFER":
            return SessionStep([SendResponse(make_response(req, 481))])
        if req.method == "REFER":
            target = req.headers.get("Refer-To")
            if not target or len(req.headers.get_all("Refer-To")) != 1:
                return SessionStep([SendResponse(make_response(req, 400, "Need exactly one Refer-To"))])
            return SessionStep([SendResponse(make_response(req, 202))], [self._event("refer", req)])
        if (req.headers.get("Event") or "").split(";")[0].strip().lower() != "refer":
            return SessionStep([SendResponse(make_response(req, 489))])   # Bad Event (RFC 6665)
        return SessionStep([SendResponse(make_response(req, 200))], [self._event("notify", req)])

    # -- BYE --------------------------------------------------------------------------------------
    def bye(self, now: float) -> SessionStep:
        """Hang up in any state.

        Confirmed: BYE (deferred until the ACK of our 2xx, §15); outgoing and unanswered: CANCEL;
        incoming and unanswered: 603 Decline; terminated: nothing.
        """
        if self.state is CallState.TERMINATED:
            return SessionStep()
        if self.state is CallState.INCOMING:
            return self.reject(603, now)
        if self.dialog is None:
            return self.cancel(now) if not self.cancel_requested else SessionStep()
        if not self.acked:
            self.bye_pending = True
            return SessionStep()
        return self._send_bye()

    def _send_bye(self) -> SessionStep:
        if self.dialog is None or self.state is CallState.TERMINATED:
            return SessionStep()
        req = self.dialog.new_request("BYE")
        return SessionStep([SendRequest(req)]).extend(self._set_state(CallState.TERMINATED, req))

    def _bye_received(self, req: Request) -> SessionStep:
        if self.state is CallState.TERMINATED:
            return SessionStep()
        step = SessionStep(events=[self._event("bye", req)])
        if self.state is CallState.INCOMING:  # §15.1.2: the pending INVITE gets 487
            resp = self._respond(487)
            self.final_response = resp
            step.actions.append(SendResponse(resp))
        return step.extend(self._set_state(CallState.TERMINATED, req))


def option_tags(message: Request | Response, header: str) -> set[str]:
    """The option tags of every ``Require``/``Supported`` header of ``message``, lower case."""
    return {tag.strip().lower() for value in message.headers.get_all(header) for tag in value.split(",") if tag.strip()}


def sipfrag_status(body: bytes) -> int | None:
    """The status code of a ``message/sipfrag`` status line (``SIP/2.0 200 OK``), None if there is none."""
    first = body.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    if len(first) >= 2 and first[0].upper() == b"SIP/2.0" and first[1].isdigit() and len(first[1]) == 3:
        return int(first[1])
    return None
