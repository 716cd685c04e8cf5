"""The user agent (RFC 3261 §8, §10, §13-15): UAC and UAS cores over :mod:`.transport`.

Entry point for the call layer::

    async with UserAgent(UAConfig(aor="sip:alice@example.org", username="alice",
                                  password=pw, proxy="sip:127.0.0.1:5060")) as ua:
        await ua.register()
        call = await ua.invite("sip:bob@example.org", sdp_offer_bytes)
        ok = await call.answered()          # CallFailed(status, reason, warning) otherwise
        incoming = await ua.incoming.get()  # InviteSession; answer()/reject()
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .auth import Challenge, DigestCredentials, parse_auth_params
from .dispatch import ALLOW, MAX_SESSIONS, Dispatcher, server_key
from .drivers import ClientTxDriver, ServerTxDriver
from .errors import ParseError, RegistrationFailed, SipError, TransactionTimeout, TransportError
from .headers import Via
from .limits import Counts, Limits
from .message import MAX_MESSAGE_SIZE, Request, Response
from .registration import MAX_ATTEMPTS as MAX_REGISTER_ATTEMPTS
from .registration import Backoff, Recovery, Registration, RegistrationStatus, RegState
from .resolve import ALL_TRANSPORTS, Failover, Resolver
from .session import CallState, InviteSession
from .transaction import (
    Acked,
    ClientTransaction,
    RequestRetransmitted,
    ResponseReceived,
    State,
    Terminated,
    TimedOut,
    Timers,
    TransactionEvent,
)
from .transport import UDP_SIZE_LIMIT, Addr, StreamConnection, TransportLayer
from .uri import NameAddr, SipUri

if TYPE_CHECKING:
    from .outbound import Keeper

log = logging.getLogger(__name__)


@dataclass
class UAConfig:
    """What a UA needs: its AOR, optional digest credentials, proxy/registrar and transports.

    ``transport`` is the one used for REGISTER and initial requests (``udp``, ``tcp``, ``tls``);
    the UA always also listens on TCP beside UDP so large requests can switch (§18.1.1).
    ``tls_server``/``tls_client`` are ``ssl.SSLContext`` objects (see ``lab.certs``).
    ``auth_realms``: the only digest realms credentials are sent to. None: the registrar's domain and
    the realms our registrar challenged a successful REGISTER with (a challenge for any other realm,
    say from a callee, is refused and the request fails).
    """

    aor: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    proxy: str | None = None
    registrar: str | None = None
    transport: str = "udp"
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0
    tls_server: ssl.SSLContext | None = None
    tls_client: ssl.SSLContext | None = None
    display_name: str | None = None
    user_agent: str = "securechorus-softphone/0.1"
    expires: int = 3600
    timers: Timers = field(default_factory=Timers)
    max_message_size: int = MAX_MESSAGE_SIZE
    incoming_queue: int = 16
    limits: Limits = field(default_factory=Limits)  # per-source rate, transaction and connection budgets
    auth_realms: tuple[str, ...] | None = None  # digest realms we answer; None: the registrar's (see below)
    nameserver: str | None = None     # "host:port" for RFC 3263 lookups (default: the system resolver)
    instance_id: str | None = None    # "urn:uuid:…": +sip.instance and reg-id in Contact (RFC 5626)
    reg_id: int = 1
    keepalive: float | None = None    # ping interval; default 120 s on TCP/TLS, 25 s on UDP (RFC 5626 §4.4)
    pong_timeout: float = 10.0
    retry_base: float = 30.0          # RFC 5626 §4.5 base-time and max-time of the retry backoff
    retry_max: float = 1800.0


class UserAgent:
    """A SIP UA: registration with refresh, INVITE sessions, OPTIONS, and correct error responses."""

    def __init__(self, config: UAConfig) -> None:
        self.config = config
        self.aor = SipUri.parse(config.aor)
        self.timers = config.timers
        self.credentials = (DigestCredentials(config.username, config.password)
                            if config.username and config.password is not None else None)
        self.dispatcher = Dispatcher(self)
        self.transport = self._transport_layer()
        self.server_owners = Counts(config.limits.transactions)  # server transactions per source
        self.incoming: asyncio.Queue[InviteSession] = asyncio.Queue(maxsize=config.incoming_queue)
        self.register_count = 0
        self.stats = {"requests": 0, "responses": 0, "bad": 0}
        self._client: dict[tuple[str, str], ClientTxDriver] = {}
        self._client_dest: dict[int, tuple[Addr, StreamConnection | None]] = {}
        self._server: dict[tuple[str, str, str], ServerTxDriver] = {}
        self._sessions: dict[str, InviteSession] = {}          # by Call-ID (pending + dialog)
        self._dialogs: dict[tuple[str, str, str], InviteSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresh: asyncio.Task[None] | None = None
        self.resolver = Resolver(config.nameserver)
        self.recovery: Recovery | None = None
        self.keeper: Keeper | None = None
        self.on_registration: Callable[[RegistrationStatus], None] | None = None
        self.flow: tuple[Addr, StreamConnection | None] | None = None   # where our binding's REGISTER went
        registrar = SipUri.parse(config.registrar) if config.registrar else SipUri(
            self.aor.scheme, None, None, self.aor.host, self.aor.port)
        self.registration = Registration(self.aor, f"{secrets.token_hex(10)}@{config.host}", registrar)
        self.rng: Callable[[], float] = secrets.SystemRandom().random  # glare retry windows (§14.1)
        self.learned_realms: set[str] = {registrar.host}

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Open UDP and TCP on one port (and TLS when configured)."""
        for _ in range(20):
            port = await self.transport.listen("udp", self.config.port)
            try:
                await self.transport.listen("tcp", port)
                break
            except OSError:
                if self.config.port:
                    raise
                await self.transport.close()
                self.transport = self._transport_layer()
        else:
            raise TransportError("no free port for UDP and TCP")
        if self.config.tls_server is not None:
            await self.transport.listen("tls", self.config.tls_port)
        await self._trust_our_hop()

    def _transport_layer(self) -> TransportLayer:
        config = self.config
        return TransportLayer(self.dispatcher.on_message, self.dispatcher.on_bad_message, host=config.host,
                              tls_server=config.tls_server, tls_client=config.tls_client,
                              max_size=config.max_message_size, limits=config.limits)

    async def _trust_our_hop(self) -> None:
        """Exempt our proxy (or registrar) from the per-source limits: it carries every inbound call."""
        if not (self.config.proxy or self.config.registrar):
            return
        hop = SipUri.parse(self.config.proxy) if self.config.proxy else self.registration.registrar
        try:
            host = await self.transport.resolve(hop.host, hop.port or 5060)
        except TransportError as exc:
            log.info("cannot resolve our proxy %s now: %s", hop.host, exc)
            return
        self.transport.trusted.add((host, hop.port or (5061 if hop.transport == "tls" else 5060)))

    async def close(self) -> None:
        """Hang up calls, unregister, stop timers and close sockets."""
        for session in list(self._dialogs.values()):
            if session.state is CallState.CONFIRMED:
                await session.bye(timeout=2.0)
        if self._refresh:
            self._refresh.cancel()
        if self.registered_expires:
            try:
                await asyncio.wait_for(self.unregister(), 5.0)
            except (TimeoutError, SipError) as exc:
                log.info("unregister on exit failed: %s", exc)
        for task in list(self._tasks):
            task.cancel()
        for tx in list(self._client.values()) + list(self._server.values()):
            tx.terminate()
        for session in list(self._sessions.values()):
            session.detach()
        await self.transport.close()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background coroutine owned by this UA (cancelled on close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("background SIP task failed: %s", task.exception())

    # -- identities -----------------------------------------------------------------------------
    @staticmethod
    def new_tag() -> str:
        return secrets.token_hex(6)

    @property
    def port(self) -> int:
        return self.transport.ports["udp"]

    @property
    def contact(self) -> NameAddr:
        proto = self.config.transport
        port = self.transport.ports.get(proto, self.transport.ports["udp"])
        params: dict[str, str | None] = {} if proto == "udp" else {"transport": proto}
        return NameAddr(SipUri("sip", self.aor.user, None, self.config.host, port, params))

    def _from(self) -> str:
        return str(NameAddr(self.aor, self.config.display_name, {"tag": self.new_tag()}))

    def session_headers(self, content_type: str | None) -> list[tuple[str, str]]:
        out = [("Contact", str(self.contact)), ("Allow", ALLOW), ("Supported", "100rel")]
        if content_type:
            out.append(("Content-Type", content_type))
        return out

    def warning(self, text: str | None) -> str:
        """A ``Warning: 399 host "text"`` value (RFC 3261 §20.43)."""
        safe = (text or "").replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
        return f'399 {self.config.host} "{safe[:200]}"'

    # -- routing ----------------------------------------------------------------------------------
    async def _destinations(self, uri: SipUri, size: int,
                            transports: tuple[str, ...] | None = None) -> list[tuple[Addr, str]]:
        """Transport, address and port for a next-hop URI in the order to try (RFC 3263), with the
        name a TLS certificate must carry."""
        if transports is None:
            first = self.config.transport
            transports = (first, *(t for t in ALL_TRANSPORTS if t != first))
        out: list[tuple[Addr, str]] = []
        for target in await self.resolver.resolve(uri, transports):
            proto = target.proto
            if proto not in ("udp", "tcp", "tls"):
                continue
            if proto == "udp" and size > UDP_SIZE_LIMIT:
                proto = "tcp"  # RFC 3261 §18.1.1
            host, port = target.address, target.port
            if "transport" not in uri.params and uri.scheme == "sip" and (
                    conn := self.transport.connections.get(("tcp", host, port))):
                if conn.transport is not None and not conn.transport.is_closing():
                    proto = "tcp"  # reuse an open connection to that peer (RFC 5923 §5)
            out.append((Addr(proto, host, port), target.tls_name))
        if not out:
            raise TransportError(f"unsupported transport for {uri}")
        return out

    async def _open(self, targets: list[tuple[Addr, str]]) -> tuple[Addr, StreamConnection | None]:
        """The first target that can be reached (a stream connects; UDP always can)."""
        error: TransportError | None = None
        for addr, name in targets:
            if addr.proto == "udp":
                return addr, None
            try:
                return addr, await self.transport.connect(addr, server_hostname=name or None)
            except TransportError as exc:
                log.info("%s; trying the next target", exc)
                error = exc
        raise error or TransportError("no target")

    def _add_via(self, req: Request, proto: str) -> None:
        port = self.transport.ports.get(proto) or self.transport.ports["udp"]
        via = Via(proto.upper(), self.config.host, port, {"branch": "z9hG4bK" + secrets.token_hex(10), "rport": None})
        req.headers.prepend("Via", str(via))

    def _initial_hop(self, req: Request) -> SipUri:
        return SipUri.parse(self.config.proxy) if self.config.proxy else req.uri

    async def send_request(self, req: Request, *, dest: tuple[Addr, StreamConnection | None] | None = None,
                           dest_uri: SipUri | None = None, keep_via: bool = False) -> ClientTxDriver:
        """Start a client transaction for ``req`` (adds Via unless ``keep_via``)."""
        if "Max-Forwards" not in req.headers:
            req.headers.add("Max-Forwards", "70")
        if "User-Agent" not in req.headers:
            req.headers.add("User-Agent", self.config.user_agent)
        if dest is None:
            addr, conn = await self._open(await self._destinations(
                dest_uri or self._initial_hop(req), len(req.encode()) + 120))
        else:
            addr, conn = dest
        if not keep_via:
            self._add_via(req, addr.proto)
        branch = req.top_via.branch or ""
        method = req.method
        tx = ClientTxDriver(ClientTransaction(req, addr.proto != "udp", self.timers),
                            lambda data: self.transport.send_bytes(data, addr, conn),
                            lambda event: self._client_event(tx, event))
        self._client[(branch, method)] = tx
        self._client_dest[id(tx)] = (addr, conn)
        tx.start()
        return tx

    def last_dest(self, tx: ClientTxDriver) -> tuple[Addr, StreamConnection | None]:
        return self._client_dest[id(tx)]

    def client_tx_for(self, req: Request) -> ClientTxDriver | None:
        exact = next((tx for tx in self._client.values() if tx.request is req and tx.state is not State.TERMINATED),
                     None)
        return exact or next((tx for tx in self._client.values()
                     if tx.request.call_id == req.call_id and tx.request.method == req.method
                     and tx.state is not State.TERMINATED), None)

    async def send_stateless(self, req: Request, uri: SipUri) -> tuple[bytes, tuple[Addr, StreamConnection | None]]:
        """Send a request outside any transaction (ACK for 2xx, §13.2.2.4); returns what to resend."""
        req.headers.add("Max-Forwards", "70") if "Max-Forwards" not in req.headers else None
        addr, conn = await self._open(await self._destinations(uri, len(req.encode()) + 120))
        self._add_via(req, addr.proto)
        data = req.encode()
        self.transport.send_bytes(data, addr, conn)
        return data, (addr, conn)

    async def request(self, req: Request, *, dest_uri: SipUri | None = None,
                      timeout: float | None = None) -> Response:
        """Send a non-INVITE (or re-INVITE) request and return its final response.

        A 401/407 is answered once with digest credentials (new branch, CSeq + 1). A timeout, a
        transport error or a 503 moves on to the next RFC 3263 target (§4.3) with a new branch.
        """
        resp, _ = await self.request_flow(req, dest_uri=dest_uri, timeout=timeout)
        return resp

    async def request_flow(self, req: Request, *, dest_uri: SipUri | None = None, timeout: float | None = None,
                           transports: tuple[str, ...] | None = None,
                           ) -> tuple[Response, tuple[Addr, StreamConnection | None]]:
        """:meth:`request`, also returning the flow (address, connection) the final response came on."""
        uri = dest_uri or self._initial_hop(req)
        targets = await self._destinations(uri, len(req.encode()) + 120, transports)
        error: SipError | None = None
        for index, (addr, name) in enumerate(targets):
            if index:
                req = Request(method=req.method, uri=req.uri, headers=req.headers.copy(), body=req.body)
                req.headers.remove("Via")
            try:
                dest = await self._open([(addr, name)])
                resp, dest = await self._authorized_request(req, dest, uri, timeout)
            except (TransactionTimeout, TransportError) as exc:
                log.info("%s to %s:%s:%d failed (%s)", req.method, addr.proto, addr.host, addr.port, exc)
                error = exc
                continue
            if resp.status == 503 and index + 1 < len(targets):
                log.info("%s to %s:%d: 503; trying the next target", req.method, addr.host, addr.port)
                continue
            return resp, dest
        raise error or TransportError("no target")

    async def _authorized_request(self, req: Request, dest: tuple[Addr, StreamConnection | None], uri: SipUri,
                                  timeout: float | None) -> tuple[Response, tuple[Addr, StreamConnection | None]]:
        for attempt in range(2):
            tx = await self.send_request(req, dest=dest)
            try:
                resp = await asyncio.wait_for(asyncio.shield(tx.final), timeout)
            except TimeoutError:
                tx.terminate()
                raise TransactionTimeout(f"no final response to {req.method}") from None
            if resp.status in (401, 407) and attempt == 0 and self.credentials and "tag" not in req.to.params:
                req = self._authorized_copy(req, resp)
                if dest[1] is not None and dest[1].transport is not None and dest[1].transport.is_closing():
                    dest = await self._open([(dest[0], uri.host)])
                continue
            if attempt == 1 and req.method == "REGISTER" and 200 <= resp.status < 300:
                self.learned_realms.add(self._answered_realm(req))
            return resp, dest
        return resp, dest

    def _answered_realm(self, req: Request) -> str:
        for name in ("Authorization", "Proxy-Authorization"):
            value = req.headers.get(name)
            if value:
                return parse_auth_params(value.partition(" ")[2]).get("realm", "")
        return ""

    def realm_allowed(self, realm: str, method: str) -> bool:
        """Whether credentials may answer a challenge for ``realm`` (digest harvesting, RFC 3261 §26.3.2.2)."""
        if self.config.auth_realms is not None:
            return realm in self.config.auth_realms
        return method == "REGISTER" or realm in self.learned_realms

    def choose_challenge(self, resp: Response, method: str) -> Challenge:
        """The strongest acceptable challenge of a 401/407: SHA-256 over MD5, qop=auth over none."""
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        offered: list[Challenge] = []
        for value in resp.headers.get_all(header):
            try:
                offered.append(Challenge.parse(value))
            except ParseError:
                continue
        usable = [c for c in offered if c.supported]
        if not usable:
            raise RegistrationFailed(resp.status, "no usable digest challenge")
        ours = [c for c in usable if self.realm_allowed(c.realm, method)]
        if not ours:
            realms = ", ".join(sorted({repr(c.realm[:40]) for c in usable}))
            raise RegistrationFailed(resp.status, f"digest challenge for realm {realms} refused: not our "
                                                  "registrar's realm")
        return max(ours, key=lambda c: (c.algorithm == "SHA-256", "auth" in c.qop))

    def _authorized_copy(self, req: Request, resp: Response) -> Request:
        challenge = self.choose_challenge(resp, req.method)
        if self.credentials is None:
            raise RegistrationFailed(resp.status, "no credentials")
        new = Request(method=req.method, uri=req.uri, headers=req.headers.copy(), body=req.body)
        new.headers.remove("Via")
        num, method = req.cseq
        new.headers.set("CSeq", f"{num + 1} {method}")
        name = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        new.headers.set(name, self.credentials.authorization(challenge, req.method, str(req.uri)))
        if req.method == "REGISTER":
            self.registration.resent_with_credentials(num + 1)
        return new

    def _client_event(self, tx: ClientTxDriver, event: TransactionEvent) -> None:
        if isinstance(event, ResponseReceived):
            resp = event.response
            if resp.status >= 200 and not tx.final.done():
                tx.final.set_result(resp)
            self._tx_response(tx, resp)
        elif isinstance(event, TimedOut):
            if not tx.final.done():
                tx.final.set_exception(TransactionTimeout(f"no final response to {tx.request.method}"))
                tx.final.exception()  # the session (INVITE) or the awaiting request() reports it
            session = self._sessions.get(tx.request.call_id)
            if tx.request.method == "INVITE" and session is not None:
                if not self._invite_failed(session, tx, "timeout"):
                    session.transaction_timeout(tx.request)
        elif isinstance(event, Terminated):
            self._client.pop((tx.request.top_via.branch or "", tx.request.method), None)
            self._client_dest.pop(id(tx), None)

    def _server_event(self, tx: ServerTxDriver, event: TransactionEvent) -> None:
        if isinstance(event, Terminated):
            key = tx.key or server_key(tx.request)
            if self._server.get(key) is tx:
                del self._server[key]
                if tx.owner:
                    self.server_owners.release(tx.owner)
        elif isinstance(event, RequestRetransmitted):
            session = self._sessions.get(tx.request.call_id)
            if session is not None:
                session.receive(event.request)
        elif isinstance(event, (Acked, TimedOut)):
            pass  # a non-2xx final was acknowledged, or never: nothing more for the TU

    def _tx_response(self, tx: ClientTxDriver, resp: Response) -> None:
        session = self._sessions.get(resp.call_id)
        if tx.request.method == "INVITE" and session is not None and session.invite is tx.request:
            if resp.status in (401, 407) and self.credentials and not tx.request.headers.get(
                    "Authorization") and not tx.request.headers.get("Proxy-Authorization"):
                self.spawn(self._reinvite_with_auth(session, resp))
                return
            if session.failover is not None:
                if resp.status == 503 and self._invite_failed(session, tx, "503"):
                    return  # the transaction ACKed the 503; the INVITE goes to the next target
                if resp.status < 200:
                    session.failover.provisional_received(resp.status)
            session.receive(resp)
        elif tx.request.method == "INVITE" and session is not None:
            session.receive(resp)  # a re-INVITE's responses (a retransmitted 2xx: our ACK was lost)

    async def _reinvite_with_auth(self, session: InviteSession, resp: Response) -> None:
        try:
            session.invite = self._authorized_copy(session.invite, resp)
            await self._start_invite(session)
        except SipError as exc:
            reason = exc.reason if isinstance(exc, RegistrationFailed) else resp.reason
            session.receive(Response(headers=resp.headers, status=resp.status, reason=reason))
            log.info("INVITE authentication failed: %s", exc)

    # -- registration (RFC 3261 §10; the requests and outcomes are in .registration) ------------------
    @property
    def registered_expires(self) -> int | None:
        """The granted expiry of our binding, None when not registered."""
        return self.registration.expires

    @property
    def registration_status(self) -> RegistrationStatus:
        """State, expiry / next retry (``loop.time()`` clock) and the last failure of our binding."""
        return self.recovery.status if self.recovery else RegistrationStatus(RegState.UNREGISTERED)

    async def register(self, expires: int | None = None) -> int:
        """REGISTER our Contact; returns the granted expiry.

        Afterwards :class:`~.outbound.Keeper` refreshes the binding, retries failures with backoff,
        pings the flow and registers again when it dies. If this first attempt fails the error is
        raised and the keeper retries in the background all the same.
        """
        from .outbound import Keeper

        want = self.config.expires if expires is None else expires
        if self._refresh:
            self._refresh.cancel()
        loop = asyncio.get_running_loop()
        self.recovery = Recovery(backoff=Backoff(self.config.retry_base, self.config.retry_max), rng=self.rng,
                                 keepalive=self.config.keepalive, pong_timeout=self.config.pong_timeout)
        self.keeper = keeper = Keeper(self, self.recovery, want)
        self.recovery.start(loop.time())
        try:
            granted = await keeper.attempt()
        finally:
            self._refresh = loop.create_task(keeper.run())
        return granted

    async def unregister(self) -> None:
        """Remove our binding (Contact;expires=0) and stop refreshing."""
        if self._refresh:
            self._refresh.cancel()
            self._refresh = None
        if self.recovery:
            self.recovery.stop()
            self.report_registration()
        await self._register_once(0)

    def report_registration(self) -> None:
        if self.on_registration is not None:
            self.on_registration(self.registration_status)

    def register_contact(self) -> str:
        """Our Contact for REGISTER: with ``+sip.instance`` and ``reg-id`` when outbound is used (RFC 5626 §4.2)."""
        contact = str(self.contact)
        if self.config.instance_id:
            contact += f';+sip.instance="<{self.config.instance_id}>";reg-id={self.config.reg_id}'
        return contact

    async def _register_once(self, expires: int) -> int:
        granted, _, _ = await self.register_flow(expires)
        return granted

    async def register_flow(self, expires: int) -> tuple[int, Response, tuple[Addr, StreamConnection | None]]:
        """One REGISTER (answering 401 and 423) through the registrar's RFC 3263 targets in order:
        the granted expiry, the final response and the flow it went over."""
        reg = self.registration
        hop = SipUri.parse(self.config.proxy) if self.config.proxy else reg.registrar
        for _ in range(MAX_REGISTER_ATTEMPTS):
            req = reg.request(self.contact, expires, self.new_tag(), contact_text=self.register_contact())
            if self.config.instance_id:
                req.headers.add("Supported", "outbound, path")
            resp, flow = await self.request_flow(req, dest_uri=hop, timeout=64 * self.timers.t1 + 1,
                                                 transports=(self.config.transport,))
            outcome = reg.outcome(resp, self.contact, expires)
            if outcome.retry is not None:
                expires = outcome.retry
                continue
            self.register_count += 1
            if expires:
                self.flow = flow
            return outcome.granted or 0, resp, flow
        raise RegistrationFailed(423, "Interval Too Brief")

    # -- requests we originate ---------------------------------------------------------------------
    def _new_request(self, method: str, target: SipUri) -> Request:
        req = Request(method=method, uri=target)
        req.headers.add("From", self._from())
        req.headers.add("To", f"<{target}>")
        req.headers.add("Call-ID", f"{secrets.token_hex(12)}@{self.config.host}")
        req.headers.add("CSeq", f"1 {method}")
        return req

    async def options(self, target: str, timeout: float | None = None) -> Response:
        """Send OPTIONS to ``target`` (a capability query / keep-alive)."""
        return await self.request(self._new_request("OPTIONS", SipUri.parse(target)), timeout=timeout)

    async def invite(self, target: str, body: bytes, content_type: str = "application/sdp",
                     headers: list[tuple[str, str]] | None = None) -> InviteSession:
        """Send an INVITE with an SDP offer; the returned session reports every response."""
        uri = SipUri.parse(target)
        req = self._new_request("INVITE", uri)
        for name, value in self.session_headers(content_type if body else None) + list(headers or []):
            req.headers.add(name, value)
        req.body = body
        session = InviteSession(self, req, outgoing=True)
        if len(self._sessions) >= MAX_SESSIONS:
            raise SipError("too many calls")
        self._sessions[req.call_id] = session
        try:
            session.failover = Failover(await self._destinations(self._initial_hop(req), len(req.encode()) + 120))
            await self._start_invite(session)
        except SipError:
            self.forget_session(session)
            raise
        return session

    async def _start_invite(self, session: InviteSession) -> None:
        """Send the session's INVITE to its current RFC 3263 target, moving on past targets that cannot
        be connected or sent to (§4.3; later failures: :meth:`_invite_failed`)."""
        failover = session.failover
        if failover is None:
            await self.send_request(session.invite)
            return
        for _ in range(len(failover.targets)):
            target = failover.current
            if target is None:
                break
            try:
                dest = await self._open([target])
            except TransportError:
                if failover.failed("connect") is None:
                    raise
                session.invite = self._failover_copy(session.invite)
                continue
            tx = await self.send_request(session.invite, dest=dest)
            if tx.send_error is None:
                if dest[1] is not None:
                    self.spawn(self._watch_invite_flow(session, tx, dest[1]))
                return
            log.info("INVITE to %s:%s:%d could not be sent (%s)", dest[0].proto, dest[0].host, dest[0].port,
                     tx.send_error)
            tx.terminate()
            if failover.failed("transport") is None:
                raise TransportError(f"cannot send INVITE: {tx.send_error}")
            session.invite = self._failover_copy(session.invite)
        raise TransportError("no target left for the INVITE")

    @staticmethod
    def _failover_copy(req: Request) -> Request:
        """The INVITE for the next target: a new transaction (new branch, CSeq + 1), same dialog identity."""
        new = Request(method=req.method, uri=req.uri, headers=req.headers.copy(), body=req.body)
        new.headers.remove("Via")
        num, method = req.cseq
        new.headers.set("CSeq", f"{num + 1} {method}")
        return new

    def _invite_failed(self, session: InviteSession, tx: ClientTxDriver, reason: str) -> bool:
        """The initial INVITE's transaction failed at its target (``timeout`` or ``503``): True when it
        goes on to the next RFC 3263 target instead of ending the call (§4.3)."""
        failover = session.failover
        if (failover is None or session.invite is not tx.request or session.machine.cancel_requested
                or session.state not in (CallState.CALLING, CallState.PROCEEDING)):
            return False
        if failover.failed(reason) is None:
            return False
        log.info("INVITE %s at its target (%s); trying the next one", reason, session.call_id)
        session.invite = self._failover_copy(session.invite)
        self.spawn(self._restart_invite(session))
        return True

    async def _watch_invite_flow(self, session: InviteSession, tx: ClientTxDriver, conn: StreamConnection) -> None:
        """The INVITE's TCP/TLS connection closing before a final response is a transport error (§4.3)."""
        await asyncio.shield(conn.closed)
        if tx.state in (State.CALLING, State.PROCEEDING) and not tx.final.done() and session.invite is tx.request:
            if self._invite_failed(session, tx, "transport"):
                tx.terminate()   # the next target has the INVITE now; this transaction is over

    async def _restart_invite(self, session: InviteSession) -> None:
        try:
            await self._start_invite(session)
        except SipError as exc:
            log.info("INVITE failover found no target: %s", exc)
            session.transaction_timeout(session.invite)

    def replaced_session(self, value: str) -> InviteSession | None:
        """The confirmed session a ``Replaces: call-id;to-tag=…;from-tag=…`` names (RFC 3891 §3: to-tag
        is our local tag, from-tag the remote one), or None."""
        call_id, _, rest = value.partition(";")
        params = dict(p.strip().partition("=")[::2] for p in rest.split(";") if p.strip())
        session = self._dialogs.get((call_id.strip(), params.get("to-tag", ""), params.get("from-tag", "")))
        if session is None or session.state is not CallState.CONFIRMED:
            return None
        return session

    def register_dialog(self, session: InviteSession) -> None:
        assert session.dialog is not None
        self._dialogs[session.dialog.key] = session

    def forget_session(self, session: InviteSession) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]
        if session.dialog is not None:
            self._dialogs.pop(session.dialog.key, None)
