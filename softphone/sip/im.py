"""Instant messages (RFC 3428): send a MESSAGE through a non-INVITE client transaction, take inbound ones.

    await send_message(ua, "sip:bob@example.org", body, "text/plain")   # the final Response
    accept_messages(ua, handler)      # handler(InboundMessage) -> (status, warning | None)

MESSAGE is sent over the UA's configured transport (TLS/TCP here: RFC 3428 §8 limits UDP to 1300
octets). A 2xx means the next hop (a proxy, or its store-and-forward) took it, not that it was read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .errors import SipError
from .message import Request, Response
from .ua import UserAgent
from .uri import NameAddr, SipUri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundMessage:
    """A received MESSAGE: ``sender`` is the bare ``sip:user@host`` of P-Asserted-Identity or From."""

    sender: str
    content_type: str
    body: bytes
    call_id: str
    request: Request


def _bare(uri: SipUri) -> str:
    return f"{uri.scheme}:{uri.user}@{uri.host}" if uri.user else str(uri)


def sender_of(req: Request) -> str:
    uri = req.from_.uri
    pai = req.headers.get("P-Asserted-Identity")
    if pai:
        try:
            uri = NameAddr.parse(pai).uri
        except SipError:
            pass
    return _bare(uri)


async def send_message(ua: UserAgent, target: str, body: bytes, content_type: str, *,
                       timeout: float | None = 32.0) -> Response:
    """Send one MESSAGE to ``target``; returns the final response (digest auth answered once)."""
    req = ua._new_request("MESSAGE", SipUri.parse(target))
    req.headers.add("Content-Type", content_type)
    req.body = body
    return await ua.request(req, timeout=timeout)


def accept_messages(ua: UserAgent, handler: Callable[[InboundMessage], tuple[int, str | None]]) -> None:
    """Answer inbound MESSAGEs with what ``handler`` returns (500 if it raises)."""

    def on_message(req: Request, reply: Callable[..., None]) -> None:
        msg = InboundMessage(sender_of(req), req.headers.get("Content-Type") or "", req.body, req.call_id, req)
        try:
            status, warning = handler(msg)
        except Exception as exc:  # a handler bug costs one message, never the UA  # noqa: BLE001
            log.warning("MESSAGE handler failed: %s", exc.__class__.__name__)
            status, warning = 500, "internal error"
        reply(status, warning)

    ua.dispatcher.message_handler = on_message
