"""``softphone mikey inspect|create`` through the CLI entry point, with the Streamwide v5 KMS XML."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from softphone.cli import main

ALICE, BOB, GMS = "sip:alice@streamwide.com", "sip:bob@streamwide.com", "gms@streamwide.com"
T3_TIME = "2025-10-02T23:47:52Z"


@pytest.fixture(scope="module")
def sw(vectors_dir: Path) -> dict[str, str]:
    base = vectors_dir / "streamwide"
    xml = base / "xml"
    return {
        "init": str(xml / "streamwide_official_v5_init.xml"),
        "alice": str(xml / "streamwide_official_v5_keyprov_alice_streamwide_com.xml"),
        "bob": str(xml / "streamwide_official_v5_keyprov_bob_streamwide_com.xml"),
        "gms": str(xml / "streamwide_official_v5_keyprov_gms_streamwide_com.xml"),
        "t3": str(next((base / "imessages").glob("imsg_17_*"))),
        "t1": str(next((base / "imessages").glob("imsg_15_*"))),
    }


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["mikey", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def inspect_json(capsys, *argv: str) -> tuple[int, dict]:
    code, out, _ = run(capsys, "inspect", "--json", *argv)
    assert out.count("\n") == 1, "--json prints exactly one object"
    return code, json.loads(out)


def test_inspect_without_keys_decodes(capsys, sw) -> None:
    code, r = inspect_json(capsys, sw["t3"])
    assert code == 0 and r["valid"] is True and r["verified"] is False and r["error"] is None
    assert (r["data_type"], r["csb_id"], r["key_type"], r["rand"]) == (
        26, "16992638", "PCK", "02a28bddaf984c5e0563bc1ce857df83")
    assert r["timestamp"] == T3_TIME and r["age_seconds"] > 0
    assert r["initiator"].startswith("b5c45230") and r["responder"].startswith("780851cd")
    assert [p["type"] for p in r["payloads"]] == ["HDR", "T", "RAND", "IDR", "IDR", "IDR", "IDR", "SP", "SAKKE",
                                                  "GENERAL EXTENSION", "SIGN"]
    assert "key" not in r and "srtp" not in r


def test_inspect_with_keys_verifies_and_shows_secrets(capsys, sw) -> None:
    code, r = inspect_json(capsys, sw["t3"], "--kms-init", sw["init"], "--keyprov", sw["bob"], "--from", ALICE,
                           "--show-secrets")
    assert code == 0 and r["valid"] and r["verified"]
    assert (r["initiator"], r["responder"], r["key_id"], r["key_period_no"], r["signature_scope"]) == (
        ALICE, BOB, "16992638", 236, "standard")
    assert r["key"] == "b4c96b703acd5c1bf7d4cc45068d9965"
    srtp = {e["cs_id"]: (e["master_key"], e["master_salt"]) for e in r["srtp"]}
    assert srtp[0] == ("e392c95d3444f8ab3ca6d340865e4284", "245d9363909f2fafc45add02")
    assert srtp[1] == ("85b6731c05a50a3856b68191a942a344", "10993ef963479b780a8c71ee")


def test_inspect_gmk_and_text_mode(capsys, sw) -> None:
    code, out, _ = run(capsys, "inspect", sw["t1"], "--kms-init", sw["init"], "--keyprov", sw["alice"],
                       "--from", GMS)
    assert code == 0
    assert "key_type         GMK" in out and "key_id           0df9bc39" in out and "csb_id           06a12aea" in out
    assert "07d1a1677ac36d8e81620484689b3c2d" not in out  # no secrets without --show-secrets


def test_inspect_rejections(capsys, sw) -> None:
    code, r = inspect_json(capsys, sw["t3"], "--kms-init", sw["init"], "--keyprov", sw["bob"])
    assert code == 1 and r["valid"] is False and "claimed sender URI is needed" in r["error"]
    code, r = inspect_json(capsys, sw["t3"], "--kms-init", sw["init"], "--keyprov", sw["bob"], "--from",
                           "sip:eve@streamwide.com")
    assert code == 1 and "not the UID of the claimed sender" in r["error"]
    code, r = inspect_json(capsys, sw["t3"], "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE)
    assert code == 1 and "another receiver" in r["error"]
    code, r = inspect_json(capsys, sw["t3"], "--kms-init", sw["init"], "--keyprov", sw["bob"], "--from", ALICE,
                           "--max-age", "60")
    assert code == 1 and "window" in r["error"] and r["age_seconds"] > 60


def test_inspect_sip_message_from_stdin(capsys, monkeypatch, sw) -> None:
    value = Path(sw["t3"]).read_text().strip()
    sip = (f"INVITE sip:bob@streamwide.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
           f"From: \"Alice\" <{ALICE}>;tag=1\r\nTo: <{BOB}>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
           f"Content-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
           f"t=0 0\r\nm=audio 40000 RTP/SAVP 96\r\na=key-mgmt:{value}\r\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(sip.encode())))
    code, r = inspect_json(capsys, "-", "--kms-init", sw["init"], "--keyprov", sw["bob"])
    assert code == 0 and r["verified"] and r["initiator"] == ALICE


def test_inspect_wrapped_base64_and_video_only_sdp(capsys, tmp_path, sw) -> None:
    value = Path(sw["t3"]).read_text().strip()
    b64 = value[6:]
    f = tmp_path / "wrapped.txt"
    f.write_text("mikey " + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + "\n")
    code, r = inspect_json(capsys, str(f))
    assert code == 0 and r["csb_id"] == "16992638"
    f.write_text(f"v=0\r\ns=-\r\nm=audio 1 RTP/SAVP 0\r\nm=video 2 RTP/SAVP 96\r\na=key-mgmt:{value}\r\n")
    code, r = inspect_json(capsys, str(f))
    assert code == 0 and r["csb_id"] == "16992638"


@pytest.mark.parametrize("content", ["garbage!", "mikey AAAA", "", "INVITE sip:x SIP/2.0\r\n\r\nv=0\r\n"])
def test_inspect_bad_input_is_one_line_error(capsys, tmp_path, content) -> None:
    f = tmp_path / "in.txt"
    f.write_text(content)
    code, r = inspect_json(capsys, str(f))
    assert code == 1 and r["valid"] is False and r["error"] and "\n" not in r["error"]


def test_usage_errors(capsys, sw, tmp_path) -> None:
    assert run(capsys, "inspect", str(tmp_path / "missing"))[0] == 2
    assert run(capsys, "inspect", sw["t3"], "--keyprov", sw["bob"])[0] == 2
    bad_xml = tmp_path / "bad.xml"
    bad_xml.write_text("<nope/>")
    code, _, err = run(capsys, "inspect", sw["t3"], "--kms-init", str(bad_xml), "--keyprov", sw["bob"])
    assert code == 2 and err.count("\n") == 1
    base = ["create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE, "--to", BOB,
            "--time", T3_TIME]
    assert run(capsys, *base, "--key", "zz")[0] == 2
    assert run(capsys, *base, "--key-id", "0102")[0] == 2
    assert run(capsys, *base[:-1], "not-a-time")[0] == 2
    assert run(capsys, *base[:5], "--from", BOB, *base[7:])[0] == 2
    code, _, err = run(capsys, *base[:-1], "2031-01-01T00:00:00Z")
    assert code == 1 and "no key set" in err
    code, _, err = run(capsys, *base, "--key-type", "gmk", "--key-id", "16992638")
    assert code == 1 and "purpose tag 0" in err


@pytest.mark.parametrize("kt,key_id", [("pck", "1abcdef0"), ("gmk", "0abcdef0"), ("csk", "2abcdef0")])
def test_create_then_inspect(capsys, sw, tmp_path, kt: str, key_id: str) -> None:
    key = "00112233445566778899aabbccddeeff"
    code, out, _ = run(capsys, "create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from", ALICE,
                       "--to", BOB, "--time", T3_TIME, "--key-type", kt, "--key", key, "--key-id", key_id,
                       "--rand", "00" * 16, "--json")
    made = json.loads(out)
    assert code == 0 and made["key_type"] == kt.upper() and made["key_id"] == key_id and "key" not in made
    f = tmp_path / "m.txt"
    f.write_text(made["imessage"] + "\n")
    code, r = inspect_json(capsys, str(f), "--kms-init", sw["init"], "--keyprov", sw["bob"], "--from", ALICE,
                           "--show-secrets")
    assert code == 0 and r["key"] == key and r["key_id"] == key_id and r["timestamp"] == T3_TIME
    assert r["rand"] == "00" * 16 and r["key_period_no"] == 236
    # One flipped bit in the signed part: rejected.
    import base64
    raw = bytearray(base64.b64decode(made["imessage"][6:]))
    raw[40] ^= 0x01
    f.write_text("mikey " + base64.b64encode(bytes(raw)).decode())
    code, r = inspect_json(capsys, str(f), "--kms-init", sw["init"], "--keyprov", sw["bob"], "--from", ALICE)
    assert code == 1 and r["valid"] is False


def test_console_script_exit_codes(sw) -> None:
    exe = Path(sys.executable).with_name("softphone")
    ok = subprocess.run([str(exe), "mikey", "create", "--kms-init", sw["init"], "--keyprov", sw["alice"], "--from",
                         ALICE, "--to", BOB, "--time", T3_TIME], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("mikey ") and ok.stdout.count("\n") == 1
    bad = subprocess.run([str(exe), "mikey", "inspect", "-"], input="%%%", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr + bad.stdout
