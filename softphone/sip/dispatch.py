"""Inbound dispatch (RFC 3261 §8.2, §17.2.3, §18.2): every received message to its handler.

Responses go to their client transaction (top Via branch + CSeq method); requests to their server
transaction (retransmissions, ACKs for non-2xx), to the session of their dialog (ACK for 2xx,
BYE, re-INVITE, CANCEL), or become a new incoming call. Requests the UA cannot take get the
right error (400/413/505 with a Warning, 405, 415, 416, 420, 481, 482, 486, 500, 503).
The :class:`Dispatcher` keeps no state of its own: the tables are the UA's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .drivers import ServerTxDriver
from .errors import ParseError, SipError
from .grammar import is_ascii_digits
from .headers import Headers, Via
from .message import Message, Request, Response, make_response, parse_cseq
from .session import InviteSession
from .transaction import ServerTransaction, State
from .transport import Addr, Source
from .uri import NameAddr

if TYPE_CHECKING:
    from .ua import UserAgent

log = logging.getLogger(__name__)
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, REFER, NOTIFY"
MAX_SERVER_TRANSACTIONS = 16384  # Timer J keeps UDP non-INVITE transactions 32 s: ~500 req/s
MAX_SESSIONS = 256
SUPPORTED: frozenset[str] = frozenset({"100rel"})   # RFC 3262
Reply = Callable[..., None]


class Dispatcher:
    """Routes what the transport layer received for ``ua``."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        #: Takes out-of-dialog MESSAGE requests (RFC 3428) when set: ``handler(request, reply)``.
        self.message_handler: Callable[[Request, Reply], None] | None = None

    def on_bad_message(self, data: bytes, exc: ParseError, src: Source) -> None:
        """Answer 400 (or 413/505) when enough of a request survives to address a response."""
        self.ua.stats["bad"] += 1
        resp = salvage_error_response(data, exc)
        if resp is None:
            return
        resp.headers.add("Warning", self.ua.warning(str(exc)))
        try:
            if src.conn is not None:
                src.conn.send(resp.encode())  # the stream is still framed (or is about to close)
            else:
                self.ua.transport.send_bytes(resp.encode(), Addr("udp", src.host, src.port))
        except SipError as err:
            log.info("could not send %d: %s", exc.status, err)

    def on_message(self, msg: Message, src: Source) -> None:
        try:
            if isinstance(msg, Request):
                self.ua.stats["requests"] += 1
                self._on_request(msg, src)
            else:
                self.ua.stats["responses"] += 1
                assert isinstance(msg, Response)
                self._on_response(msg)
        except ParseError as exc:
            log.info("rejected %r: %s", msg, exc)
            self._reply_error(msg, src, exc.status, str(exc))
        except Exception:  # a bug must cost one message, never the UA  # noqa: BLE001
            log.exception("internal error handling %r", msg)
            self._reply_error(msg, src, 500, "internal error")

    def _reply_error(self, msg: Message, src: Source, status: int, why: str) -> None:
        if not isinstance(msg, Request) or msg.method == "ACK":
            return
        try:
            resp = make_response(msg, status, extra=[("Warning", self.ua.warning(why))])
            self._responder(msg, src)(resp.encode())
        except (SipError, OSError) as exc:
            log.info("could not send %d: %s", status, exc)

    def _on_response(self, resp: Response) -> None:
        vias = resp.headers.get_all("Via")
        if len(vias) != 1:
            log.info("dropping response with %d Via values", len(vias))
            return
        via = Via.parse(vias[0])
        tx = self.ua._client.get((via.branch or "", resp.cseq[1]))
        if tx is not None:
            tx.receive(resp)
            return
        if resp.cseq[1] == "INVITE" and 200 <= resp.status < 300:
            session = self.ua._sessions.get(resp.call_id)
            if session is not None and session.dialog is not None:
                session.receive(resp)  # a 2xx retransmission after the transaction ended
                return
        log.debug("stray response %r", resp)

    def _responder(self, req: Request, src: Source) -> Callable[[bytes], None]:
        """A send(bytes) callable following RFC 3261 §18.2.2 and RFC 3581."""
        if src.conn is not None:
            conn = src.conn
            return conn.send
        via = req.top_via
        host = via.params.get("received") or via.host
        rport = via.params.get("rport") or ""
        port = int(rport) if is_ascii_digits(rport) and 0 < int(rport) < 65536 else (via.port or 5060)
        addr = Addr("udp", host.strip("[]"), port)
        return lambda data: self.ua.transport.send_bytes(data, addr)

    def _on_request(self, req: Request, src: Source) -> None:
        via = req.top_via
        if via.host.strip("[]") != src.host or "rport" in via.params:
            via.params["received"] = src.host
        if "rport" in via.params:
            via.params["rport"] = str(src.port)
        vias = req.headers.get_all("Via")
        req.headers.remove("Via")
        req.headers.add("Via", str(via))
        for other in vias[1:]:
            req.headers.add("Via", other)

        key = server_key(req)
        if req.method == "ACK":
            tx = self.ua._server.get(key)
            if tx is not None and tx.state is not State.ACCEPTED:
                tx.receive(req)  # the ACK of a non-2xx final: the transaction's (§17.2.1)
                return
            # the ACK of a 2xx is the dialog's (§13.3.1.4), even from a peer that reused the branch
            session = self.ua._dialogs.get((req.call_id, req.to.tag or "", req.from_.tag or ""))
            if session is not None:
                session.receive(req)
            return
        existing = self.ua._server.get(key)
        if existing is not None:
            existing.receive(req)
            return
        send = self._responder(req, src)
        trusted = (src.host, src.port) in self.ua.transport.trusted or (src.conn is not None and src.conn.outbound)
        owner = "" if trusted else src.host  # one source may hold only its share of the table
        if len(self.ua._server) >= MAX_SERVER_TRANSACTIONS or (owner and not self.ua.server_owners.acquire(owner)):
            send(make_response(req, 503, extra=[("Retry-After", "5")]).encode())
            return
        tx = new_tx = ServerTxDriver(ServerTransaction(req, src.proto != "udp", self.ua.timers), send,
                                     lambda event: self.ua._server_event(new_tx, event), key=key, owner=owner)
        self.ua._server[key] = tx

        def reply(status: int, warning: str | None = None, extra: list[tuple[str, str]] | None = None,
                  body: bytes = b"") -> None:
            hdrs = list(extra or [])
            if warning:
                hdrs.append(("Warning", self.ua.warning(warning)))
            tx.respond(make_response(req, status, to_tag=self.ua.new_tag(), extra=hdrs, body=body))

        if req.uri.scheme not in ("sip", "sips"):
            return reply(416, f"unsupported URI scheme {req.uri.scheme}")
        unsupported = [o for o in req.headers.get_all("Require") if o.lower() not in SUPPORTED]
        if unsupported and req.method != "CANCEL":
            return reply(420, extra=[("Unsupported", ", ".join(unsupported))])
        if req.method == "CANCEL":
            return self._on_cancel(req, tx, reply)
        to_tag = req.to.tag
        if to_tag:
            session = self.ua._dialogs.get((req.call_id, to_tag, req.from_.tag or ""))
            if session is None and req.method in ("BYE", "PRACK"):  # before we answered (§15.1.2, RFC 3262)
                pending = self.ua._sessions.get(req.call_id)
                if pending is not None and not pending.outgoing and pending.local_tag == to_tag:
                    if req.method == "PRACK":
                        return pending.receive(req, tx)   # the machine answers 200 or 481
                    reply(200)
                    return pending.receive(req)
            if session is None or session.dialog is None:
                return reply(481)
            if not session.dialog.check_remote_cseq(req):
                return reply(500, "CSeq out of order")
            if req.method == "BYE":
                reply(200)
                return session.receive(req)
            if req.method == "INVITE":
                if req.body and req.content_type != "application/sdp":
                    return reply(415, extra=[("Accept", "application/sdp")])
                return session.receive(req, tx)
            if req.method == "OPTIONS":
                return reply(200, extra=self._options_headers())
            if req.method in ("PRACK", "REFER", "NOTIFY"):
                return session.receive(req, tx)   # the machine answers (RFC 3262, RFC 3515)
            return reply(405, extra=[("Allow", ALLOW)])
        if req.method == "INVITE":
            return self._on_invite(req, tx, reply)
        if req.method == "OPTIONS":
            return reply(200, extra=self._options_headers())
        if req.method == "BYE":
            return reply(481)
        if req.method == "MESSAGE" and self.message_handler is not None:
            return self.message_handler(req, reply)
        return reply(405, extra=[("Allow", ALLOW)])

    def _options_headers(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Contact", str(self.ua.contact)),
                ("Server", self.ua.config.user_agent)]

    def _on_invite(self, req: Request, tx: ServerTxDriver, reply: Reply) -> None:
        if req.body and req.content_type != "application/sdp":
            return reply(415, extra=[("Accept", "application/sdp")])
        if req.contact is None or not req.from_.tag:
            return reply(400, "INVITE lacks Contact or From tag")
        if req.call_id in self.ua._sessions or len(self.ua._sessions) >= MAX_SESSIONS:
            return reply(486 if req.call_id not in self.ua._sessions else 482)
        replaces = None
        if req.headers.get("Replaces") is not None:   # RFC 3891 §3: the dialog this call takes over
            replaces = self.ua.replaced_session(req.headers.get("Replaces") or "")
            if replaces is None:
                return reply(481, "Replaces names no dialog of ours")
        tx.respond(make_response(req, 100))
        session = InviteSession(self.ua, req, outgoing=False, server_tx=tx)
        session.replaces = replaces
        try:
            self.ua.incoming.put_nowait(session)
        except asyncio.QueueFull:
            return reply(486, "too many unanswered calls")
        self.ua._sessions[req.call_id] = session

    def _on_cancel(self, req: Request, tx: ServerTxDriver, reply: Reply) -> None:
        invite_tx = self.ua._server.get((req.top_via.branch or "", _sent_by(req.top_via), "INVITE"))
        if invite_tx is None:
            return reply(481)
        reply(200)
        session = self.ua._sessions.get(req.call_id)
        if session is not None:
            session.receive(req)
        elif invite_tx.last_response is None or invite_tx.last_response.status < 200:
            invite_tx.respond(make_response(invite_tx.request, 487, to_tag=self.ua.new_tag()))


