"""KMS interface XML of 3GPP TS 33.180 Annex D (namespace ``urn:3gpp:ns:mcsecKMSInterface:1.0``).

Sans-IO: ``bytes`` in, frozen dataclasses out, and back. Covers the ``KmsResponse`` /
``SignedKmsResponse`` envelope (D.2.3), ``KmsInit`` with its ``KmsCertificate`` (D.3.2),
``KmsKeyProv`` with its ``KmsKeySet`` elements (D.3.3) and ``KmsError``.

Key material inside a ``KmsKeySet`` is either plain hex (``KeyContentType``) or wrapped under the
user's Transport Key (``EncKeyContentType`` holding one ``xenc:EncryptedKey``, TS 33.180 D.1).
We wrap with AES Key Wrap with Padding (RFC 5649, XML Encryption 1.1 identifier
``kw-aes-256-pad``), naming the TrK in ``ds:KeyInfo/ds:KeyName``.

Every malformed input raises :class:`KmsXmlError` with a one-line message that never
contains key material.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)
from lxml import etree

from kmsinterface.errors import KmsInterfaceError

NS = "urn:3gpp:ns:mcsecKMSInterface:1.0"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XENC = "http://www.w3.org/2001/04/xmlenc#"
DS = "http://www.w3.org/2000/09/xmldsig#"
KW_AES256_PAD = "http://www.w3.org/2009/xmlenc11#kw-aes-256-pad"
MAX_DOCUMENT = 1 << 20  # a key provisioning document is a few KiB; refuse anything absurd

RSK_LEN, SSK_LEN, PVT_LEN, Z_LEN, KPAK_LEN, UID_LEN = 257, 32, 65, 257, 65, 32

_NSMAP = {None: NS, "xsi": XSI}


class KmsXmlError(KmsInterfaceError, ValueError):
    """A KMS XML document is malformed or inconsistent (one-line message, no key bytes)."""


@dataclass(frozen=True)
class KmsCertificate:
    """``KmsCertificateType`` (TS 33.180 D.3.2.2): the community's public parameters."""

    kms_uri: str
    user_key_period: int
    user_key_offset: int
    pub_enc_key: bytes  # SAKKE Z, 04||X||Y (257 octets)
    pub_auth_key: bytes  # ECCSI KPAK, 04||X||Y (65 octets)
    user_id_format: str = "2"
    cert_uri: str | None = None
    issuer: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    revoked: bool | None = None
    role: str | None = "Root"
    parameter_set: int | None = None
    kms_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class KmsInitResponse:
    """``KmsResponse`` carrying ``KmsInit`` (TS 33.180 D.3.2)."""

    user_uri: str
    kms_uri: str
    time: datetime
    certificate: KmsCertificate
    client_req_url: str = ""


@dataclass(frozen=True)
class KeySet:
    """``KmsKeySetType`` (TS 33.180 D.3.3.2): one user's keys for one key period.

    ``rsk`` and ``ssk`` are secret and excluded from ``repr``.
    """

    kms_uri: str
    user_uri: str
    user_id: bytes
    key_period_no: int
    rsk: bytes = field(repr=False)
    ssk: bytes = field(repr=False)
    pvt: bytes
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    revoked: bool | None = None


@dataclass(frozen=True)
class KeyProvResponse:
    """``KmsResponse`` carrying ``KmsKeyProv`` (TS 33.180 D.3.3)."""

    user_uri: str
    kms_uri: str
    time: datetime
    key_sets: list[KeySet]
    client_req_url: str = ""


@dataclass(frozen=True)
class KmsErrorResponse:
    """``KmsResponse`` carrying ``KmsError`` (TS 33.180 D.2.3)."""

    user_uri: str
    kms_uri: str
    time: datetime
    code: int
    message: str
    client_req_url: str = ""


@dataclass(frozen=True)
class TransportKey:
    """A per-user Transport Key (TrK, TS 33.180 D.1) and the name it is referred to by."""

    key_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise KmsXmlError("transport key must be 32 octets (AES-256)")


