"""HTTPS server for the TS 33.180 Annex D KMS interface (D.2.1: every request is an HTTP POST).

Resources under ``/keymanagement/identity/v1``: ``init`` (KmsInit), ``keyprov`` (current and
next period for the token's user), ``keyprov/<URI>`` (same, URI must be the token's own) and
``keyprov/<URI>/<T>`` (the one period containing T, a 64-bit NTP timestamp in 16 hex digits);
``revocations``: the community's signed revocation list (JSON, ``kmsinterface.revocation``) for any
active user. Bearer token authentication: 401 for a missing/unknown token, 403 for a revoked user or another
user's URI; refusals are written to the audit log, pseudonymised. Errors are ``KmsResponse/KmsError``
bodies. TLS 1.2 minimum.

HTTP is aiohttp's low-level server on one asyncio event loop; this module owns the accept loop so
that it can bound what one peer may hold before any TLS work is done:

* ``max_connections`` in all and ``max_per_client`` per client address (excess connections are
  closed at accept); a socket gets TLS and HTTP state only once the client has sent something;
* one ``deadline`` (seconds) from accept to a request's complete body, covering the TLS handshake,
  the headers and the body; after each response the same deadline runs again for the next
  request on a kept-alive connection (idle time included), so neither an idle socket nor a
  byte-at-a-time client holds anything beyond it;
* key issuing, database and audit work run in a pool of ``workers`` threads; at most
  ``max_pending`` requests wait for it, beyond that the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import resource
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from crypto.identity import NTP_UNIX_OFFSET
from kms.audit import AuditError, pseudonym
from kms.issue import Issuer, KmsError, token_hash
from kms.store import StoreError
from kmsinterface.revocation import CONTENT_TYPE as REVOCATIONS_TYPE
from kmsinterface.sealed import write_private
from kmsinterface.xml import (
    KeyProvResponse,
    KmsErrorResponse,
    KmsInitResponse,
    serialise_key_prov,
    serialise_kms_error,
    serialise_kms_init,
)

# aiohttp logs malformed requests with the offending line (which may hold a bearer token) and
# every request's path (a user URI): the audit log records what the KMS serves, nothing else does.
for _name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.internal"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

BASE = "/keymanagement/identity/v1"
MAX_BODY = 64 * 1024
SERVER_NAME = "softphone-kms"


@dataclass(frozen=True)
class Limits:
    """What one peer, and all peers together, may hold of the server."""

    deadline: float = 10.0
    max_connections: int = 4096
    max_per_client: int = 64  # 0: no per-client limit (behind a reverse proxy that enforces one)
    workers: int = 4
    max_pending: int = 256


def parse_ntp_hex(text: str) -> datetime:
    """``D6B4323200000000`` (64-bit NTP, seconds in the high 32 bits) → aware UTC datetime."""
    if len(text) != 16:
        raise KmsError("time must be 16 hex digits (64-bit NTP timestamp)", 400)
    try:
        value = int(text, 16)
    except ValueError:
        raise KmsError("time must be 16 hex digits (64-bit NTP timestamp)", 400) from None
    return datetime.fromtimestamp((value >> 32) - NTP_UNIX_OFFSET + (value & 0xFFFFFFFF) / 2**32, UTC)


class _Connection:
    """Book-keeping for one accepted socket: its client, its deadline timer, its slot."""

    __slots__ = ("client", "server", "timer", "transport", "released")

    def __init__(self, server: KmsServer, client: str) -> None:
        self.server, self.client = server, client
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.released = False

    def arm(self, delay: float) -> None:
        self.disarm()
        self.timer = self.server.loop.call_later(max(delay, 0.0), self.expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def expire(self) -> None:
        self.timer = None
        self.server.stats["deadline_cut"] += 1
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        self.disarm()
        if not self.released:
            self.released = True
            self.server._release(self)


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's protocol to arm the connection deadline and free the slot on close."""

    def __init__(self, inner: Any, conn: _Connection, accepted: float) -> None:
        self.inner, self.conn, self.accepted = inner, conn, accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn.transport = transport
        self.conn.server._by_transport[transport] = self.conn
        self.conn.arm(self.accepted + self.conn.server.limits.deadline - self.conn.server.loop.time())
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn.transport is not None:
            self.conn.server._by_transport.pop(self.conn.transport, None)
        self.conn.release()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class KmsServer:
    """The KMS HTTPS endpoint for one :class:`Issuer`, run on an asyncio loop (:meth:`run`)."""

    def __init__(self, issuer: Issuer, context: ssl.SSLContext, limits: Limits | None = None) -> None:
        self.issuer, self.context, self.limits = issuer, context, limits or Limits()
        self.stats = {"accepted": 0, "refused_total": 0, "refused_client": 0, "deadline_cut": 0, "busy": 0}
        self._per_client: dict[str, int] = {}
        self._open = 0
        self._pending = 0
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(self.limits.workers, thread_name_prefix="kms-worker")
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stopped: asyncio.Event | None = None
        self._stop_requested = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()

    # listening ---------------------------------------------------------------------------------
    def bind(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Create the listening socket (before :meth:`run`); returns the bound (host, port)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock.getsockname()[:2]

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None
        return self._sock.getsockname()[:2]

    def run(self, ready: threading.Event | None = None) -> None:
        """Serve until :meth:`stop` (blocking; creates and closes its own event loop)."""
        asyncio.run(self._main(ready))

    def stop(self) -> None:
        """Ask :meth:`run` to return (from any thread or a signal handler, also before it started)."""
        self._stop_requested = True
        loop, stopped = self.loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _main(self, ready: threading.Event | None) -> None:
        assert self._sock is not None, "bind() first"
        self.loop = asyncio.get_running_loop()
        self.loop.set_exception_handler(_loop_exception)
        self._stopped = asyncio.Event()
        self._http = web.Server(self._handle, access_log=None, keepalive_timeout=self.limits.deadline,
                                lingering_time=0, max_line_size=8190, max_field_size=8190, max_headers=64)
        accept = asyncio.create_task(self._accept_loop())
        if ready is not None:
            ready.set()
        if self._stop_requested:
            self._stopped.set()
        try:
            await self._stopped.wait()
        finally:
            accept.cancel()
            for conn in list(self._by_transport.values()):
                if conn.transport is not None:
                    conn.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(accept, *self._tasks, return_exceptions=True)
            await self._http.shutdown(1.0)

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                sock, addr = await self.loop.sock_accept(self._sock)
            except OSError:  # EMFILE and the like: back off instead of spinning
                await asyncio.sleep(0.1)
                continue
            client = str(addr[0])
            limits = self.limits
            if self._open >= limits.max_connections:
                self.stats["refused_total"] += 1
                _drop(sock)
                continue
            if limits.max_per_client and self._per_client.get(client, 0) >= limits.max_per_client:
                self.stats["refused_client"] += 1
                _drop(sock)
                continue
            self._open += 1
            self._per_client[client] = self._per_client.get(client, 0) + 1
            self.stats["accepted"] += 1
            conn = _Connection(self, client)
            task = asyncio.create_task(self._start_tls(sock, conn, self.loop.time()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _readable(self, sock: socket.socket, timeout: float) -> bool:
        """Wait (bounded) until the peer has sent something, without any TLS or HTTP state yet:
        asyncio's TLS layer allocates a 256 KiB buffer per connection, an idle socket costs none."""
        ready: asyncio.Future[None] = self.loop.create_future()

        def _wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self.loop.add_reader(sock.fileno(), _wake)
        try:
            await asyncio.wait_for(ready, max(timeout, 0.0))
            return True
        except TimeoutError:
            return False
        finally:
            self.loop.remove_reader(sock.fileno())

    async def _start_tls(self, sock: socket.socket, conn: _Connection, accepted: float) -> None:
        try:
            if not await self._readable(sock, accepted + self.limits.deadline - self.loop.time()):
                self.stats["deadline_cut"] += 1
                _drop(sock)
                conn.release()
                return
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                first = b"?"
            if not first:  # closed before saying anything
                sock.close()
                conn.release()
                return
            await self.loop.connect_accepted_socket(
                lambda: _Guard(self._http(), conn, accepted), sock, ssl=self.context,
                ssl_handshake_timeout=max(accepted + self.limits.deadline - self.loop.time(), 0.1))
        except Exception:  # noqa: BLE001 - a failed handshake (timeout, TLS alert, reset) ends only this socket
            sock.close()
            conn.release()
        except asyncio.CancelledError:
            sock.close()
            conn.release()
            raise

    def _release(self, conn: _Connection) -> None:
        self._open -= 1
        left = self._per_client.get(conn.client, 1) - 1
        if left > 0:
            self._per_client[conn.client] = left
        else:
            self._per_client.pop(conn.client, None)

    # HTTP --------------------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = self._by_transport.get(request.transport) if request.transport is not None else None
        try:
            return await self._respond(request)
        finally:
            if conn is not None:
                conn.arm(self.limits.deadline)  # the next request on this connection gets a fresh deadline

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        url = _url(request)
        if request.method != "POST":
            await _read_body(request)
            return self._error(405, "KMS requests are HTTP POST (TS 33.180 D.2.1)", url)
        length = request.content_length
        if length is not None and length > MAX_BODY:
            resp = self._error(413, f"request body must be at most {MAX_BODY} octets", url)
            resp.force_close()
            return resp
        if await _read_body(request) is None:
            resp = self._error(413, f"request body must be at most {MAX_BODY} octets", url)
            resp.force_close()
            return resp
        conn = self._by_transport.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.disarm()  # the request is complete; the worker's time is not the client's
        if self._pending >= self.limits.max_pending:
            self.stats["busy"] += 1
            return self._error(503, "KMS busy, retry later", url, {"Retry-After": "1"})
        self._pending += 1
        try:
            status, body, extra = await self.loop.run_in_executor(
                self._pool, self._dispatch, request.raw_path, request.headers.get("Authorization", ""), url)
        finally:
            self._pending -= 1
        return _reply(status, body, extra)

    def _error(self, status: int, message: str, url: str, extra: dict[str, str] | None = None,
               user_uri: str = "") -> web.Response:
        status, body, headers = self._error_body(status, message, url, user_uri)
        return _reply(status, body, {**headers, **(extra or {})})

    def _error_body(self, status: int, message: str, url: str, user_uri: str = "") -> tuple[int, bytes, dict]:
        body = serialise_kms_error(KmsErrorResponse(
            user_uri, self.issuer.community.kms_uri, datetime.now(UTC), status, message, url))
        extra = {"WWW-Authenticate": 'Bearer realm="kms", error="invalid_token"'} if status == 401 else {}
        if status == 405:
            extra["Allow"] = "POST"
        return status, body, extra

    def _dispatch(self, raw_path: str, auth: str, url: str) -> tuple[int, bytes, dict]:
        """Worker thread: authenticate, issue, audit; every outcome is (status, body, headers)."""
        try:
            return self._serve(raw_path, auth, url)
        except StoreError:  # before KmsError: storage and audit failures are KmsErrors too
            return self._error_body(503, "KMS storage unavailable", url)
        except AuditError:
            return self._error_body(503, "KMS audit log unavailable", url)
        except KmsError as exc:
            if exc.status in (401, 403):
                try:
                    self._audit_refusal(raw_path, auth, exc)
                except (StoreError, AuditError):
                    pass  # still refused; the failing audit log makes every successful request 503
            return self._error_body(exc.status, str(exc), url)
        except Exception:  # noqa: BLE001 - one request's failure must not reach the client as a traceback
            return self._error_body(500, "internal KMS error", url)

    def _serve(self, raw_path: str, auth: str, url: str) -> tuple[int, bytes, dict]:
        issuer = self.issuer
        path = raw_path.split("?", 1)[0]
        if not path.startswith(BASE + "/"):
            raise KmsError("no such KMS resource", 404)
        parts = path[len(BASE) + 1:].split("/")
        if parts[0] not in ("init", "keyprov", "revocations") or (parts[0] != "keyprov" and len(parts) > 1) \
                or len(parts) > 3:
            raise KmsError("no such KMS resource", 404)
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KmsError("missing bearer token", 401)
        user = issuer.authenticate(token.strip())
        now = datetime.now(UTC)
        c = issuer.community
        if parts[0] == "init":
            body = serialise_kms_init(KmsInitResponse(user.uri, c.kms_uri, now, c.certificate(), url))
            issuer.audit.append("kms.init", user=pseudonym(user.salt, user.uri))
            return 200, body, {}
        if parts[0] == "revocations":
            return 200, issuer.revocation_list(), {"Content-Type": REVOCATIONS_TYPE}
        if len(parts) >= 2 and unquote(parts[1]) != user.uri:
            raise KmsError("a user may only fetch its own keys", 403)
        when = parse_ntp_hex(parts[2]) if len(parts) == 3 else None
        sets = issuer.provision(user, when, only_period=when is not None)
        body = serialise_key_prov(KeyProvResponse(user.uri, c.kms_uri, now, sets, url), issuer.transport_key(user))
        return 200, body, {}

    def _audit_refusal(self, raw_path: str, auth: str, exc: KmsError) -> None:
        """``request.refused``: status, reason, resource, and the users involved only by pseudonym."""
        store = self.issuer.store
        scheme, _, token = auth.partition(" ")
        user = store.user_by_token(token_hash(token.strip())) if scheme.lower() == "bearer" and token.strip() else None
        parts = raw_path.split("?", 1)[0][len(BASE) + 1:].split("/") if raw_path.startswith(BASE + "/") else [""]
        target_ref = None
        if len(parts) >= 2 and parts[0] == "keyprov":
            target_uri = unquote(parts[1])
            if user is None or target_uri != user.uri:
                target = store.get_user(target_uri)
                target_ref = pseudonym(target.salt, target.uri) if target is not None else "unknown"
        self.issuer.audit.append(
            "request.refused", status=exc.status, reason=str(exc),
            resource=parts[0] if parts[0] in ("init", "keyprov", "revocations") else "other",
            user=pseudonym(user.salt, user.uri) if user is not None else None, target=target_ref)


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A peer's broken connection is routine; anything else is one line naming only its class."""
    exc = context.get("exception")
    if isinstance(exc, (OSError, TimeoutError, asyncio.CancelledError)):
        return
    name = exc.__class__.__name__ if exc is not None else "event loop error"
    print(f"softphone-kms: internal error: {name}", file=sys.stderr, flush=True)


def _drop(sock: socket.socket) -> None:
    """Close at once with a reset, so the refused peer learns it without a FIN/TIME_WAIT dance."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


async def _read_body(request: web.BaseRequest) -> bytes | None:
    """The body, or ``None`` when it is longer than :data:`MAX_BODY` (chunked bodies included)."""
    data = await request.content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        return None
    while data and not request.content.at_eof():
        more = await request.content.read(MAX_BODY + 1 - len(data))
        if not more:
            break
        data += more
        if len(data) > MAX_BODY:
            return None
    return data


def _url(request: web.BaseRequest) -> str:
    host = request.headers.get("Host", "")
    return f"https://{host}{request.raw_path}" if host else request.raw_path


def _reply(status: int, body: bytes, extra: dict[str, str]) -> web.Response:
    headers = {"Content-Type": "application/xml", "Cache-Control": "no-store", "Server": SERVER_NAME, **extra}
    return web.Response(status=status, body=body, headers=headers)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` (bounded by the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Server context: TLS 1.2 minimum (1.3 preferred by OpenSSL), no compression, no renegotiation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise KmsError(f"cannot load TLS certificate/key: {exc.__class__.__name__}", 500) from None
    return ctx


def self_signed_certificate(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    """Create (once) ``tls-cert.pem``/``tls-key.pem`` in ``directory`` for ``hosts`` (ECDSA P-256)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def start(issuer: Issuer, host: str, port: int, context: ssl.SSLContext,
          limits: Limits | None = None) -> tuple[KmsServer, threading.Thread]:
    """Bind and serve in a background thread (for embedding and tests); returns (server, thread).

    Stop with ``server.stop()``, then ``thread.join()`` and ``server.close()``.
    """
    server = KmsServer(issuer, context, limits)
    server.bind(host, port)
    ready = threading.Event()
    thread = threading.Thread(target=server.run, args=(ready,), name="kms-https", daemon=True)
    thread.start()
    ready.wait(10)
    return server, thread
