"""``softphone mikey``: ``--trk-file``, the ``--time`` hint, what ``create --json`` checked, and a closed pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.kms import make_community, run_kms
from softphone.cli import main
from tests.softphone.test_mikey_cli import ALICE, BOB, T3_TIME, run, sw  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def test_period_mismatch_suggests_time(capsys, sw) -> None:  # noqa: F811
    code, _, err = run(capsys, "create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE,
                       "--to", BOB)
    assert code == 1 and "no key set" in err and "--time 20" in err and err.count("\n") == 1
    hinted = err.rsplit("--time ", 1)[1].strip()
    code, out, _ = run(capsys, "create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE,
                       "--to", BOB, "--time", hinted)
    assert code == 0 and out.startswith("mikey ")


def test_create_json_reports_what_it_checked(capsys, sw) -> None:  # noqa: F811
    code, out, _ = run(capsys, "create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE,
                       "--to", BOB, "--time", T3_TIME, "--json")
    made = json.loads(out)
    assert code == 0 and "verified" not in made and "valid" not in made
    assert "verifies" in made["checked"]["signature"] and "236" in made["checked"]["sender_key_set"]


def test_trk_file_opens_a_transport_keyed_keyprov(capsys, tmp_path: Path) -> None:
    community, passphrase = tmp_path / "kms", "community passphrase for the test"
    make_community(community, "kms.trk.test", passphrase)
    alice, bob = "sip:alice@trk.test", "sip:bob@trk.test"
    for uri in (alice, bob):
        user = uri[4:].split("@")[0]
        out = run_kms(passphrase, "user", "add", "--dir", str(community), uri, "--transport-key",
                      "--trk-out", str(tmp_path / f"{user}.trk"), "--token-out", str(tmp_path / f"{user}.token"))
        assert out.returncode == 0, out.stderr
        out = run_kms(passphrase, "provision", "--dir", str(community), "--user", uri,
                      "--out", str(tmp_path / f"{user}.xml"))
        assert out.returncode == 0, out.stderr
    init = tmp_path / "init.xml"
    assert run_kms(passphrase, "export-init", "--dir", str(community), "--out", str(init)).returncode == 0
    create = ["create", "--kms-init", str(init), "--keyprov", str(tmp_path / "alice.xml"), "--from", alice,
              "--to", bob]
    code, _, err = run(capsys, *create)
    assert code == 2 and err.count("\n") == 1  # the key sets are wrapped: unusable without the TrK
    code, out, _ = run(capsys, *create, "--trk-file", str(tmp_path / "alice.trk"))
    assert code == 0 and out.startswith("mikey ")
    msg = tmp_path / "m.txt"
    msg.write_text(out)
    inspect = ["inspect", str(msg), "--kms-init", str(init), "--keyprov", str(tmp_path / "bob.xml"),
               "--from", alice, "--json"]
    assert run(capsys, *inspect)[0] == 2
    code, out, _ = run(capsys, *inspect, "--trk-file", str(tmp_path / "bob.trk"))
    assert code == 0, out
    assert json.loads(out)["verified"] is True and json.loads(out)["initiator"] == alice
    code, _, err = run(capsys, *inspect, "--trk-file", str(tmp_path / "missing.trk"))
    assert code == 2 and "transport key" in err


@pytest.mark.parametrize("argv", [["mikey", "inspect"], ["--help"]])
def test_closed_pipe_is_quiet(sw, argv: list[str]) -> None:  # noqa: F811
    args = argv + ([sw["t3"]] if argv[0] == "mikey" else [])
    cmd = " ".join([sys.executable, "-m", "softphone.cli", *args]) + " | head -c 10 >/dev/null"
    out = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode in (0, 141)


def test_main_returns_not_raises(capsys) -> None:
    assert main(["mikey", "inspect", "/nonexistent/x"]) == 2
