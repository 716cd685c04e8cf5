"""``softphone setup`` in a terminal, answers piped on stdin, against the lab: test registration, key
fetch, then an accounts file (0600) that ``softphone register`` uses as it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.deployment import Lab

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def setup(answers: list[str], config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softphone.cli", "setup", "--config", str(config), *extra],
                          input="".join(a + "\n" for a in answers), capture_output=True, text=True, env=ENV,
                          cwd=REPO, timeout=120)


def answers(lab: Lab, user: str, tmp_path: Path, passphrases: tuple[str, ...] = ("a long keystore passphrase 42",),
            registrar: str | None = None) -> list[str]:
    assert lab.kamailio is not None and lab.kms_ca is not None
    token = tmp_path / f"{user}.token.in"
    token.write_text(lab.tokens[user] + "\n")
    return [lab.uri(user), user, "securechorus",
            registrar or f"sip:127.0.0.1:{lab.kamailio.tls_port};transport=tls",
            str(lab.pki["ca"].cert), str(lab.pki["ua"].cert), str(lab.pki["ua"].key),
            lab.passwords[user], lab.kms_url, f"@{token}", str(lab.kms_ca), *passphrases]


def test_setup_tests_then_saves_a_working_account(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "conf" / "accounts.toml"
    out = setup(answers(lab, "carol", tmp_path, passphrases=("short", "aaaaaaaaaaaaaaaa",
                                                             "carol's long keystore passphrase")), config)
    assert out.returncode == 0, out.stderr
    assert "at least 12 characters" in out.stderr and "different characters" in out.stderr  # re-asked twice
    assert "registered sip:carol@lab.test" in out.stderr and f"saved {config}" in out.stdout
    assert "Traceback" not in out.stderr
    for path in (config, *(config.parent / f"carol.{s}" for s in ("pw", "pass", "token"))):
        assert path.stat().st_mode & 0o777 == 0o600, path
    text = config.read_text()
    assert lab.passwords["carol"] not in text and lab.tokens["carol"] not in text
    reg = subprocess.run([sys.executable, "-m", "softphone.cli", "register", "--config", str(config), "--once"],
                         capture_output=True, text=True, env=ENV, cwd=REPO, timeout=60)
    assert reg.returncode == 0 and "registered sip:carol@lab.test" in reg.stdout, reg.stderr


def test_setup_wrong_password_saves_nothing(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "accounts.toml"
    given = answers(lab, "mallory", tmp_path)
    given[7] = "not the password"
    out = setup(given, config)
    assert out.returncode == 1 and "registration" in out.stderr and "nothing was saved" in out.stderr, out.stderr
    assert not config.exists() and not (tmp_path / "mallory.pw").exists()


def test_setup_refuses_a_udp_registrar_then_stops_at_end_of_input(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "accounts.toml"
    given = answers(lab, "carol", tmp_path)[:3] + ["sip:127.0.0.1:5060"]
    out = setup(given, config)
    assert "uses TLS" in out.stderr and "input ended" in out.stderr
    assert out.returncode == 2 and "Traceback" not in out.stderr and not config.exists()
