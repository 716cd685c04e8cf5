"""kms.audit: the MAC chain detects edits, deletions, reordering, recomputed chains and tail truncation."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from kms.audit import GENESIS, AuditError, AuditKey, AuditLog, pseudonym

KEY = AuditKey(os.urandom(32), "kms.example.org")


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.log", KEY)
    for i in range(5):
        audit.append("key.issue", user=pseudonym(b"salt", "sip:a@x"), period=i)
    return audit


def test_intact_log_verifies(log: AuditLog) -> None:
    assert log.verify().lines == 5
    assert log.path.stat().st_mode & 0o777 == 0o600
    assert [r["period"] for r in log.export(pseudonym(b"salt", "sip:a@x"))] == [0, 1, 2, 3, 4]
    assert log.export(pseudonym(b"other", "sip:a@x")) == []


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def test_edit_detected(log: AuditLog) -> None:
    lines = _lines(log)
    lines[2] = lines[2].replace(b'"period":2', b'"period":9')
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="line 4: hash chain broken"):
        log.verify()


def test_deletion_detected(log: AuditLog) -> None:
    lines = _lines(log)
    del lines[1]
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="line 2: sequence number 3"):
        log.verify()


def test_tail_truncation_detected(log: AuditLog) -> None:
    log.path.write_bytes(b"".join(_lines(log)[:-1]))
    with pytest.raises(AuditError, match="head says 5"):
        log.verify()


def test_edit_of_last_line_detected(log: AuditLog) -> None:
    lines = _lines(log)
    record = json.loads(lines[-1])
    record["period"] = 99
    lines[-1] = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    log.path.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match="removed or edited"):
        log.verify()


def test_bytes_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="must be text"):
        AuditLog(tmp_path / "a.log", KEY).append("key.issue", ssk=b"\x01" * 32)  # type: ignore[arg-type]


def test_concurrent_appends_chain(tmp_path: Path) -> None:
    a, b = AuditLog(tmp_path / "a.log", KEY), AuditLog(tmp_path / "a.log", KEY)  # two writers, one file
    threads = [threading.Thread(target=lambda w=w: [w.append("x", i=i) for i in range(50)]) for w in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert a.verify().lines == 200


def _recompute_unkeyed(log: AuditLog, lines: list[bytes]) -> None:
    """What defeated the old log: renumber, relink with plain SHA-256 and rewrite the head."""
    prev, out = GENESIS, []
    for seq, line in enumerate(lines, 1):
        record = json.loads(line)
        record["seq"], record["prev"] = seq, prev
        raw = json.dumps(record, separators=(",", ":")).encode()
        prev = hashlib.sha256(raw).hexdigest()
        out.append(raw + b"\n")
    log.path.write_bytes(b"".join(out))
    log.head_path.write_text(f"{len(out)} {prev}\n")


def test_recomputed_unkeyed_chain_fails(log: AuditLog) -> None:
    log.append("user.revoke", user=pseudonym(b"salt", "sip:a@x"))
    log.append("key.provision", user=pseudonym(b"salt", "sip:a@x"))
    _recompute_unkeyed(log, [line for line in _lines(log) if b"user.revoke" not in line])
    with pytest.raises(AuditError, match="line 2: hash chain broken"):
        log.verify()


def test_recomputed_chain_with_another_key_fails(log: AuditLog) -> None:
    forged = AuditLog(log.path.with_name("forged.log"), AuditKey(os.urandom(32), "kms.example.org"))
    for record in [json.loads(line) for line in _lines(log)][1:]:
        forged.append(record["event"], user=record["user"], period=record["period"])
    os.replace(forged.path, log.path)
    os.replace(forged.head_path, log.head_path)
    with pytest.raises(AuditError, match="chain broken"):
        log.verify()


def test_exported_head_detects_truncation_and_rewrite(log: AuditLog) -> None:
    head = log.export_head()
    assert head["seq"] == 5 and log.verify(head).anchored == 5
    log.append("key.issue", user="u", period=6)
    assert log.verify(head).lines == 6  # later records are fine
    lines = _lines(log)
    # Truncate to 3 records and rewind the local head to a MAC copied from the log itself.
    log.path.write_bytes(b"".join(lines[:3]))
    log.head_path.write_text(f"3 {json.loads(lines[3])['prev']}\n")
    assert log.verify().lines == 3  # without the exported head the rewind goes unnoticed
    with pytest.raises(AuditError, match="exported head is at record 5: records were removed"):
        log.verify(head)
    # A forged or edited head is refused.
    with pytest.raises(AuditError, match="MAC is wrong"):
        log.verify({**head, "seq": 3, "mac": json.loads(lines[3])["prev"]})
    with pytest.raises(AuditError, match="another KMS community"):
        log.verify({**head, "kms_uri": "kms.other.org"})


def test_unkeyed_log_is_read_only(log: AuditLog) -> None:
    reader = AuditLog(log.path)
    assert len(reader.records()) == 5
    with pytest.raises(AuditError, match="audit key"):
        reader.append("x")
    with pytest.raises(AuditError, match="audit key"):
        reader.verify()
    assert "hidden" in repr(KEY)


def test_append_never_forks_or_adopts_an_unkeyed_line(log: AuditLog) -> None:
    head = log.head_path.read_text()
    forged = json.dumps({"seq": 6, "time": "x", "event": "user.add", "user": "u", "prev": head.split()[1]},
                        separators=(",", ":"))
    with log.path.open("a") as fh:
        fh.write(forged + "\n")  # chained to the head's MAC, but written without the key
    with pytest.raises(AuditError, match="cannot be extended safely"):
        log.append("key.issue", user="u", period=6)
    log.path.write_bytes(b"".join(_lines(log)[:-2]))  # truncated below the head
    with pytest.raises(AuditError, match="cannot be extended safely"):
        log.append("key.issue", user="u", period=6)
    log.path.write_bytes(b"".join(_lines(log)) + b'{"seq":')  # torn last write
    with pytest.raises(AuditError, match="incomplete"):
        log.append("key.issue", user="u", period=6)
