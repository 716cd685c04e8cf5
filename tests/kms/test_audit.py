"""kms.audit: the hash chain detects edits, deletions, reordering and tail truncation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from kms.audit import AuditError, AuditLog, pseudonym


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(tmp_path / "audit.log")
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
        AuditLog(tmp_path / "a.log").append("key.issue", ssk=b"\x01" * 32)  # type: ignore[arg-type]


def test_concurrent_appends_chain(tmp_path: Path) -> None:
    a, b = AuditLog(tmp_path / "a.log"), AuditLog(tmp_path / "a.log")  # two writers, one file
    threads = [threading.Thread(target=lambda w=w: [w.append("x", i=i) for i in range(50)]) for w in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert a.verify().lines == 200