# --------------------------------------------------------------------------- reading helpers


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _parse_root(data: bytes) -> etree._Element:
    """Parse ``data`` without DTDs, entities or network access; unwrap ``SignedKmsResponse``."""
    if not isinstance(data, (bytes, bytearray)):
        raise KmsXmlError("KMS XML must be bytes")
    if len(data) > MAX_DOCUMENT:
        raise KmsXmlError(f"KMS XML document too large ({len(data)} octets)")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(bytes(data), parser)
    except etree.XMLSyntaxError as exc:
        raise KmsXmlError(f"not well-formed XML: {exc.msg.splitlines()[0] if exc.msg else 'syntax error'}") from None
    if root.getroottree().docinfo.doctype:
        raise KmsXmlError("KMS XML must not contain a DOCTYPE")
    if root.tag == _q("SignedKmsResponse"):
        inner = root.find(_q("KmsResponse"))
        if inner is None:
            raise KmsXmlError("SignedKmsResponse without KmsResponse")
        root = inner
    if root.tag != _q("KmsResponse"):
        raise KmsXmlError(f"expected KmsResponse in namespace {NS}, got {_local(root.tag)}")
    return root


def _local(tag: object) -> str:
    text = str(tag)
    return text.split("}", 1)[1] if "}" in text else text


def _child(parent: etree._Element, name: str) -> etree._Element | None:
    return parent.find(_q(name))


def _text(parent: etree._Element, name: str) -> str:
    el = _child(parent, name)
    if el is None or el.text is None or not el.text.strip():
        raise KmsXmlError(f"{_local(parent.tag)}: missing {name}")
    return el.text.strip()


def _opt_text(parent: etree._Element, name: str) -> str | None:
    el = _child(parent, name)
    if el is None or el.text is None or not el.text.strip():
        return None
    return el.text.strip()


def _int(parent: etree._Element, name: str) -> int:
    raw = _text(parent, name)
    try:
        return int(raw)
    except ValueError:
        raise KmsXmlError(f"{_local(parent.tag)}: {name} is not an integer") from None


def _opt_int(parent: etree._Element, name: str) -> int | None:
    return None if _opt_text(parent, name) is None else _int(parent, name)


def _opt_bool(parent: etree._Element, name: str) -> bool | None:
    raw = _opt_text(parent, name)
    if raw is None:
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise KmsXmlError(f"{_local(parent.tag)}: {name} is not a boolean")