def _sent_by(via: Via) -> str:
    return f"{via.host}:{via.port or 5060}"


def server_key(req: Request) -> tuple[str, str, str]:
    """Server transaction key (RFC 3261 §17.2.3): branch, sent-by, method (ACK → INVITE)."""
    via = Via.parse(req.headers.get_all("Via")[0])
    method = "INVITE" if req.method == "ACK" else req.method
    return (via.branch or "", _sent_by(via), method)


def salvage_error_response(data: bytes, exc: ParseError) -> Response | None:
    """Build the 4xx/5xx for an unparseable request from whatever headers survive (§8.2, §21.4.1).

    Needs a request line and a parseable Via to know where the answer goes; otherwise None (drop).
    """
    text = data.decode("utf-8", "replace")
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].startswith("SIP/") or " " not in lines[0]:
        return None
    headers = Headers()
    for line in lines[1:]:
        if not line:
            break
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers.add(name.strip(), value.strip())
    resp = Response(status=exc.status, reason={413: "Request Entity Too Large", 483: "Too Many Hops",
                                               505: "Version Not Supported"}.get(exc.status, "Bad Request"))
    try:
        vias = [str(Via.parse(v)) for v in headers.get_all("Via")]
    except ParseError:
        return None
    if not vias:
        return None
    for via in vias:
        resp.headers.add("Via", via)
    checks: dict[str, Callable[[str], object]] = {"From": NameAddr.parse, "To": NameAddr.parse,
                                                  "Call-ID": str.strip, "CSeq": parse_cseq}
    for name, check in checks.items():
        found = headers.get(name)
        if found is None or len(found) > 1024:
            continue
        try:
            check(found)
        except ParseError:
            continue  # a header that is itself the problem is not echoed
        resp.headers.add(name, found)
    return resp


