"""``softphone-kms serve`` over real HTTPS: paths, authorisation, schema-valid responses, TrK wrapping."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote

import pytest
from lxml import etree

from crypto.identity import ntp_seconds
from kms.issue import Issuer, open_community
from kmsinterface.xml import KmsXmlError, TransportKey, parse_key_prov, parse_kms_error, parse_kms_init
from lab.kms import KmsServer
from tests.kms.helpers import KMS_URI, PASSPHRASE, make_community, run_kms, start_kms

ALICE, BOB = "sip:alice@example.org", "sip:bob@example.org"


@pytest.fixture(scope="module")
def schema(vectors_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(vectors_dir / "kms_xml" / "schema-standalone.xsd")))


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("kms") / "community"
    users = make_community(d, users=(ALICE, BOB, "sip:rev@example.org"), trk_users=("sip:tk@example.org",))
    server = start_kms(d)
    assert run_kms("user", "revoke", "sip:rev@example.org", "--dir", str(d)).returncode == 0  # while serving
    try:
        yield server, users, d
    finally:
        server.stop()


def test_init_is_schema_valid(kms, schema: etree.XMLSchema) -> None:
    server, users, _ = kms
    status, body, _ = server.post("/init", users[ALICE].token)
    assert status == 200
    schema.assertValid(etree.fromstring(body))
    init = parse_kms_init(body)
    assert init.user_uri == ALICE and init.certificate.kms_uri == KMS_URI
    assert init.client_req_url.endswith("/keymanagement/identity/v1/init")


def test_keyprov_current_and_next_and_stable(kms, schema: etree.XMLSchema) -> None:
    server, users, _ = kms
    status, body, headers = server.post("/keyprov", users[ALICE].token)
    assert status == 200 and headers["Content-Type"] == "application/xml"
    schema.assertValid(etree.fromstring(body))
    first = parse_key_prov(body)
    n = (ntp_seconds() - 0) // 2592000
    assert [k.key_period_no for k in first.key_sets] == [n, n + 1]
    assert {k.user_uri for k in first.key_sets} == {ALICE}
    status, body, _ = server.post("/keyprov/" + quote(ALICE, safe=""), users[ALICE].token)
    assert status == 200 and parse_key_prov(body).key_sets == first.key_sets
    status, body, _ = server.post(f"/keyprov/{ALICE}", users[ALICE].token)  # unencoded, as sw_mikey_sakke
    assert status == 200 and parse_key_prov(body).key_sets == first.key_sets


def test_keyprov_by_time(kms) -> None:
    server, users, _ = kms
    n = ntp_seconds() // 2592000
    t = f"{(n * 2592000 + 5) << 32:016x}"  # lower-case hex accepted too
    status, body, _ = server.post(f"/keyprov/{quote(BOB, safe='')}/{t}", users[BOB].token)
    assert status == 200
    assert [k.key_period_no for k in parse_key_prov(body).key_sets] == [n]
    status, body, _ = server.post(f"/keyprov/{quote(BOB, safe='')}/{(n + 5) * 2592000 << 32:016X}", users[BOB].token)
    assert status == 400 and "provisioning window" in parse_kms_error(body).message
    status, body, _ = server.post(f"/keyprov/{quote(BOB, safe='')}/XYZ", users[BOB].token)
    assert status == 400


@pytest.mark.parametrize(
    ("path", "token", "status", "message"),
    [
        ("/keyprov", None, 401, "missing bearer token"),
        ("/keyprov", "forged-token", 401, "invalid bearer token"),
        ("/init", "", 401, "missing bearer token"),
        ("/keyprov/" + quote(BOB, safe=""), "ALICE", 403, "only fetch its own keys"),
        ("/keyprov", "REV", 403, "revoked"),
        ("/nothing", "ALICE", 404, "no such KMS resource"),
        ("/init/extra", "ALICE", 404, "no such KMS resource"),
    ],
)
def test_refusals(kms, schema: etree.XMLSchema, path: str, token: str | None, status: int, message: str) -> None:
    server, users, _ = kms
    if token == "REV":
        token = users["sip:rev@example.org"].token
    elif token == "ALICE":
        token = users[ALICE].token
    got, body, headers = server.post(path, token)
    assert got == status
    schema.assertValid(etree.fromstring(body))
    assert message in parse_kms_error(body).message
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(KmsXmlError, match=f"KMS returned error {status}"):
        parse_key_prov(body)


def test_refusals_are_audited_pseudonymised(kms) -> None:
    server, users, d = kms
    alice, rev = users[ALICE], users["sip:rev@example.org"]
    assert server.post("/keyprov", "forged-token")[0] == 401
    assert server.post("/init", None)[0] == 401
    assert server.post("/keyprov", rev.token)[0] == 403
    assert server.post("/keyprov/" + quote(BOB, safe=""), alice.token)[0] == 403
    assert server.post("/keyprov/" + quote("sip:nobody@example.org", safe=""), alice.token)[0] == 403
    issuer = Issuer(open_community(d, PASSPHRASE.encode()))
    try:
        refs = {u: issuer.user_ref(u) for u in (ALICE, BOB, "sip:rev@example.org")}
        refused = [r for r in issuer.audit.records() if r["event"] == "request.refused"][-5:]
    finally:
        issuer.close()
    assert [(r["status"], r["reason"], r["resource"], r["user"], r["target"]) for r in refused] == [
        (401, "invalid bearer token", "keyprov", None, None),
        (401, "missing bearer token", "init", None, None),
        (403, "user is revoked", "keyprov", refs["sip:rev@example.org"], None),
        (403, "a user may only fetch its own keys", "keyprov", refs[ALICE], refs[BOB]),
        (403, "a user may only fetch its own keys", "keyprov", refs[ALICE], "unknown"),
    ]
    log = (d / "audit.log").read_text()
    for secret in ("alice", "bob", "nobody", "forged-token", alice.token, rev.token):
        assert secret not in log


def test_get_is_405(kms) -> None:
    server, users, _ = kms
    status, _, headers = server.post("/keyprov", users[ALICE].token, method="GET")
    assert status == 405 and headers["Allow"] == "POST"


def test_transport_key_wraps_key_material(kms, schema: etree.XMLSchema) -> None:
    server, users, _ = kms
    new = users["sip:tk@example.org"]
    status, body, _ = server.post("/keyprov", new.token)
    assert status == 200
    schema.assertValid(etree.fromstring(body))
    assert b"EncKeyContentType" in body
    with pytest.raises(KmsXmlError, match="encrypted under transport key"):
        parse_key_prov(body)
    sets = parse_key_prov(body, new.transport_key).key_sets
    for ks in sets:
        assert ks.ssk.hex().upper().encode() not in body and ks.rsk.hex().upper().encode() not in body
    with pytest.raises(KmsXmlError, match="unwrap failed"):
        parse_key_prov(body, TransportKey(new.transport_key.key_id, bytes(32)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_refused_and_server_survives(kms) -> None:
    server: KmsServer = kms[0]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    import socket

    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(raw):
                pass
    status, _, _ = server.post("/keyprov", kms[1][ALICE].token)  # server still serving after the failure
    assert status == 200


def test_audit_verifies_after_serving(kms) -> None:
    _, _, d = kms
    result = run_kms("audit", "verify", "--dir", str(d))
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