_DATETIME = re.compile(r"^(-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def parse_datetime(raw: str) -> datetime:
    """xsd:dateTime → aware UTC datetime. A value without a zone is taken as UTC (TS uses UTC)."""
    m = _DATETIME.match(raw.strip())
    if m is None:
        raise KmsXmlError(f"invalid xsd:dateTime {raw.strip()[:40]!r}")
    base, frac, zone = m.groups()
    try:
        value = datetime.fromisoformat(base + (frac[:7] if frac else "") + ("+00:00" if zone in (None, "Z") else zone))
    except ValueError:
        raise KmsXmlError(f"invalid xsd:dateTime {raw.strip()[:40]!r}") from None
    return value.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Aware (or UTC-naive) datetime → xsd:dateTime in UTC with a ``Z`` suffix, whole seconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _opt_datetime(parent: etree._Element, name: str) -> datetime | None:
    raw = _opt_text(parent, name)
    return None if raw is None else parse_datetime(raw)


def _decode_key_text(raw: str, what: str) -> bytes:
    """Key text: hex (whitespace allowed anywhere, as some KMSs wrap lines) or else base64."""
    compact = "".join(raw.split())
    if re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", compact):
        return bytes.fromhex(compact)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise KmsXmlError(f"{what}: key is neither hex nor base64") from None


def _hex_field(parent: etree._Element, name: str, length: int) -> bytes:
    value = _decode_key_text(_text(parent, name), name)
    if len(value) != length:
        raise KmsXmlError(f"{_local(parent.tag)}: {name} is {len(value)} octets, expected {length}")
    return value


def _key_field(parent: etree._Element, name: str, length: int, trk: TransportKey | None) -> bytes:
    el = _child(parent, name)
    if el is None:
        raise KmsXmlError(f"KmsKeySet: missing {name}")
    enc = el.find(f"{{{XENC}}}EncryptedKey")
    if enc is not None:
        value = _unwrap(enc, name, trk)
    else:
        if el.text is None or not el.text.strip():
            raise KmsXmlError(f"KmsKeySet: {name} is empty")
        value = _decode_key_text(el.text, name)
    if len(value) != length:
        raise KmsXmlError(f"KmsKeySet: {name} is {len(value)} octets, expected {length}")
    return value


def _unwrap(enc: etree._Element, name: str, trk: TransportKey | None) -> bytes:
    method = enc.find(f"{{{XENC}}}EncryptionMethod")
    if method is None or method.get("Algorithm") != KW_AES256_PAD:
        raise KmsXmlError(f"{name}: unsupported EncryptedKey algorithm (expected kw-aes-256-pad)")
    key_name = enc.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}KeyName")
    if trk is None:
        raise KmsXmlError(f"{name}: key is encrypted under transport key {key_name!r}; none was given")
    if key_name is not None and key_name.strip() != trk.key_id:
        raise KmsXmlError(f"{name}: encrypted under transport key {key_name.strip()!r}, not {trk.key_id!r}")
    cipher = enc.findtext(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
    if cipher is None:
        raise KmsXmlError(f"{name}: EncryptedKey without CipherValue")
    try:
        wrapped = base64.b64decode("".join(cipher.split()), validate=True)
        return aes_key_unwrap_with_padding(trk.key, wrapped)
    except (binascii.Error, ValueError):
        raise KmsXmlError(f"{name}: CipherValue is not base64") from None
    except InvalidUnwrap:
        raise KmsXmlError(f"{name}: transport key unwrap failed (wrong key or tampered)") from None


def _envelope(root: etree._Element) -> tuple[str, str, datetime, str]:
    return (
        _text(root, "UserUri"),
        _text(root, "KmsUri"),
        parse_datetime(_text(root, "Time")),
        _opt_text(root, "ClientReqUrl") or "",
    )


def _raise_kms_error(root: etree._Element) -> None:
    err = _child(root, "KmsError")
    if err is not None:
        code = _opt_text(err, "ErrorCode") or "?"
        msg = (_opt_text(err, "ErrorMsg") or "").splitlines()[0:1]
        raise KmsXmlError(f"KMS returned error {code}: {msg[0][:200] if msg else ''}".rstrip(": "))


def _message(root: etree._Element, kind: str) -> etree._Element:
    msg_el = _child(root, "KmsMessage")
    if msg_el is None:
        raise KmsXmlError("KmsResponse: missing KmsMessage")
    body = _child(msg_el, kind)
    if body is None:
        found = [_local(c.tag) for c in msg_el if isinstance(c.tag, str)]
        raise KmsXmlError(f"KmsMessage: expected {kind}, found {', '.join(found) or 'nothing'}")
    return body


def _parse_certificate(cert: etree._Element) -> KmsCertificate:
    domains_el = _child(cert, "KmsDomainList")
    domains: tuple[str, ...] = ()
    if domains_el is not None:
        domains = tuple((d.text or "").strip() for d in domains_el.findall(_q("KmsDomain")))
    role = cert.get("Role")
    if role not in (None, "Root", "External"):
        raise KmsXmlError(f"KmsCertificate: Role must be Root or External, got {role[:20]!r}")
    period = _int(cert, "UserKeyPeriod")
    if period <= 0:
        raise KmsXmlError("KmsCertificate: UserKeyPeriod must be positive")
    return KmsCertificate(
        kms_uri=_text(cert, "KmsUri"),
        user_key_period=period,
        user_key_offset=_int(cert, "UserKeyOffset"),
        pub_enc_key=_hex_field(cert, "PubEncKey", Z_LEN),
        pub_auth_key=_hex_field(cert, "PubAuthKey", KPAK_LEN),
        user_id_format=_text(cert, "UserIdFormat"),
        cert_uri=_opt_text(cert, "CertUri"),
        issuer=_opt_text(cert, "Issuer"),
        valid_from=_opt_datetime(cert, "ValidFrom"),
        valid_to=_opt_datetime(cert, "ValidTo"),
        revoked=_opt_bool(cert, "Revoked"),
        role=role,
        parameter_set=_opt_int(cert, "ParameterSet"),
        kms_domains=domains,
    )


def _find_certificate(container: etree._Element) -> etree._Element:
    cert = _child(container, "KmsCertificate")
    if cert is None:
        signed = _child(container, "SignedKmsCertificate")
        cert = None if signed is None else _child(signed, "KmsCertificate")
    if cert is None:
        raise KmsXmlError(f"{_local(container.tag)}: missing KmsCertificate")
    return cert


# --------------------------------------------------------------------------- public parsers


def parse_kms_init(data: bytes) -> KmsInitResponse:
    """Parse a KMS Initialize response (``KmsResponse/KmsMessage/KmsInit``, TS 33.180 D.3.2)."""
    root = _parse_root(data)
    _raise_kms_error(root)
    if _child(root, "UserUri") is None:
        raise KmsXmlError("KmsResponse: missing UserUri")
    user_uri = _opt_text(root, "UserUri") or ""  # empty in an offline export meant for any user
    kms_uri, time = _text(root, "KmsUri"), parse_datetime(_text(root, "Time"))
    url = _opt_text(root, "ClientReqUrl") or ""
    cert = _parse_certificate(_find_certificate(_message(root, "KmsInit")))
    return KmsInitResponse(user_uri, kms_uri, time, cert, url)


def document_kind(data: bytes) -> str:
    """``"init"``, ``"keyprov"``, ``"certcache"``, ``"error"`` or ``"certificate"`` (KmsXmlError otherwise)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(bytes(data)[:MAX_DOCUMENT + 1], parser)
    except (etree.XMLSyntaxError, TypeError):
        raise KmsXmlError("not well-formed XML") from None
    if root.tag in (_q("KmsCertificate"), _q("SignedKmsCertificate")):
        return "certificate"
    root = _parse_root(data)
    if _child(root, "KmsError") is not None:
        return "error"
    msg = _child(root, "KmsMessage")
    for kind, name in (("init", "KmsInit"), ("keyprov", "KmsKeyProv"), ("certcache", "KmsCertCache")):
        if msg is not None and _child(msg, name) is not None:
            return kind
    raise KmsXmlError("KmsResponse carries no KmsInit, KmsKeyProv or KmsCertCache")


def parse_kms_certificate(data: bytes) -> KmsCertificate:
    """Parse a bare ``KmsCertificate``/``SignedKmsCertificate`` document or a KmsInit response."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_DOCUMENT:
        raise KmsXmlError("KMS certificate must be bytes of at most 1 MiB")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(bytes(data), parser)
    except etree.XMLSyntaxError:
        raise KmsXmlError("not well-formed XML") from None
    if root.tag == _q("KmsCertificate"):
        return _parse_certificate(root)
    if root.tag == _q("SignedKmsCertificate"):
        return _parse_certificate(_find_certificate(root))
    return parse_kms_init(data).certificate


def parse_key_prov(data: bytes, transport_key: TransportKey | bytes | None = None) -> KeyProvResponse:
    """Parse a KMS KeyProvision response (``KmsKeyProv``, TS 33.180 D.3.3).

    ``transport_key`` (a :class:`TransportKey`, or raw 32 octets) unwraps ``EncKeyContentType`` keys.
    """
    trk = TransportKey("", transport_key) if isinstance(transport_key, bytes) else transport_key
    root = _parse_root(data)
    _raise_kms_error(root)
    user_uri, kms_uri, time, url = _envelope(root)
    body = _message(root, "KmsKeyProv")
    sets: list[KeySet] = []
    for el in body.findall(_q("KmsKeySet")):
        uid_raw = "".join(_text(el, "UserID").split())
        try:
            uid = bytes.fromhex(uid_raw)
        except ValueError:
            raise KmsXmlError("KmsKeySet: UserID is not hex") from None
        if len(uid) != UID_LEN:
            raise KmsXmlError(f"KmsKeySet: UserID is {len(uid)} octets, expected {UID_LEN}")
        if trk is not None and not trk.key_id:
            trk = TransportKey(_encrypted_key_name(el) or "", trk.key)
        sets.append(
            KeySet(
                kms_uri=_text(el, "KmsUri"),
                user_uri=_text(el, "UserUri"),
                user_id=uid,
                key_period_no=_int(el, "KeyPeriodNo"),
                rsk=_key_field(el, "UserDecryptKey", RSK_LEN, trk),
                ssk=_key_field(el, "UserSigningKeySSK", SSK_LEN, trk),
                pvt=_key_field(el, "UserPubTokenPVT", PVT_LEN, trk),
                valid_from=_opt_datetime(el, "ValidFrom"),
                valid_to=_opt_datetime(el, "ValidTo"),
                revoked=_opt_bool(el, "Revoked"),
            )
        )
    return KeyProvResponse(user_uri, kms_uri, time, sets, url)


def _encrypted_key_name(keyset: etree._Element) -> str | None:
    name = keyset.findtext(f".//{{{XENC}}}EncryptedKey/{{{DS}}}KeyInfo/{{{DS}}}KeyName")
    return name.strip() if name else None


def parse_kms_error(data: bytes) -> KmsErrorResponse:
    """Parse a ``KmsResponse`` carrying ``KmsError`` (as our server sends with 4xx/5xx)."""
    root = _parse_root(data)
    user_uri, kms_uri, time, url = _envelope_lenient(root)
    err = _child(root, "KmsError")
    if err is None:
        raise KmsXmlError("KmsResponse: no KmsError")
    msg = (_opt_text(err, "ErrorMsg") or "").splitlines()
    return KmsErrorResponse(user_uri, kms_uri, time, _int(err, "ErrorCode"), msg[0] if msg else "", url)


def _envelope_lenient(root: etree._Element) -> tuple[str, str, datetime, str]:
    time_raw = _opt_text(root, "Time")
    return (
        _opt_text(root, "UserUri") or "",
        _opt_text(root, "KmsUri") or "",
        parse_datetime(time_raw) if time_raw else datetime.fromtimestamp(0, UTC),
        _opt_text(root, "ClientReqUrl") or "",
    )


# --------------------------------------------------------------------------- writers


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _q(name))
    if text is not None:
        el.text = text
    return el


