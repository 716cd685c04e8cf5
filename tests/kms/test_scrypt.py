"""scrypt cost: N >= 2^17 for the KMS master and a new keystore; stored parameters bounded on reading."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kmsinterface.sealed import MAGIC, SecretsError, derive_key, seal, unseal
from softphone.keys.keystore import Keystore
from tests.kms.helpers import make_community


def test_master_sealed_with_n_at_least_2_17(tmp_path: Path) -> None:
    make_community(tmp_path / "kms")
    blob = (tmp_path / "kms" / "master.sealed").read_bytes()
    assert blob.startswith(MAGIC) and blob[8] >= 17 and (blob[9], blob[10]) == (8, 1)


def test_new_keystore_with_n_at_least_2_17(tmp_path: Path) -> None:
    Keystore.create(tmp_path / "ks", b"a long keystore passphrase")
    assert (tmp_path / "ks").read_bytes()[8] >= 17


def test_weak_parameters_refused_for_new_blobs() -> None:
    with pytest.raises(SecretsError, match="at least 2\\^17"):
        seal(b"secret", b"pass", b"ctx", n_log2=12)


@pytest.mark.parametrize(("n_log2", "r", "p"), [(22, 8, 1), (18, 16, 1), (25, 1, 1), (17, 33, 1), (17, 8, 5)])
def test_stored_parameters_bounded_on_reading(n_log2: int, r: int, p: int) -> None:
    blob = bytearray(seal(b"secret", b"pass", b"ctx"))
    blob[8:11] = bytes([n_log2, r, p])  # a planted header asking for GiBs of memory
    t0 = time.perf_counter()
    with pytest.raises(SecretsError, match="out-of-range scrypt parameters"):
        unseal(bytes(blob), b"pass", b"ctx")
    with pytest.raises(SecretsError, match="out-of-range scrypt parameters"):
        derive_key(b"pass", os.urandom(16), n_log2) if r == 8 and p == 1 else unseal(bytes(blob), b"pass", b"ctx")
    assert time.perf_counter() - t0 < 0.5  # refused before any scrypt work
