"""HTTPS server for the TS 33.180 Annex D KMS interface (D.2.1: every request is an HTTP POST).

Resources under ``/keymanagement/identity/v1``: ``init`` (KmsInit), ``keyprov`` (current and
next period for the token's user), ``keyprov/<URI>`` (same, URI must be the token's own) and
``keyprov/<URI>/<T>`` (the one period containing T, a 64-bit NTP timestamp in 16 hex digits).
``revocations`` is the community's signed revocation list (JSON, ``kmsinterface.revocation``) for
any active user. Bearer token authentication: 401 for a missing/unknown token, 403 for a revoked
user or another user's URI; refusals are audited (``request.refused``, users by pseudonym only).
Errors are ``KmsResponse/KmsError`` bodies. TLS 1.2 minimum; the TLS handshake runs
in the connection's worker thread so a slow client cannot stall the accept loop.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

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

BASE = "/keymanagement/identity/v1"
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 30.0


def parse_ntp_hex(text: str) -> datetime:
    """``D6B4323200000000`` (64-bit NTP, seconds in the high 32 bits) → aware UTC datetime."""
    if len(text) != 16:
        raise KmsError("time must be 16 hex digits (64-bit NTP timestamp)", 400)
    try:
        value = int(text, 16)
    except ValueError:
        raise KmsError("time must be 16 hex digits (64-bit NTP timestamp)", 400) from None
    return datetime.fromtimestamp((value >> 32) - NTP_UNIX_OFFSET + (value & 0xFFFFFFFF) / 2**32, UTC)


class KmsRequestHandler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 keep-alive, POST only."""

    protocol_version = "HTTP/1.1"
    server_version = "softphone-kms"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: KmsHttpsServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Requests are recorded in the audit log, not on stderr (paths carry personal data)."""

    def _reply(self, status: int, body: bytes, extra: dict[str, str] | None = None,
               content_type: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, user_uri: str = "") -> None:
        body = serialise_kms_error(KmsErrorResponse(
            user_uri, self.server.issuer.community.kms_uri, datetime.now(UTC), status, message, self._url()))
        extra = {"WWW-Authenticate": 'Bearer realm="kms", error="invalid_token"'} if status == 401 else {}
        if status == 405:
            extra["Allow"] = "POST"
        self._reply(status, body, extra)

    def _url(self) -> str:
        host = self.headers.get("Host", "") if self.headers else ""
        return f"https://{host}{self.path}" if host else self.path

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._drain()
        self._error(405, "KMS requests are HTTP POST (TS 33.180 D.2.1)")

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _drain(self) -> bool:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            return False
        if length:
            self.rfile.read(length)
        return True

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if not self._drain():
            self._error(413, f"request body must be at most {MAX_BODY} octets")
            return
        try:
            self._dispatch()
        except StoreError:
            self._error(503, "KMS storage unavailable")
        except AuditError:
            raise  # not a refusal of the request: the connection ends, as for any internal failure
        except KmsError as exc:
            if exc.status in (401, 403):
                try:
                    self._audit_refusal(exc)
                except (StoreError, AuditError):
                    pass  # still refused
            self._error(exc.status, str(exc))

    def _audit_refusal(self, exc: KmsError) -> None:
        """``request.refused``: status, reason, resource, and the user only by pseudonym."""
        store = self.server.issuer.store
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        user = store.user_by_token(token_hash(token.strip())) if scheme.lower() == "bearer" and token.strip() else None
        path = self.path.split("?", 1)[0]
        resource = path[len(BASE) + 1:].split("/")[0] if path.startswith(BASE + "/") else ""
        self.server.issuer.audit.append(
            "request.refused", status=exc.status, reason=str(exc),
            resource=resource if resource in ("init", "keyprov", "revocations") else "other",
            user=pseudonym(user.salt, user.uri) if user is not None else None)

    def _dispatch(self) -> None:
        issuer = self.server.issuer
        path = self.path.split("?", 1)[0]
        if not path.startswith(BASE + "/"):
            raise KmsError("no such KMS resource", 404)
        parts = path[len(BASE) + 1:].split("/")
        if parts[0] not in ("init", "keyprov", "revocations") or (parts[0] != "keyprov" and len(parts) > 1) \
                or len(parts) > 3:
            raise KmsError("no such KMS resource", 404)
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KmsError("missing bearer token", 401)
        user = issuer.authenticate(token.strip())
        now = datetime.now(UTC)
        c = issuer.community
        if parts[0] == "init":
            body = serialise_kms_init(KmsInitResponse(user.uri, c.kms_uri, now, c.certificate(), self._url()))
            issuer.audit.append("kms.init", user=pseudonym(user.salt, user.uri))
            self._reply(200, body)
            return
        if parts[0] == "revocations":
            self._reply(200, issuer.revocation_list(), content_type=REVOCATIONS_TYPE)
            return
        if len(parts) >= 2 and unquote(parts[1]) != user.uri:
            raise KmsError("a user may only fetch its own keys", 403)
        when = parse_ntp_hex(parts[2]) if len(parts) == 3 else None
        sets = issuer.provision(user, when, only_period=when is not None)
        body = serialise_key_prov(KeyProvResponse(user.uri, c.kms_uri, now, sets, self._url()),
                                  issuer.transport_key(user))
        self._reply(200, body)


class KmsHttpsServer(ThreadingHTTPServer):
    """Thread-per-connection HTTPS server bound to one :class:`Issuer`."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], issuer: Issuer, context: ssl.SSLContext) -> None:
        self.issuer = issuer
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, KmsRequestHandler, bind_and_activate=False)
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def handle_error(self, request: object, client_address: object) -> None:
        """A broken connection (TLS failure, reset, timeout) only ends that connection."""


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
    from cryptography.x509.oid import NameOID

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
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def start(issuer: Issuer, host: str, port: int, context: ssl.SSLContext) -> tuple[KmsHttpsServer, threading.Thread]:
    """Bind and serve in a background thread (for embedding and tests); returns (server, thread)."""
    server = KmsHttpsServer((host, port), issuer, context)
    thread = threading.Thread(target=server.serve_forever, name="kms-https", daemon=True)
    thread.start()
    return server, thread
