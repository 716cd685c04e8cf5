"""`softphone-kms group` refusals: one line, non-zero exit, no traceback (no network: --no-deliver)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PASS = "a kms passphrase of some length"


def _kms(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kms.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "SOFTPHONE_KMS_PASSPHRASE": PASS}


def test_group_errors_are_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    accounts = tmp_path / "gms.toml"
    accounts.write_text('[[account]]\nname = "gms"\nuri = "sip:gms@example.org"\n')
    out = _kms("group", "create", "sip:team@example.org", "--member", "sip:a@example.org", "--dir", str(tmp_path),
               "--gms", str(accounts), "--no-deliver", env=env)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "needs a keystore" in out.stderr
    out = _kms("group", "list", "--dir", str(tmp_path), "--gms", str(tmp_path / "none.toml"), env=env)
    assert out.returncode == 1 and "no account file" in out.stderr and out.stderr.count("\n") == 1
    out = _kms("group", "create", "sip:team@example.org", "--dir", str(tmp_path), "--gms", str(accounts), env=env)
    assert out.returncode == 2 and "--member" in out.stderr
