"""``softphone-kms audit show``: a readable table, filters, JSON, and URIs only after unsealing the master."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kms.cli import main
from kms.issue import Issuer, init_community
from tests.kms.helpers import KMS_URI, PASSPHRASE

ALICE, MALLORY = "sip:alice@example.org", "sip:mallory@example.org"


@pytest.fixture
def community(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOFTPHONE_KMS_PASSPHRASE", PASSPHRASE)
    directory = tmp_path / "kms"
    issuer = Issuer(init_community(directory, KMS_URI, PASSPHRASE.encode()))
    try:
        for uri in (ALICE, MALLORY):
            issuer.add_user(uri)
        user = issuer.store.get_user(ALICE)
        assert user is not None
        issuer.provision(user)
        issuer.revoke(MALLORY)
    finally:
        issuer.close()
    monkeypatch.delenv("SOFTPHONE_KMS_PASSPHRASE")
    return directory


def show(capsys: pytest.CaptureFixture[str], directory: Path, *args: str) -> tuple[int, str, str]:
    code = main(["audit", "show", "--dir", str(directory), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_pseudonymised_by_default(community: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = show(capsys, community)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "EVENT", "USER", "DETAILS"]
    events = [line.split()[3] for line in lines[1:]]
    assert events == ["master.create", "user.add", "user.add", "key.issue", "key.issue", "key.provision",
                      "user.revoke"]
    assert "example.org" not in out.replace(KMS_URI, "")       # no user URI without the passphrase
    assert "periods=" in out and "kms_uri=kms.example.org" in out


def test_filters_and_json(community: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = show(capsys, community, "--event", "key", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["event"] for r in records] == ["key.issue", "key.issue", "key.provision"]
    alice_ref = records[0]["user"]
    code, out, _ = show(capsys, community, "--user", alice_ref, "--event", "user.add", "--json")
    assert [json.loads(line)["user"] for line in out.splitlines()] == [alice_ref]
    code, out, err = show(capsys, community, "--since", "2999-01-01")
    assert code == 0 and out == "" and "no matching" in err
    code, out, _ = show(capsys, community, "--since", "1h", "--event", "master.create")
    assert len(out.splitlines()) == 2
    code, _, err = show(capsys, community, "--since", "yesterday")
    assert code == 1 and "--since" in err


def test_uris_only_with_the_passphrase(community: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = show(capsys, community, "--reveal")
    assert code == 1 and out == "" and "passphrase" in err.lower()
    code, out, err = show(capsys, community, "--user", MALLORY)
    assert code == 1 and out == ""
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    code, out, err = show(capsys, community, "--reveal", "--passphrase-file", str(wrong))
    assert code == 1 and out == "" and "unseal" in err

    monkeypatch.setenv("SOFTPHONE_KMS_PASSPHRASE", PASSPHRASE)
    code, out, err = show(capsys, community, "--reveal")
    assert code == 0, err
    assert any(line.split()[3:5] == ["user.revoke", MALLORY] for line in out.splitlines()[1:]), out
    code, out, err = show(capsys, community, "--user", MALLORY, "--reveal", "--json")
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["user.add", "user.revoke"]
    assert all(json.loads(line)["user"] == MALLORY for line in out.splitlines())


def test_with_the_passphrase_the_chain_is_verified(community: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = show(capsys, community)
    assert code == 0 and "not verified" in err                     # without it: said so on stderr
    monkeypatch.setenv("SOFTPHONE_KMS_PASSPHRASE", PASSPHRASE)
    code, _, err = show(capsys, community)
    assert code == 0 and "not verified" not in err
    log = community / "audit.log"
    log.write_text(log.read_text().replace('"user.revoke"', '"user.add"'))   # an edited record
    code, out, err = show(capsys, community)
    assert code == 1 and out == "" and "edited" in err, err
