"""``softphone keys import|fetch|list`` through the real CLI entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softphone.cli import main
from tests.conftest import REPO
from tests.kms.helpers import make_community, start_kms

ALICE = "sip:alice@example.org"


@pytest.fixture
def pw(tmp_path: Path) -> Path:
    p = tmp_path / "ks.pw"
    p.write_text("phone secret\n")
    p.chmod(0o600)
    return p


def _keys(*args: str) -> list[str]:
    return ["keys", *args]


def test_import_samples_then_list(tmp_path: Path, pw: Path, vectors_dir: Path, capsys) -> None:
    xml = vectors_dir / "streamwide" / "xml"
    files = sorted(str(p) for p in xml.glob("streamwide_official_v5_*.xml"))
    ks = str(tmp_path / "ks")
    assert main(_keys("import", "--keystore", ks, "--passphrase-file", str(pw), *files)) == 0
    out = capsys.readouterr().out
    assert "trusted KMS kms.mydev.streamwide.com" in out
    assert out.count("stored keys of") == 4
    assert main(_keys("list", "--keystore", ks, "--passphrase-file", str(pw))) == 0
    listing = capsys.readouterr().out
    assert "keys sip:alice@streamwide.com period=236 uid=b5c452309219da6a" in listing
    assert "a1be54a5" not in listing.lower()  # alice's SSK prefix never shown


def test_import_refuses_u2alea_keeps_the_rest(tmp_path: Path, pw: Path, vectors_dir: Path, capsys) -> None:
    xml = vectors_dir / "streamwide" / "xml"
    files = [str(xml / "alea_v3_init.xml"), str(xml / "alea_v3_keyprov_u2alea_veronica_cluster.xml"),
             str(xml / "alea_v3_keyprov_u1alea_veronica_cluster.xml")]
    ks = str(tmp_path / "ks")
    assert main(_keys("import", "--keystore", ks, "--passphrase-file", str(pw), *files)) == 1
    captured = capsys.readouterr()
    assert "u2alea_veronica_cluster.xml: refused: key set sip:u2alea@veronica-cluster" in captured.err
    assert "1 of 3 file(s) refused" in captured.err
    assert "stored keys of sip:u1alea@veronica-cluster" in captured.out
    assert main(_keys("list", "--keystore", ks, "--passphrase-file", str(pw))) == 0
    assert "u2alea" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [  # 2: configuration (as in `softphone call`); 1: the operation itself failed
        (["list", "--keystore", "{tmp}/missing"], "no keystore at", 2),
        (["import", "--keystore", "{tmp}/ks", "{tmp}/nothing.xml"], "nothing.xml: No such file", 1),
        (["fetch", "--keystore", "{tmp}/ks", "--kms", "https://127.0.0.1:1", "--user", ALICE,
          "--token-file", "{tmp}/none"], "cannot read KMS token file", 2),
        (["list", "--config", "{tmp}/none.toml"], "no account file", 2),
    ],
)
def test_errors_one_line_no_traceback(tmp_path: Path, pw: Path, args: list[str], message: str, code: int) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    if "--config" not in argv:
        argv += ["--passphrase-file", str(pw)]
    entry = "import sys; from softphone.cli import main; sys.exit(main(sys.argv[1:]))"  # the console script
    r = subprocess.run([sys.executable, "-c", entry, "keys", *argv], capture_output=True, text=True,
                       cwd=REPO, timeout=60, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)))
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert all(line.startswith("softphone: ") for line in r.stderr.splitlines())


def test_fetch_from_our_kms_with_account(tmp_path: Path, pw: Path, capsys) -> None:
    users = make_community(tmp_path / "kms", users=(ALICE,))
    token = tmp_path / "token"
    token.write_text(users[ALICE].token)
    token.chmod(0o600)
    server = start_kms(tmp_path / "kms")
    try:
        config = tmp_path / "accounts.toml"
        config.write_text(
            f'[[account]]\nname = "alice"\nuri = "{ALICE}"\nkeystore = "{tmp_path}/alice.ks"\n'
            f'keystore_passphrase_file = "{pw}"\nkms_url = "{server.url}"\nkms_token_file = "{token}"\n'
            f'kms_ca_file = "{server.cafile}"\n')
        assert main(_keys("fetch", "--config", str(config))) == 0
        assert "fetched and validated key periods" in capsys.readouterr().out
        assert main(_keys("fetch", "--config", str(config))) == 0
        assert "already held" in capsys.readouterr().out
    finally:
        server.stop()
    assert main(_keys("fetch", "--config", str(config))) == 0  # KMS gone, next period held: nothing to do
    assert "already held" in capsys.readouterr().out
    assert main(_keys("fetch", "--config", str(config), "--force")) == 1  # asked for fresh keys, got none
    captured = capsys.readouterr()
    assert "fetch failed" in captured.err and "using cached keys" in captured.err
    assert captured.err.count("\n") == 1
    assert main(_keys("list", "--config", str(config))) == 0
    assert "kms kms.example.org role=Root" in capsys.readouterr().out


def test_wrong_passphrase_exits_2_like_call(tmp_path: Path, pw: Path, vectors_dir: Path, capsys) -> None:
    ks = str(tmp_path / "ks")
    files = sorted(str(p) for p in (vectors_dir / "streamwide" / "xml").glob("streamwide_official_v5_*.xml"))
    assert main(_keys("import", "--keystore", ks, "--passphrase-file", str(pw), *files)) == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("a different but long passphrase 123\n")
    wrong.chmod(0o600)
    capsys.readouterr()
    assert main(_keys("list", "--keystore", ks, "--passphrase-file", str(wrong))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no keystore" not in err