def _response(user_uri: str, kms_uri: str, time: datetime, url: str, doc_id: str) -> etree._Element:
    root = etree.Element(_q("KmsResponse"), nsmap=_NSMAP)
    root.set("Id", doc_id)
    root.set("Version", "1.0.0")
    _sub(root, "UserUri", user_uri)
    _sub(root, "KmsUri", kms_uri)
    _sub(root, "Time", format_datetime(time))
    _sub(root, "ClientReqUrl", url)
    return root


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _certificate_element(parent: etree._Element | None, cert: KmsCertificate) -> etree._Element:
    el = etree.Element(_q("KmsCertificate"), nsmap=_NSMAP) if parent is None else _sub(parent, "KmsCertificate")
    el.set("Version", "1.1.0")
    if cert.role:
        el.set("Role", cert.role)
    if cert.cert_uri:
        _sub(el, "CertUri", cert.cert_uri)
    _sub(el, "KmsUri", cert.kms_uri)
    if cert.issuer:
        _sub(el, "Issuer", cert.issuer)
    if cert.valid_from:
        _sub(el, "ValidFrom", format_datetime(cert.valid_from))
    if cert.valid_to:
        _sub(el, "ValidTo", format_datetime(cert.valid_to))
    if cert.revoked is not None:
        _sub(el, "Revoked", "true" if cert.revoked else "false")
    _sub(el, "UserIdFormat", cert.user_id_format)
    _sub(el, "UserKeyPeriod", str(cert.user_key_period))
    _sub(el, "UserKeyOffset", str(cert.user_key_offset))
    _sub(el, "PubEncKey", cert.pub_enc_key.hex().upper())
    _sub(el, "PubAuthKey", cert.pub_auth_key.hex().upper())
    if cert.parameter_set is not None:
        _sub(el, "ParameterSet", str(cert.parameter_set))
    if cert.kms_domains:
        domains = _sub(el, "KmsDomainList")
        for d in cert.kms_domains:
            _sub(domains, "KmsDomain", d)
    return el


