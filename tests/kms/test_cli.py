"""``softphone-kms`` end to end through its real command line (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from kmsinterface.xml import TransportKey, parse_key_prov, parse_kms_certificate, parse_kms_init
from tests.kms.helpers import PASSPHRASE, run_kms

ALICE = "sip:alice@example.org"


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli") / "kms"
    r = run_kms("init", "--dir", str(d), "--uri", "kms.example.org", "--period", "86400")
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def schema(vectors_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(vectors_dir / "kms_xml" / "schema-standalone.xsd")))


def test_user_lifecycle_and_offline_provisioning(community: Path, tmp_path: Path, schema: etree.XMLSchema) -> None:
    d = str(community)
    r = run_kms("user", "add", ALICE, "--dir", d, "--token-out", str(tmp_path / "tok"),
                "--transport-key", "--trk-out", str(tmp_path / "trk"))
    assert r.returncode == 0, r.stderr
    token = (tmp_path / "tok").read_text().strip()
    assert len(token) >= 40 and token not in r.stdout
    assert (tmp_path / "trk").stat().st_mode & 0o777 == 0o600
    key_id, key_hex = (tmp_path / "trk").read_text().split()
    listed = run_kms("user", "list", "--dir", d)
    assert f"{ALICE}\tactive\tkeysets=0\ttrk={key_id}" in listed.stdout

    out = tmp_path / "prov.xml"
    r = run_kms("provision", "--dir", d, "--user", ALICE, "--time", "2026-01-15T12:00:00Z", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    schema.assertValid(etree.parse(str(out)))
    prov = parse_key_prov(out.read_bytes(), TransportKey(key_id, bytes.fromhex(key_hex)))
    n = (1768478400 + 2208988800) // 86400
    assert [k.key_period_no for k in prov.key_sets] == [n, n + 1]

    r = run_kms("export-init", "--dir", d, "--out", str(tmp_path / "init.xml"), "--user", ALICE)
    assert r.returncode == 0, r.stderr
    schema.assertValid(etree.parse(str(tmp_path / "init.xml")))
    cert = parse_kms_init((tmp_path / "init.xml").read_bytes()).certificate
    assert (cert.kms_uri, cert.user_key_period) == ("kms.example.org", 86400)
    r = run_kms("export-cert", "--dir", d, "--out", str(tmp_path / "cert.xml"))
    assert r.returncode == 0, r.stderr
    schema.assertValid(etree.parse(str(tmp_path / "cert.xml")))
    ext = parse_kms_certificate((tmp_path / "cert.xml").read_bytes())
    assert ext.role == "External" and ext.pub_auth_key == cert.pub_auth_key

    export = run_kms("audit", "export", "--dir", d, ALICE)  # the URI as in `user add URI`
    assert export.returncode == 0, export.stderr
    events = [rec["event"] for rec in json.loads(export.stdout)["records"]]
    assert events == ["user.add", "key.issue", "key.issue", "key.provision"]

    assert run_kms("user", "revoke", ALICE, "--dir", d).returncode == 0
    r = run_kms("provision", "--dir", d, "--user", ALICE, "--out", str(out))
    assert r.returncode == 1 and "revoked" in r.stderr

    r = run_kms("user", "erase", ALICE, "--dir", d)
    assert r.returncode == 0 and "pseudonym" in r.stdout
    assert ALICE not in run_kms("user", "list", "--dir", d).stdout
    log = (community / "audit.log").read_text()
    assert "alice" not in log and token not in log and key_hex not in log
    r = run_kms("audit", "export", "--dir", d, "--user", ALICE)
    assert r.returncode == 1 and "no longer linkable" in r.stderr
    assert run_kms("audit", "verify", "--dir", d).returncode == 0


def test_audit_tamper_detected_by_cli(tmp_path: Path) -> None:
    d = tmp_path / "kms"
    assert run_kms("init", "--dir", str(d), "--uri", "kms.example.org").returncode == 0
    for u in ("sip:a@x.org", "sip:b@x.org", "sip:c@x.org"):
        assert run_kms("user", "add", u, "--dir", str(d)).returncode == 0
    log = d / "audit.log"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[2] + lines[3])  # delete one record
    r = run_kms("audit", "verify", "--dir", str(d))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "line 2" in r.stderr
    log.write_text("".join(lines).replace("user.add", "user.adx", 1))  # edit one record
    r = run_kms("audit", "verify", "--dir", str(d))
    assert r.returncode == 1 and "hash chain broken" in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["user", "list", "--dir", "{d}", "--passphrase-file", "{pw}"], 1, "wrong passphrase"),
        (["user", "list", "--dir", "{tmp}/none"], 1, "not a KMS directory"),
        (["user", "add", "not a uri", "--dir", "{d}"], 2, "not a user identity"),
        (["user", "add", "alice", "--dir", "{d}"], 2, "give a SIP URI such as sip:alice@example.org"),
        (["user", "add", "sip:alice", "--dir", "{d}"], 2, "not a user identity"),
        (["audit", "export", "--dir", "{d}"], 2, "audit export --dir DIR URI"),
        (["user", "revoke", "sip:ghost@x.org", "--dir", "{d}"], 1, "no user sip:ghost@x.org"),
        (["serve", "--dir", "{d}", "--listen", "nonsense"], 1, "HOST:PORT"),
        (["serve", "--dir", "{d}", "--listen", "127.0.0.1:0", "--cert", "{pw}"], 1, "both --cert and --key"),
        (["provision", "--dir", "{d}", "--user", "sip:a@x.org", "--time", "soon", "--out", "{tmp}/x"], 1, "ISO 8601"),
        (["user", "add", "--dir", "{d}", "sip:t@x.org", "--transport-key"], 1, "--trk-out"),
        (["init", "--dir", "{d}", "--uri", "kms.example.org"], 1, "already holds"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line(community: Path, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong " + PASSPHRASE)
    pw.chmod(0o600)
    r = run_kms(*[a.format(d=community, tmp=tmp_path, pw=pw) for a in args])
    assert r.returncode == code
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_same_cli_on_both_databases(tmp_path: Path, db_url: str) -> None:
    """``init --db URL`` records the database; later commands (and serve) use it without repeating it."""
    d = str(tmp_path / "kms")
    assert run_kms("init", "--dir", d, "--uri", "kms.example.org", "--db", db_url).returncode == 0
    assert run_kms("user", "add", ALICE, "--dir", d, "--token-out", str(tmp_path / "tok")).returncode == 0
    r = run_kms("provision", "--dir", d, "--user", ALICE, "--out", str(tmp_path / "p.xml"))
    assert r.returncode == 0, r.stderr
    assert f"{ALICE}\tactive\tkeysets=2" in run_kms("user", "list", "--dir", d).stdout
    assert not (tmp_path / "kms" / "kms.sqlite3").exists()  # the --db given at init, not the default file
    if not db_url.startswith("postgresql"):
        assert Path(db_url).stat().st_size > 0


def test_offline_kms_files_drive_mikey_create_and_inspect(tmp_path: Path) -> None:
    """export-init + provision for two users → ``softphone mikey create`` → ``inspect`` verifies and decrypts."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.kms.helpers import kms_env

    d = str(tmp_path / "kms")
    bob = "sip:bob@example.org"
    assert run_kms("init", "--dir", d, "--uri", "kms.example.org").returncode == 0
    for uri, name in ((ALICE, "a"), (bob, "b")):
        assert run_kms("user", "add", uri, "--dir", d, "--token-out", str(tmp_path / f"{name}.tok")).returncode == 0
        assert run_kms("provision", "--dir", d, "--user", uri, "--out", str(tmp_path / f"{name}.xml")).returncode == 0
    assert run_kms("export-init", "--dir", d, "--out", str(tmp_path / "init.xml")).returncode == 0
    entry = "import sys; from softphone.cli import main; sys.exit(main(sys.argv[1:]))"

    def phone(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", entry, "mikey", *args], capture_output=True, text=True,
                              cwd=REPO, env=kms_env(), timeout=60)

    created = phone("create", "--kms-init", str(tmp_path / "init.xml"), "--keyprov", str(tmp_path / "a.xml"),
                    "--from", ALICE, "--to", bob)
    assert created.returncode == 0, created.stderr
    (tmp_path / "msg.txt").write_text(created.stdout)
    ok = phone("inspect", str(tmp_path / "msg.txt"), "--kms-init", str(tmp_path / "init.xml"),
               "--keyprov", str(tmp_path / "b.xml"), "--from", ALICE, "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["verified"] and report["valid"] and report["responder"] == bob
    wrong = phone("inspect", str(tmp_path / "msg.txt"), "--kms-init", str(tmp_path / "init.xml"),
                  "--keyprov", str(tmp_path / "a.xml"), "--from", ALICE)  # alice's keys cannot open bob's message
    assert wrong.returncode == 1
