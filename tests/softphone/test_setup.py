"""softphone.setup: the validation and saving shared by ``softphone setup`` and the GUI wizard."""

from __future__ import annotations

from pathlib import Path

import pytest

from softphone.config import ConfigError, load_accounts
from softphone.setup import NewAccount, passphrase_problem, validate_account, write_accounts_file


@pytest.fixture
def new(tmp_path: Path) -> NewAccount:
    cert = tmp_path / "phone.pem"
    key = tmp_path / "phone.key"
    cert.write_text("cert")
    key.write_text("key")
    return NewAccount(name="alice", uri="sip:alice@example.org", registrar="sip:sip.example.org:5061;transport=tls",
                      password="sip secret", keystore_passphrase="a long keystore passphrase",
                      kms_url="https://kms.example.org:8443", kms_token="token-123", tls_cert_file=cert,
                      tls_key_file=key)


def test_valid_account_has_no_problems(new: NewAccount) -> None:
    assert validate_account(new) == {}


@pytest.mark.parametrize(("field", "value", "words"), [
    ("uri", "alice", "SIP URI"),
    ("registrar", "sip:sip.example.org", "TLS"),
    ("registrar", "", "SIP URI"),
    ("password", "", "password"),
    ("keystore_passphrase", "short", "12 characters"),
    ("keystore_passphrase", "aaaaaaaaaaaaaaaaaa", "different"),
    ("kms_url", "http://kms.example.org", "https://"),
    ("kms_token", None, "token"),
    ("tls_cert_file", None, "certificate"),
    ("profile", "nope", "nope"),
])
def test_problems_name_the_field(new: NewAccount, field: str, value: object, words: str) -> None:
    setattr(new, field, value)
    problems = validate_account(new)
    assert field in problems and words in problems[field], problems


def test_kms_xml_files_instead_of_url(new: NewAccount, tmp_path: Path) -> None:
    new.kms_url, new.kms_token = None, None
    assert "kms_url" in validate_account(new)
    new.kms_xml_files = [tmp_path / "missing.xml"]
    assert "kms_xml_files" in validate_account(new)
    (tmp_path / "init.xml").write_text("<x/>")
    new.kms_xml_files = [tmp_path / "init.xml"]
    assert validate_account(new) == {}


def test_passphrase_problem() -> None:
    assert passphrase_problem("correct horse battery staple") is None
    assert passphrase_problem("123456789012345") is not None


def test_write_accounts_file_0600_secrets_beside_it(new: NewAccount, tmp_path: Path) -> None:
    path = write_accounts_file(tmp_path / "conf" / "accounts.toml", new)
    assert path.stat().st_mode & 0o777 == 0o600
    for suffix, secret in (("pw", "sip secret"), ("pass", "a long keystore passphrase"), ("token", "token-123")):
        f = path.parent / f"alice.{suffix}"
        assert f.stat().st_mode & 0o777 == 0o600 and f.read_text().strip() == secret
        assert secret not in path.read_text()
    (account,) = load_accounts(path)
    assert account.uri == new.uri and account.password() == "sip secret" and account.kms_token() == "token-123"
    assert account.keystore == path.parent / "alice.keystore"
    # a second account is added, the same name replaced
    bob = NewAccount(**{**new.__dict__, "name": "bob", "uri": "sip:bob@example.org"})
    write_accounts_file(path, bob)
    new.display_name = "Alice A."
    write_accounts_file(path, new)
    accounts = {a.name: a for a in load_accounts(path)}
    assert set(accounts) == {"alice", "bob"} and accounts["alice"].display_name == "Alice A."


def test_write_refuses_an_invalid_account(new: NewAccount, tmp_path: Path) -> None:
    new.uri = "alice"
    with pytest.raises(ConfigError, match="uri"):
        write_accounts_file(tmp_path / "a.toml", new)
    assert not (tmp_path / "a.toml").exists()