def serialise_kms_init(resp: KmsInitResponse, doc_id: str = "xmldoc") -> bytes:
    """``KmsInitResponse`` → KmsResponse XML (schema-valid)."""
    root = _response(resp.user_uri, resp.kms_uri, resp.time, resp.client_req_url, doc_id)
    init = _sub(_sub(root, "KmsMessage"), "KmsInit")
    init.set("Version", "1.0.0")
    _certificate_element(init, resp.certificate)
    return _serialise(root)


def serialise_kms_certificate(cert: KmsCertificate) -> bytes:
    """A standalone ``KmsCertificate`` document (for another domain's KMS / users to import)."""
    return _serialise(_certificate_element(None, cert))


def _key_element(parent: etree._Element, name: str, value: bytes, trk: TransportKey | None) -> None:
    el = _sub(parent, name)
    if trk is None:
        el.set(f"{{{XSI}}}type", "KeyContentType")
        el.text = value.hex().upper()
        return
    el.set(f"{{{XSI}}}type", "EncKeyContentType")
    enc = etree.SubElement(el, f"{{{XENC}}}EncryptedKey", nsmap={"xenc": XENC, "ds": DS})
    etree.SubElement(enc, f"{{{XENC}}}EncryptionMethod").set("Algorithm", KW_AES256_PAD)
    info = etree.SubElement(enc, f"{{{DS}}}KeyInfo")
    etree.SubElement(info, f"{{{DS}}}KeyName").text = trk.key_id
    data = etree.SubElement(enc, f"{{{XENC}}}CipherData")
    etree.SubElement(data, f"{{{XENC}}}CipherValue").text = base64.b64encode(
        aes_key_wrap_with_padding(trk.key, value)
    ).decode("ascii")


