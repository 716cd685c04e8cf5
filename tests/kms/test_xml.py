"""kmsinterface.xml: TS 33.180 Annex D XML parsed from the published samples and written schema-valid."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from kmsinterface.xml import (
    KeyProvResponse,
    KeySet,
    KmsCertificate,
    KmsErrorResponse,
    KmsInitResponse,
    KmsXmlError,
    TransportKey,
    parse_key_prov,
    parse_kms_certificate,
    parse_kms_error,
    parse_kms_init,
    serialise_key_prov,
    serialise_kms_certificate,
    serialise_kms_error,
    serialise_kms_init,
)


@pytest.fixture(scope="module")
def schema(vectors_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(vectors_dir / "kms_xml" / "schema-standalone.xsd")))


def _samples(vectors_dir: Path, kind: str) -> list[Path]:
    files = sorted((vectors_dir / "streamwide" / "xml").glob(f"*_{kind}*.xml"))
    files += sorted((vectors_dir / "kms_xml").glob(f"test_{'init' if kind == 'init' else 'key_prov'}_response.xml"))
    assert files
    return files


def test_parse_reference_init(vectors_dir: Path, rfc_vectors: dict) -> None:
    resp = parse_kms_init((vectors_dir / "kms_xml" / "test_init_response.xml").read_bytes())
    assert resp.user_uri == "alice@org.com"
    assert resp.kms_uri == "localhost:8080"
    assert resp.time == datetime(2021, 5, 10, 11, 23, 2, tzinfo=UTC)
    cert = resp.certificate
    assert (cert.kms_uri, cert.user_key_period, cert.user_key_offset, cert.user_id_format) == (
        "localhost:8080", 2592000, 0, "2")
    assert cert.role == "Root"
    assert len(cert.pub_enc_key) == 257 and cert.pub_enc_key[0] == 4
    assert cert.pub_auth_key.hex().upper().startswith("0450D4670BDE75244F28D283")


def test_parse_reference_key_prov(vectors_dir: Path) -> None:
    resp = parse_key_prov((vectors_dir / "kms_xml" / "test_key_prov_response.xml").read_bytes())
    assert resp.user_uri == "alice@org.com"
    [ks] = resp.key_sets
    assert ks.key_period_no == 625
    assert ks.user_id.hex() == "060c5cddd13b87be1e37d3ff091101684b88aadef26c409a8b49c8da9dd81a05"
    assert ks.ssk.hex().upper() == "D31C6FD21791D92D0BC721B50125C2B83450F4727EC5A845853AD30E023C34F3"
    assert (len(ks.rsk), len(ks.pvt)) == (257, 65)


def test_streamwide_samples_match_keysets_json(vectors_dir: Path, streamwide_keysets: dict) -> None:
    """Every Streamwide/Alea key provisioning sample parses to the keys listed in keysets.json."""
    checked = 0
    by_uri = {
        uri: (name, user)
        for name, community in streamwide_keysets.items() if isinstance(community, dict)
        for uri, user in community.get("users", {}).items()
    }
    for path in sorted((vectors_dir / "streamwide" / "xml").glob("*keyprov*.xml")):
        resp = parse_key_prov(path.read_bytes())
        for ks in resp.key_sets:
            if ks.user_uri not in by_uri:
                continue
            _, user = by_uri[ks.user_uri]
            assert ks.user_id.hex() == user["uid"].lower()
            assert ks.ssk.hex() == user["SSK"].lower()
            assert ks.pvt.hex() == user["PVT"].lower()
            assert ks.rsk.hex() == user["RSK"].lower()
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("kind", ["init"])
def test_streamwide_init_samples(vectors_dir: Path, streamwide_keysets: dict, kind: str) -> None:
    kpaks = {c["KPAK"].lower() for c in streamwide_keysets.values() if isinstance(c, dict) and "KPAK" in c}
    for path in _samples(vectors_dir, kind):
        cert = parse_kms_init(path.read_bytes()).certificate
        assert len(cert.pub_enc_key) == 257 and len(cert.pub_auth_key) == 65
        if "streamwide" in path.parts[-2] and path.name.startswith("streamwide"):
            assert cert.pub_auth_key.hex() in kpaks


def _init() -> KmsInitResponse:
    cert = KmsCertificate(
        kms_uri="kms.example.org", user_key_period=2592000, user_key_offset=0,
        pub_enc_key=b"\x04" + bytes(range(256)), pub_auth_key=b"\x04" + bytes(64),
        cert_uri="kms.example.org/cert", issuer="Example IT", parameter_set=1,
        valid_from=datetime(2026, 1, 1, tzinfo=UTC), kms_domains=("example.org",),
    )
    return KmsInitResponse("sip:alice@example.org", "kms.example.org",
                           datetime(2026, 11, 28, 12, 0, tzinfo=UTC), cert,
                           "https://kms.example.org/keymanagement/identity/v1/init")


def _keyprov() -> KeyProvResponse:
    sets = [
        KeySet("kms.example.org", "sip:alice@example.org", bytes([n]) * 32, 1500 + n,
               rsk=b"\x04" + os.urandom(256), ssk=os.urandom(32), pvt=b"\x04" + os.urandom(64),
               valid_from=datetime(2026, 11, 1, tzinfo=UTC))
        for n in range(2)
    ]
    return KeyProvResponse("sip:alice@example.org", "kms.example.org",
                           datetime(2026, 11, 28, tzinfo=UTC), sets, "https://x/keyprov")


def test_init_round_trip_is_schema_valid(schema: etree.XMLSchema) -> None:
    resp = _init()
    data = serialise_kms_init(resp)
    schema.assertValid(etree.fromstring(data))
    assert parse_kms_init(data) == resp


def test_certificate_document_round_trip(schema: etree.XMLSchema) -> None:
    cert = _init().certificate
    data = serialise_kms_certificate(cert)
    schema.assertValid(etree.fromstring(data))
    assert parse_kms_certificate(data) == cert
    assert parse_kms_certificate(serialise_kms_init(_init())) == cert


def test_key_prov_plain_round_trip(schema: etree.XMLSchema) -> None:
    resp = _keyprov()
    data = serialise_key_prov(resp)
    schema.assertValid(etree.fromstring(data))
    assert parse_key_prov(data) == resp


def test_key_prov_encrypted_round_trip(schema: etree.XMLSchema) -> None:
    resp = _keyprov()
    trk = TransportKey("trk-1", os.urandom(32))
    data = serialise_key_prov(resp, trk)
    schema.assertValid(etree.fromstring(data))
    for ks in resp.key_sets:
        for secret in (ks.rsk, ks.ssk):
            assert secret.hex().encode() not in data.lower()
    assert parse_key_prov(data, trk) == resp
    assert parse_key_prov(data, trk.key) == resp  # raw key: name taken from the document
    with pytest.raises(KmsXmlError, match="none was given"):
        parse_key_prov(data)
    with pytest.raises(KmsXmlError, match="unwrap failed"):
        parse_key_prov(data, TransportKey("trk-1", os.urandom(32)))
    with pytest.raises(KmsXmlError, match="not 'other'"):
        parse_key_prov(data, TransportKey("other", trk.key))


def test_tampered_ciphertext_rejected() -> None:
    trk = TransportKey("t", os.urandom(32))
    data = serialise_key_prov(_keyprov(), trk)
    root = etree.fromstring(data)
    cv = root.find(".//{http://www.w3.org/2001/04/xmlenc#}CipherValue")
    raw = bytearray(__import__("base64").b64decode(cv.text))
    raw[5] ^= 1
    cv.text = __import__("base64").b64encode(bytes(raw)).decode()
    with pytest.raises(KmsXmlError, match="unwrap failed"):
        parse_key_prov(etree.tostring(root), trk)


def test_error_round_trip(schema: etree.XMLSchema) -> None:
    err = KmsErrorResponse("", "kms.example.org", datetime(2026, 1, 1, tzinfo=UTC), 403,
                           "user is revoked", "https://x/keyprov")
    data = serialise_kms_error(err)
    schema.assertValid(etree.fromstring(data))
    assert parse_kms_error(data) == err
    with pytest.raises(KmsXmlError, match="KMS returned error 403: user is revoked"):
        parse_key_prov(data)


def test_repr_hides_secrets() -> None:
    ks = _keyprov().key_sets[0]
    text = repr(ks) + repr(TransportKey("t", b"\xab" * 32))
    assert ks.ssk.hex() not in text and ks.rsk.hex() not in text and "abab" not in text


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:100], "not well-formed"),
        (lambda d: b"<x/>", "expected KmsResponse"),
        (lambda d: d.replace(b"<KeyPeriodNo>625", b"<KeyPeriodNo>six"), "KeyPeriodNo is not an integer"),
        (lambda d: d.replace(b"<UserSigningKeySSK>D3", b"<UserSigningKeySSK>"), "UserSigningKeySSK is 31"),
        (lambda d: d.replace(b"<UserID>06", b"<UserID>zz"), "UserID is not hex"),
        (lambda d: d.replace(b"KmsKeyProv", b"KmsCertCache"), "expected KmsKeyProv"),
        (lambda d: d.replace(b"<Time>2021-05-17T13:25:16", b"<Time>yesterday"), "invalid xsd:dateTime"),
        (lambda d: b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]>' + d.split(b"?>", 1)[1], "DOCTYPE"),
        (lambda d: d + b" " * (1 << 20), "too large"),
    ],
)
def test_malformed_key_prov_one_line_error(vectors_dir: Path, mutate, message: str) -> None:
    data = (vectors_dir / "kms_xml" / "test_key_prov_response.xml").read_bytes()
    with pytest.raises(KmsXmlError, match=message) as info:
        parse_key_prov(mutate(data))
    assert "\n" not in str(info.value)
    assert "D31C6FD2" not in str(info.value)


def test_hex_with_whitespace_and_base64_accepted(vectors_dir: Path) -> None:
    data = (vectors_dir / "kms_xml" / "test_key_prov_response.xml").read_bytes()
    ref = parse_key_prov(data).key_sets[0]
    wrapped = data.replace(b"<UserSigningKeySSK>D31C6FD21791D92D", b"<UserSigningKeySSK>\n  D31C6FD2 1791D92D\n")
    assert parse_key_prov(wrapped).key_sets[0].ssk == ref.ssk
    b64 = __import__("base64").b64encode(ref.ssk)
    as_b64 = data.replace(ref.ssk.hex().upper().encode(), b64)
    assert parse_key_prov(as_b64).key_sets[0].ssk == ref.ssk


def test_our_parser_and_schema_agree_on_streamwide_samples(vectors_dir: Path, schema: etree.XMLSchema) -> None:
    """The vendor samples are schema-valid and parse; the abstract-typed legacy sample is parsed leniently."""
    for path in sorted((vectors_dir / "streamwide" / "xml").glob("*.xml")):
        schema.assertValid(etree.parse(str(path)))
        data = path.read_bytes()
        parsed = parse_kms_init(data) if path.name.endswith("_init.xml") else parse_key_prov(data)
        assert parsed.kms_uri
    legacy = (vectors_dir / "kms_xml" / "test_key_prov_response.xml")
    assert not schema.validate(etree.parse(str(legacy)))  # key elements lack xsi:type="KeyContentType"
    assert parse_key_prov(legacy.read_bytes()).key_sets


def test_document_kind(vectors_dir: Path) -> None:
    from kmsinterface.xml import document_kind

    assert document_kind((vectors_dir / "kms_xml" / "test_init_response.xml").read_bytes()) == "init"
    assert document_kind((vectors_dir / "kms_xml" / "test_key_prov_response.xml").read_bytes()) == "keyprov"
    assert document_kind(serialise_kms_certificate(_init().certificate)) == "certificate"
    assert document_kind(serialise_kms_error(KmsErrorResponse("", "k", datetime.now(UTC), 1, "x"))) == "error"
    with pytest.raises(KmsXmlError, match="not well-formed"):
        document_kind(b"\x00garbage")


def test_offline_init_without_user_parses_but_missing_elements_fail() -> None:
    resp = dataclasses.replace(_init(), user_uri="")
    assert parse_kms_init(serialise_kms_init(resp)).user_uri == ""
    data = serialise_kms_init(resp)
    with pytest.raises(KmsXmlError, match="missing UserUri"):
        parse_kms_init(data.replace(b"<UserUri></UserUri>", b""))
    with pytest.raises(KmsXmlError, match="missing KmsUri"):
        parse_kms_init(data.replace(b"<KmsUri>kms.example.org</KmsUri>\n  <Time>", b"<Time>"))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_documents_only_raise_kms_xml_error(vectors_dir: Path, data: st.DataObject) -> None:
    """Any byte-level corruption of a sample either still parses or raises KmsXmlError (never anything else)."""
    name = data.draw(st.sampled_from(["test_key_prov_response.xml", "test_init_response.xml"]))
    doc = bytearray((vectors_dir / "kms_xml" / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(doc) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            doc[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del doc[pos:pos + data.draw(st.integers(1, 40))]
        else:
            doc[pos:pos] = doc[pos:pos + data.draw(st.integers(1, 40))]
    parse = parse_key_prov if "key_prov" in name else parse_kms_init
    try:
        parse(bytes(doc))
    except KmsXmlError as exc:
        assert "\n" not in str(exc)
