"""HTTPS client for the TS 33.180 Annex D KMS interface, and the phone's key refresh policy.

Requests are ``POST`` with ``Authorization: Bearer`` and an empty body (D.2.1); the user URI in
``keyprov/<URI>`` is percent-encoded and the time is 16 upper-case hex digits of a 64-bit NTP
timestamp, as in the TS example (KMS.md §1). TLS 1.2 minimum with certificate verification.

Trust on first provisioning: the first :func:`refresh` from a KMS URL pins its TLS public key and
its community (the KmsCertificate, Z and KPAK) in the keystore. Later, a KMS presenting another
TLS key is refused before the bearer token is sent, and one presenting other community keys is
refused before anything is stored (:class:`KmsTrustChanged`). Only the user accepts a change:
``softphone keys trust`` (``refresh(..., trust=True)``) or importing the new KmsCertificate.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.identity import ntp_seconds
from kmsinterface.revocation import RevocationList, RevocationListError, verify_revocation_list
from kmsinterface.xml import (
    KeyProvResponse,
    KmsCertificate,
    KmsInitResponse,
    KmsXmlError,
    TransportKey,
    parse_key_prov,
    parse_kms_error,
    parse_kms_init,
)
from softphone.keys.errors import KeysError
from softphone.keys.keystore import Keystore, KeystoreError, KmsPin, public_parameters

BASE = "/keymanagement/identity/v1"
MAX_RESPONSE = 1 << 20


class KmsClientError(KeysError):
    """The KMS refused the request or answered something unusable; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KmsUnreachable(KmsClientError):
    """No answer from the KMS (connection refused, timeout, TLS failure)."""


ACCEPT_HINT = ("if the KMS operator really changed it, accept it with 'softphone keys trust' "
               "(or import its new KmsCertificate with 'softphone keys import')")


class KmsTrustChanged(KeysError):
    """The KMS presented a TLS key or community keys other than those pinned at first provisioning.

    Nothing was replaced (and for a TLS key, no token was sent). ``origin`` is the KMS ``host:port``.
    """

    def __init__(self, message: str, origin: str) -> None:
        super().__init__(message)
        self.origin = origin


class KmsCertificateChanged(KmsTrustChanged):
    """The KMS's TLS certificate carries another public key than the one pinned for its URL."""


class KmsKeysChanged(KmsTrustChanged):
    """The KMS serves another community (KMS URI) or other public keys (Z, KPAK) than the pinned ones."""