def serialise_key_prov(
    resp: KeyProvResponse, transport_key: TransportKey | None = None, doc_id: str = "xmldoc"
) -> bytes:
    """``KeyProvResponse`` → KmsResponse XML; keys wrapped under ``transport_key`` when given."""
    root = _response(resp.user_uri, resp.kms_uri, resp.time, resp.client_req_url, doc_id)
    prov = _sub(_sub(root, "KmsMessage"), "KmsKeyProv")
    prov.set("Version", "1.0.0")
    for ks in resp.key_sets:
        el = _sub(prov, "KmsKeySet")
        el.set("Version", "1.1.0")
        _sub(el, "KmsUri", ks.kms_uri)
        _sub(el, "UserUri", ks.user_uri)
        _sub(el, "UserID", ks.user_id.hex())
        if ks.valid_from:
            _sub(el, "ValidFrom", format_datetime(ks.valid_from))
        if ks.valid_to:
            _sub(el, "ValidTo", format_datetime(ks.valid_to))
        _sub(el, "KeyPeriodNo", str(ks.key_period_no))
        if ks.revoked is not None:
            _sub(el, "Revoked", "true" if ks.revoked else "false")
        _key_element(el, "UserDecryptKey", ks.rsk, transport_key)
        _key_element(el, "UserSigningKeySSK", ks.ssk, transport_key)
        _key_element(el, "UserPubTokenPVT", ks.pvt, transport_key)
    return _serialise(root)


def serialise_kms_error(resp: KmsErrorResponse, doc_id: str = "xmldoc") -> bytes:
    """``KmsErrorResponse`` → KmsResponse XML with ``KmsError`` (message is one line)."""
    root = _response(resp.user_uri, resp.kms_uri, resp.time, resp.client_req_url, doc_id)
    err = _sub(root, "KmsError")
    _sub(err, "ErrorCode", str(resp.code))
    _sub(err, "ErrorMsg", " ".join(resp.message.split()))
    return _serialise(root)
