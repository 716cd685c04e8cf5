"""Drives :class:`~.registration.Recovery` for a :class:`~.ua.UserAgent` (RFC 5626 outbound).

The machine decides; :class:`Keeper` does: it sends the REGISTERs (through the registrar's RFC 3263
targets), CRLF pings on a TCP/TLS flow (§4.4.1) or STUN Binding requests on a UDP flow (§4.4.2),
notices a closed connection, a pong or a STUN answer (a changed mapped address means the NAT
rebound: the flow failed), and reports every status change to ``ua.on_registration``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from typing import TYPE_CHECKING

from . import stun
from .errors import ParseError, RegistrationFailed, SipError, TransportError
from .message import Response
from .registration import Action, Recovery
from .transport import Addr, Source, StreamConnection

if TYPE_CHECKING:
    from .ua import UserAgent

log = logging.getLogger(__name__)
STREAM_KEEPALIVE = 120.0   # RFC 5626 §4.4.1: 95-120 s is recommended for TCP/TLS
UDP_KEEPALIVE = 25.0       # §4.4.2 (NAT UDP bindings may last as little as ~30 s)
MAX_WAIT = 3600.0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RegistrationFailed):
        return f"{exc.status} {exc.reason}".strip()
    return str(exc) or type(exc).__name__


def supports_outbound(resp: Response) -> bool:
    tags = ",".join(resp.headers.get_all("Require") + resp.headers.get_all("Supported")).lower()
    return "outbound" in {t.strip() for t in tags.split(",")} or resp.headers.get("Flow-Timer") is not None


class Keeper:
    """The background side of ``UserAgent.register()``: one per registration, cancelled to stop."""

    def __init__(self, ua: UserAgent, machine: Recovery, expires: int) -> None:
        self.ua = ua
        self.machine = machine
        self.expires = expires
        self._wake = asyncio.Event()
        self._pending: list[tuple[str, str]] = []
        self._txid: bytes | None = None
        self._mapped: tuple[str, int] | None = None
        self._conn: StreamConnection | None = None
        self.pings = 0

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _post(self, kind: str, reason: str = "") -> None:
        self._pending.append((kind, reason))
        self._wake.set()

    async def attempt(self) -> int:
        """One REGISTER; its result goes into the machine; raises what the attempt raised."""
        try:
            granted, resp, flow = await self.ua.register_flow(self.expires)
        except (SipError, TimeoutError) as exc:
            log.warning("registration failed: %s", _reason(exc))
            self.machine.failed(_reason(exc), self._now())
            self.ua.report_registration()
            raise
        addr, conn = flow
        keepalive = self.ua.config.keepalive
        if keepalive is None:
            keepalive = STREAM_KEEPALIVE if conn is not None else (UDP_KEEPALIVE if supports_outbound(resp) else None)
        self.machine.keepalive = keepalive
        flow_timer = resp.headers.get("Flow-Timer") or ""
        new_flow = conn is not self._conn or conn is None and self._mapped is None
        self._conn = conn
        if new_flow:
            self._mapped = None
        self.machine.registered(granted, self._now(), flow_timer=int(flow_timer) if flow_timer.isdigit() else None,
                                target=f"{addr.proto}:{addr.host}:{addr.port}", new_flow=new_flow)
        self.ua.transport.on_keepalive = self._on_keepalive
        if conn is not None and new_flow:
            conn.closed.add_done_callback(functools.partial(self._closed, conn))
        self.ua.report_registration()
        return granted

    def _closed(self, conn: StreamConnection, _done: object) -> None:
        if conn is self._conn:
            self._post("flow", "connection closed")

    def _on_keepalive(self, src: Source, data: bytes) -> None:
        flow = self.ua.flow
        if flow is None:
            return
        addr, conn = flow
        if conn is not None:
            if src.conn is conn:
                self._post("pong")
            return
        try:
            msg = stun.parse(data)
        except ParseError:
            return
        if msg.transaction_id != self._txid or msg.type != stun.BINDING_SUCCESS or (src.host, src.port) != (
                addr.host, addr.port):
            return
        mapped = msg.mapped_address()
        if self._mapped is not None and mapped != self._mapped:
            self._post("flow", f"NAT binding changed to {mapped}")
        else:
            self._post("pong")
        self._mapped = mapped

    def _ping(self) -> None:
        flow = self.ua.flow
        if flow is None:
            return
        addr, conn = flow
        self.pings += 1
        try:
            if conn is not None:
                conn.send(b"\r\n\r\n")
            else:
                self._txid = secrets.token_bytes(12)
                self.ua.transport.send_bytes(stun.binding_request(self._txid), Addr("udp", addr.host, addr.port))
        except TransportError as exc:
            self._post("flow", str(exc))

    async def run(self) -> None:
        """Until cancelled: do what the machine says, sleep until its deadline or an event."""
        actions: list[Action] = []
        while True:
            now = self._now()
            for kind, reason in self._pending:
                if kind == "flow":
                    log.warning("registration flow failed: %s", reason)
                    actions += self.machine.flow_failed(reason, now)
                else:
                    actions += self.machine.pong(now)
            self._pending.clear()
            actions += self.machine.advance(now)
            for action in dict.fromkeys(actions):
                if action is Action.REGISTER:
                    self.ua.report_registration()
                    try:
                        await self.attempt()
                    except (SipError, TimeoutError):
                        pass  # the machine has the failure and its retry time
                elif action is Action.PING:
                    self._ping()
            actions = []
            self._wake.clear()
            if self._pending:
                continue
            deadline = self.machine.deadline
            wait = MAX_WAIT if deadline is None else max(0.0, deadline - self._now())
            try:
                await asyncio.wait_for(self._wake.wait(), min(wait, MAX_WAIT))
            except TimeoutError:
                pass
