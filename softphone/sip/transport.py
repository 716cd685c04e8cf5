"""SIP transports on asyncio: UDP, TCP and TLS (RFC 3261 §18, RFC 3581 rport).

I/O edge of the stack: datagrams and stream bytes are turned into messages by the sans-IO
parser (:mod:`.message`) and handed to a callback with their :class:`Source`; malformed
input is logged and reported, never raised into the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ParseError, TransportError
from .limits import Counts, Limits, TokenBuckets
from .message import MAX_MESSAGE_SIZE, Message, Request, StreamFramer, parse_message
from .stun import is_stun

log = logging.getLogger(__name__)
IDLE_TIMEOUT = 300.0
UDP_SIZE_LIMIT = 1300  # RFC 3261 §18.1.1: larger requests go over a congestion-controlled transport


@dataclass(frozen=True)
class Addr:
    """A transport destination: protocol (``udp``/``tcp``/``tls``), host and port."""

    proto: str
    host: str
    port: int


@dataclass
class Source:
    """Where a received message came from; ``conn`` is the stream it arrived on (None for UDP)."""

    proto: str
    host: str
    port: int
    conn: StreamConnection | None = field(default=None, repr=False)


OnMessage = Callable[[Message, Source], None]
OnError = Callable[[bytes, ParseError, Source], None]


class Tap(Protocol):
    def record(self, proto: str, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None: ...


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self.layer = layer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        src = Source("udp", addr[0], addr[1])
        if self.layer.tap is not None and self.transport is not None:
            self.layer.tap.record("udp", addr, self.transport.get_extra_info("sockname"), data)
        if data.strip(b"\r\n") == b"":
            return  # keep-alive
        if not self.layer.admit(src):
            return
        if is_stun(data):
            if self.layer.on_keepalive is not None:
                self.layer.on_keepalive(src, data)  # a STUN keep-alive response (RFC 5626 §4.4.2)
            return
        try:
            msg = parse_message(data, max_size=self.layer.max_size)
        except ParseError as exc:
            log.info("dropped malformed UDP message from %s:%d: %s", addr[0], addr[1], exc)
            self.layer.on_error(data[:4096], exc, src)
            return
        self.layer.on_message(msg, src)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, framed by Content-Length.

    ``outbound`` connections (ours, e.g. to the proxy) are outside the inbound budget and limits;
    an inbound one must deliver a complete message within ``Limits.first_message`` seconds.
    """

    def __init__(self, layer: TransportLayer, proto: str, outbound: bool = False) -> None:
        self.layer = layer
        self.proto = proto
        self.outbound = outbound
        self.framer = StreamFramer(layer.max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.closed = asyncio.get_running_loop().create_future()
        self._idle: asyncio.TimerHandle | None = None
        self._first: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.local = transport.get_extra_info("sockname")
        if not self.outbound:
            layer, limits = self.layer, self.layer.limits
            if layer.inbound_count >= limits.connections or not layer.inbound_per_source.acquire(self.peer[0]):
                layer.refused += 1
                if layer.refused & (layer.refused - 1) == 0:  # 1, 2, 4 ...: a flood costs a few log lines
                    log.warning("too many inbound SIP connections; closing %s:%d (%d refused so far)",
                                *self.peer, layer.refused)
                transport.close()
                return
            self._counted = True
            layer.inbound_count += 1
            self._first = asyncio.get_running_loop().call_later(limits.first_message, self._silent)
        self.layer.connections[(self.proto, self.peer[0], self.peer[1])] = self
        self._touch()

    def _silent(self) -> None:
        self._first = None
        log.info("closing %s connection from %s:%d: no complete message in time", self.proto, *self.peer)
        self.close()

    def _touch(self) -> None:
        if self._idle:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        self._touch()
        src = Source(self.proto, self.peer[0], self.peer[1], self)
        if self.layer.tap is not None:
            self.layer.tap.record(self.proto, self.peer, self.local, data)
        if data and data.strip(b"\r\n") == b"" and not self.framer.pending:
            if data == b"\r\n\r\n" and self.transport is not None:
                self.transport.write(b"\r\n")  # pong a peer's ping (RFC 5626 §3.5.1)
            elif self.layer.on_keepalive is not None:
                self.layer.on_keepalive(src, data)  # the pong of our ping (§4.4.1)
            return
        try:
            messages = self.framer.feed(data)
        except ParseError as exc:
            log.info("closing %s connection from %s:%d after malformed input: %s", self.proto, *self.peer, exc)
            self.layer.on_error(data[:4096], exc, src)
            self.close()
            return
        for head, error in self.framer.rejected:
            log.info("rejected malformed %s message from %s:%d: %s", self.proto, *self.peer, error)
            self.layer.on_error(head[:4096], error, src)
        self.framer.rejected.clear()
        if messages and self._first is not None:
            self._first.cancel()
            self._first = None
        for msg in messages:
            if isinstance(msg, Request) and not self.outbound and not self.layer.admit(src):
                continue
            self.layer.on_message(msg, src)

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("connection is closed")
        self._touch()
        if self.layer.tap is not None:
            self.layer.tap.record(self.proto, self.local, self.peer, data)
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.layer.connections.get((self.proto, self.peer[0], self.peer[1])) is self:
            del self.layer.connections[(self.proto, self.peer[0], self.peer[1])]
        if self._counted:
            self._counted = False
            self.layer.inbound_count -= 1
            self.layer.inbound_per_source.release(self.peer[0])
        if self._idle:
            self._idle.cancel()
        if self._first:
            self._first.cancel()
        if not self.closed.done():
            self.closed.set_result(None)


class TransportLayer:
    """Listening sockets and connections for one UA.

    ``on_message(msg, source)`` receives every parsed message; ``on_error(data, exc, source)``
    every malformed one (the UA may answer 400). ``tls_server``/``tls_client`` are ssl contexts.
    """

    def __init__(self, on_message: OnMessage, on_error: OnError, *, host: str = "127.0.0.1",
                 tls_server: ssl.SSLContext | None = None, tls_client: ssl.SSLContext | None = None,
                 max_size: int = MAX_MESSAGE_SIZE, limits: Limits | None = None) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.host = host
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.max_size = max_size
        self.ports: dict[str, int] = {}
        self.on_keepalive: Callable[[Source, bytes], None] | None = None
        self.connections: dict[tuple[str, str, int], StreamConnection] = {}
        self.limits = limits or Limits()
        self.trusted: set[tuple[str, int]] = set()  # (host, port) of our proxy/registrar: not limited
        self.buckets = TokenBuckets(self.limits.rate, self.limits.burst, self.limits.sources)
        self.inbound_count = 0
        self.inbound_per_source = Counts(self.limits.connections_per_source)
        self.dropped = 0   # messages over their source's rate
        self.refused = 0   # inbound connections over the budget
        self._udp: _UdpProtocol | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self.tap: Tap | None = None  # sees every datagram and stream chunk sent and received (a capture)

    def admit(self, src: Source) -> bool:
        """Whether a message from ``src`` is within its source's rate (the trusted hop always is)."""
        if (src.host, src.port) in self.trusted or (src.conn is not None and src.conn.outbound):
            return True
        if self.buckets.allow(src.host, asyncio.get_running_loop().time()):
            return True
        self.dropped += 1
        if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8 ...: a flood costs a few log lines
            log.warning("dropping SIP from %s over its rate limit (%d dropped so far)", src.host, self.dropped)
        return False

    async def listen(self, proto: str, port: int = 0) -> int:
        """Open a listener for ``proto`` on ``host:port`` (0 = any free port); returns the port."""
        loop = asyncio.get_running_loop()
        if proto == "udp":
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, port))
            self._udp = protocol
            port = transport.get_extra_info("sockname")[1]
        elif proto in ("tcp", "tls"):
            ctx = None
            if proto == "tls":
                if self.tls_server is None:
                    raise TransportError("TLS listener needs a server certificate")
                ctx = self.tls_server
            server = await loop.create_server(lambda: StreamConnection(self, proto), self.host, port, ssl=ctx,
                                              reuse_address=True, backlog=1024,
                                              ssl_handshake_timeout=self.limits.first_message if ctx else None)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
        else:
            raise TransportError(f"unknown transport {proto!r}")
        self.ports[proto] = port
        return port

    async def resolve(self, host: str, port: int) -> str:
        """A numeric address for ``host`` via the system resolver (RFC 3263 A/AAAA step)."""
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
            return host.strip("[]")
        except OSError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise TransportError(f"cannot resolve {host!r}: {exc.strerror}") from None
        return str(infos[0][4][0])

    async def connect(self, dest: Addr, server_hostname: str | None = None) -> StreamConnection:
        """An open stream to ``dest`` (reused if one exists)."""
        existing = self.connections.get((dest.proto, dest.host, dest.port))
        if existing and existing.transport and not existing.transport.is_closing():
            return existing
        loop = asyncio.get_running_loop()
        ctx = None
        if dest.proto == "tls":
            ctx = self.tls_client or ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: StreamConnection(self, dest.proto, outbound=True), dest.host, dest.port, ssl=ctx,
                server_hostname=(server_hostname or dest.host) if ctx else None), 10.0)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect to {dest.proto}:{dest.host}:{dest.port}: "
                                 f"{type(exc).__name__}") from None
        return conn

    def send_bytes(self, data: bytes, dest: Addr, conn: StreamConnection | None = None) -> None:
        """Send already-encoded bytes without waiting (UDP, or an open stream)."""
        if dest.proto == "udp":
            if self._udp is None or self._udp.transport is None:
                raise TransportError("no UDP socket")
            if self.tap is not None:
                self.tap.record("udp", self._udp.transport.get_extra_info("sockname"), (dest.host, dest.port), data)
            self._udp.transport.sendto(data, (dest.host, dest.port))
            return
        conn = conn or self.connections.get((dest.proto, dest.host, dest.port))
        if conn is None:
            raise TransportError("no open connection")
        conn.send(data)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.close()
        if self._udp and self._udp.transport:
            self._udp.transport.close()
        for server in self._servers:
            await server.wait_closed()
