"""Weak passphrases are refused when a keystore or a KMS community is created (never when one is opened)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kmsinterface.sealed import SecretsError, check_passphrase_strength
from softphone.cli import main
from softphone.keys.keystore import Keystore, KeystoreError
from tests.kms.helpers import run_kms


@pytest.mark.parametrize("weak", [b"pw", b"secret", b"password1", b"aaaaaaaaaaaaaaaa", b"123412341234"])
def test_weak_passphrase_refused(weak: bytes) -> None:
    with pytest.raises(SecretsError, match="too weak"):
        check_passphrase_strength(weak)


@pytest.mark.parametrize("strong", [b"correct horse battery staple", b"phone secret", b"Zq8-vT3_pW9xLm2"])
def test_strong_passphrase_accepted(strong: bytes) -> None:
    check_passphrase_strength(strong)


def test_keystore_create_refuses_weak_passphrase(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="keystore passphrase too weak") as info:
        Keystore.create(tmp_path / "ks", b"pw")
    assert "\n" not in str(info.value) and not (tmp_path / "ks").exists()


def test_cli_keys_import_refuses_weak_passphrase_for_a_new_keystore(tmp_path: Path, capsys) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    pw.chmod(0o600)
    assert main(["keys", "import", "--keystore", str(tmp_path / "ks"), "--passphrase-file", str(pw),
                 str(tmp_path / "none.xml")]) == 2  # a configuration error (exit-code table)
    err = capsys.readouterr().err
    assert "keystore passphrase too weak" in err and err.count("\n") == 1
    assert not (tmp_path / "ks").exists()


def test_kms_init_refuses_weak_passphrase(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("kms\n")
    pw.chmod(0o600)
    r = run_kms("init", "--dir", str(tmp_path / "kms"), "--uri", "kms.example.org", "--passphrase-file", str(pw))
    assert r.returncode == 1 and "KMS master passphrase too weak" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "kms" / "master.sealed").exists()


def test_keystore_header_with_absurd_scrypt_cost_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    Keystore.create(path, b"a strong test passphrase", n_log2=12)
    blob = bytearray(path.read_bytes())
    blob[8] = 22  # a planted header asking scrypt for 4 GiB
    path.write_bytes(bytes(blob))
    t0 = time.perf_counter()
    with pytest.raises(KeystoreError, match="out-of-range scrypt parameters"):
        Keystore.open(path, b"a strong test passphrase")
    assert time.perf_counter() - t0 < 0.5
