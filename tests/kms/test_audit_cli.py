"""``softphone-kms audit``: the keyed chain refuses a recomputed unkeyed chain; ``export-head`` and
``verify --head`` catch truncation below an exported head."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.kms.helpers import run_kms


def test_audit_keyed_chain_and_exported_head_by_cli(tmp_path: Path) -> None:
    d = tmp_path / "kms"
    assert run_kms("init", "--dir", str(d), "--uri", "kms.example.org").returncode == 0
    for u in ("sip:a@x.org", "sip:b@x.org"):
        assert run_kms("user", "add", u, "--dir", str(d)).returncode == 0
    assert run_kms("user", "revoke", "sip:a@x.org", "--dir", str(d)).returncode == 0
    r = run_kms("audit", "export-head", "--dir", str(d), "--out", str(tmp_path / "head.json"))
    assert r.returncode == 0, r.stderr
    r = run_kms("audit", "verify", "--dir", str(d), "--head", str(tmp_path / "head.json"))
    assert r.returncode == 0 and "contains exported head at record 4" in r.stdout
    log, head = d / "audit.log", d / "audit.log.head"
    original, original_head = log.read_bytes(), head.read_text()
    # Delete the user.revoke record and recompute an unkeyed chain and head: refused.
    prev, out = "0" * 64, []
    for line in [x for x in original.splitlines() if b"user.revoke" not in x]:
        record = json.loads(line)
        record["seq"], record["prev"] = len(out) + 1, prev
        raw = json.dumps(record, separators=(",", ":")).encode()
        prev = hashlib.sha256(raw).hexdigest()
        out.append(raw + b"\n")
    log.write_bytes(b"".join(out))
    head.write_text(f"{len(out)} {prev}\n")
    r = run_kms("audit", "verify", "--dir", str(d))
    assert r.returncode == 1 and "hash chain broken" in r.stderr
    # Truncate after the export and rewind the local head: only --head notices.
    lines = original.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:3]))
    head.write_text(f"3 {json.loads(lines[3])['prev']}\n")
    assert run_kms("audit", "verify", "--dir", str(d)).returncode == 0
    r = run_kms("audit", "verify", "--dir", str(d), "--head", str(tmp_path / "head.json"))
    assert r.returncode == 1 and "records were removed" in r.stderr
    log.write_bytes(original)
    head.write_text(original_head)
    (tmp_path / "bad.json").write_text("{}")
    r = run_kms("audit", "verify", "--dir", str(d), "--head", str(tmp_path / "bad.json"))
    assert r.returncode == 1 and "not an exported audit head" in r.stderr
