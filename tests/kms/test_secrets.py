"""kmsinterface.sealed: scrypt + AES-GCM sealing, passphrase sources, 0600 files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kmsinterface.sealed import DataKey, SecretsError, read_passphrase, seal, unseal, write_private


def test_seal_round_trip_and_binding() -> None:
    blob = seal(b"master secret", b"pass", b"ctx")
    assert b"master secret" not in blob
    assert unseal(blob, b"pass", b"ctx") == b"master secret"
    with pytest.raises(SecretsError, match="wrong passphrase"):
        unseal(blob, b"wrong", b"ctx")
    with pytest.raises(SecretsError, match="wrong passphrase"):
        unseal(blob, b"pass", b"other context")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SecretsError, match="wrong passphrase or the sealed file was modified"):
        unseal(bytes(tampered), b"pass", b"ctx")
    with pytest.raises(SecretsError, match="not a sealed"):
        unseal(b"garbage", b"pass", b"ctx")


def test_data_key() -> None:
    key = DataKey(os.urandom(32))
    ct = key.encrypt(b"rsk bytes", b"a")
    assert key.decrypt(ct, b"a") == b"rsk bytes"
    with pytest.raises(SecretsError, match="failed authentication"):
        key.decrypt(ct, b"b")
    assert "hidden" in repr(key)


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text("correct horse\n")
    f.chmod(0o644)
    with pytest.raises(SecretsError, match="readable by others"):
        read_passphrase(f)
    f.chmod(0o600)
    assert read_passphrase(f) == b"correct horse"
    monkeypatch.setenv("SOFTPHONE_KMS_PASSPHRASE", "from env")
    assert read_passphrase(None) == b"from env"
    monkeypatch.delenv("SOFTPHONE_KMS_PASSPHRASE")
    with pytest.raises(SecretsError, match="no passphrase"):
        read_passphrase(None)
    with pytest.raises(SecretsError, match="cannot read passphrase file"):
        read_passphrase(tmp_path / "missing")


def test_write_private(tmp_path: Path) -> None:
    write_private(tmp_path / "s", b"x")
    write_private(tmp_path / "s", b"y")
    assert (tmp_path / "s").read_bytes() == b"y"
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_derive_key_is_deterministic_per_salt() -> None:
    from kmsinterface.sealed import derive_key

    a, b = derive_key(b"pw", b"s" * 16, 12), derive_key(b"pw", b"s" * 16, 12)
    assert a.decrypt(b.encrypt(b"x", b"c"), b"c") == b"x"
    with pytest.raises(SecretsError, match="failed authentication"):
        derive_key(b"pw", b"t" * 16, 12).decrypt(a.encrypt(b"x", b"c"), b"c")
    with pytest.raises(SecretsError, match="empty passphrase"):
        derive_key(b"", b"s" * 16)