def spki_sha256(der_certificate: bytes) -> str:
    """Hex SHA-256 of a DER certificate's SubjectPublicKeyInfo (a pin survives renewal with the same key)."""
    public = x509.load_der_x509_certificate(der_certificate).public_key()
    return hashlib.sha256(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def ntp_hex(when: datetime) -> str:
    """``when`` → 64-bit NTP timestamp as 16 upper-case hex digits (fraction zero)."""
    return f"{ntp_seconds(when.timestamp()) << 32:016X}"


def read_transport_key(path: str | Path) -> TransportKey:
    """Read a TrK file written by ``softphone-kms user add --trk-out`` (``KEY_ID HEX``, mode 0600)."""
    p = Path(path).expanduser()
    try:
        if p.stat().st_mode & 0o077:
            raise KmsClientError(f"transport key file {p} is readable by others (chmod 600)")
        key_id, key_hex = p.read_text().split()
        return TransportKey(key_id, bytes.fromhex(key_hex))
    except OSError as exc:
        raise KmsClientError(f"cannot read transport key file {p}: {exc.strerror}") from None
    except (ValueError, KmsXmlError):
        raise KmsClientError(f"transport key file {p} must hold 'KEY_ID HEX' with a 32-octet key") from None


@dataclass
class KmsClient:
    """One KMS: ``base_url`` like ``https://kms.example.org:8443``; ``token`` is the bearer credential."""

    base_url: str
    token: str = field(repr=False)
    cafile: str | Path | None = None
    transport_key: TransportKey | None = None
    timeout: float = 10.0
    pinned_spki: str | None = None  # hex SHA-256 of the TLS SubjectPublicKeyInfo the server must present
    last_spki: str | None = field(default=None, init=False)  # what the server presented last

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise KmsClientError(f"KMS URL must be https://HOST[:PORT], got {self.base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 443
        prefix = parts.path.rstrip("/")
        self._prefix = prefix if prefix.endswith(BASE) else prefix + BASE
        try:
            ctx = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (OSError, ssl.SSLError):
            raise KmsClientError(f"cannot load KMS CA file {self.cafile}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ctx = ctx

    @property
    def origin(self) -> str:
        """``host:port`` of the KMS URL (IPv6 hosts in brackets): what the keystore pins."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def _check_pin(self, conn: http.client.HTTPSConnection) -> None:
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        if der is None:
            raise KmsUnreachable(f"KMS {self.origin} presented no TLS certificate")
        self.last_spki = spki_sha256(der)
        if self.pinned_spki is not None and self.last_spki != self.pinned_spki:
            raise KmsCertificateChanged(
                f"KMS {self.origin} presented a different TLS key (sha256 {self.last_spki[:16]}…) than the one "
                f"pinned at first provisioning ({self.pinned_spki[:16]}…): refused, nothing sent or replaced; "
                + ACCEPT_HINT, self.origin)

    def _post(self, path: str) -> bytes:
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._ctx)
        try:
            conn.connect()
            self._check_pin(conn)  # before the bearer token goes out
            conn.request("POST", self._prefix + path, body=b"", headers={
                "Authorization": f"Bearer {self.token}", "Content-Type": "application/xml",
                "Accept": "application/xml"})
            resp = conn.getresponse()
            body = resp.read(MAX_RESPONSE + 1)
        except ssl.SSLError as exc:
            raise KmsUnreachable(f"TLS with KMS {self._host}:{self._port} failed: {exc.reason or 'error'}") from None
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise KmsUnreachable(f"KMS {self._host}:{self._port} unreachable: "
                                 f"{getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
        finally:
            conn.close()
        if len(body) > MAX_RESPONSE:
            raise KmsClientError("KMS response too large")
        if resp.status != 200:
            try:
                detail = parse_kms_error(body).message
            except KmsXmlError:
                detail = resp.reason
            raise KmsClientError(f"KMS refused the request: HTTP {resp.status} {detail}", resp.status)
        return body

    def revocations(self, kpak_for: dict[str, bytes]) -> RevocationList:
        """The community's revocation list, verified under the trusted KMS's KPAK (``kpak_for``)."""
        try:
            return verify_revocation_list(self._post("/revocations"), kpak_for)
        except RevocationListError as exc:
            raise KmsClientError(f"revocation list from KMS refused: {exc}") from None

    def init(self) -> KmsInitResponse:
        """KMS Initialize (D.3.2): the KMS certificate and the URI the KMS knows us by."""
        try:
            return parse_kms_init(self._post("/init"))
        except KmsXmlError as exc:
            raise KmsClientError(f"bad KmsInit from KMS: {exc}") from None

    def key_prov(self, user_uri: str | None = None, when: datetime | None = None) -> KeyProvResponse:
        """KMS KeyProvision (D.3.3): current+next period, or the one period containing ``when``."""
        path = "/keyprov"
        if user_uri is not None:
            path += "/" + quote(user_uri, safe="")
            if when is not None:
                path += "/" + ntp_hex(when)
        elif when is not None:
            raise KmsClientError("a key provisioning time needs the user URI")
        try:
            return parse_key_prov(self._post(path), self.transport_key)
        except KmsXmlError as exc:
            raise KmsClientError(f"bad KmsKeyProv from KMS: {exc}") from None


def refresh_revocations(keystore: Keystore, client: KmsClient) -> RevocationList:
    """Fetch, verify and keep the KMS's signed revocation list (KmsClientError/KeystoreError if refused)."""
    rl = client.revocations(keystore.kpaks())
    keystore.set_revocation_list(rl)
    return rl


@dataclass(frozen=True)
class RefreshResult:
    fetched: list[int]
    warning: str | None = None
    pinned: KmsPin | None = None     # set when this refresh pinned (or, trusting, re-pinned) the KMS


def _fingerprint(cert: KmsCertificate) -> str:
    return hashlib.sha256(cert.pub_auth_key + cert.pub_enc_key).hexdigest()[:16]


def refresh(keystore: Keystore, client: KmsClient, user_uri: str, *, force: bool = False,
            when: datetime | None = None, trust: bool = False) -> RefreshResult:
    """Fetch keys when the next period's set is not yet held (or ``force``).

    If the KMS is unreachable but keys for the current period are cached, the phone keeps working:
    the result carries a warning instead of raising. Refused or invalid responses always raise.
    A KMS whose TLS key or community keys differ from those pinned in the keystore raises
    :class:`KmsTrustChanged` and nothing is replaced, unless ``trust`` (the user accepted the change:
    the new TLS key and community keys are pinned, key sets under the old community keys dropped).
    """
    when = when or datetime.now(UTC)
    known = [c.kms_uri for c in keystore.certificates()]
    pin = keystore.kms_pin(client.origin)
    client.pinned_spki = None if trust or pin is None else pin.tls_spki_sha256
    try:
        if not force and known and not any(keystore.needs_refresh(user_uri, k, when) for k in known):
            return RefreshResult([])
        init = client.init()
        cert = init.certificate
        if not trust:
            if pin is not None and pin.kms_uri != cert.kms_uri:
                raise KmsKeysChanged(
                    f"KMS {client.origin} now serves community {cert.kms_uri}, not {pin.kms_uri} as pinned at "
                    f"first provisioning: refused, nothing replaced; " + ACCEPT_HINT, client.origin)
            if cert.kms_uri in known and public_parameters(keystore.certificate(cert.kms_uri)) != \
                    public_parameters(cert):
                raise KmsKeysChanged(
                    f"KMS {client.origin} serves other public keys (Z/KPAK {_fingerprint(cert)}…) for community "
                    f"{cert.kms_uri} than the trusted ones ({_fingerprint(keystore.certificate(cert.kms_uri))}…): "
                    f"refused, nothing replaced; " + ACCEPT_HINT, client.origin)
        prov = client.key_prov(user_uri)
    except KmsUnreachable as exc:
        try:
            held = keystore.current(user_uri, when)
        except KeystoreError:
            raise exc from None
        return RefreshResult([], f"{exc}; using cached keys for period {held.key_period_no}")
    if cert.kms_uri not in known or trust:
        keystore.add_certificate(cert)
    summaries = keystore.import_key_prov(prov)
    pinned = None
    assert client.last_spki is not None
    new_pin = KmsPin(client.origin, cert.kms_uri, client.last_spki)
    if new_pin != pin:
        keystore.pin_kms(new_pin)
        pinned = new_pin
    fetched = [s.key_period_no for s in summaries]
    try:
        refresh_revocations(keystore, client)
    except KmsUnreachable as exc:
        return RefreshResult(fetched, f"revocation list not fetched: {exc}", pinned=pinned)
    return RefreshResult(fetched, pinned=pinned)
