"""kms.audit.DbAuditLog: the MAC chain in PostgreSQL refuses edits, keyless rows and truncation."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator

import pytest

from kms.audit import AuditError, AuditKey, DbAuditLog

KEY = AuditKey(os.urandom(32), "kms.example.org")
_n = iter(range(1000))


@pytest.fixture
def db(postgres_url: str) -> Iterator[str]:
    import psycopg

    name = f"kms_audit_{os.getpid()}_{next(_n)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + "/" + name


def _sql(url: str, statement: str, params: tuple = ()) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


def test_chain_in_postgres_detects_tampering(db: str) -> None:
    log = DbAuditLog(db, KEY)
    try:
        for i in range(5):
            log.append("key.issue", user="u", period=i)
        assert log.verify().lines == 5 and [r["period"] for r in log.records()] == [0, 1, 2, 3, 4]
        head = log.export_head()
        _sql(db, "UPDATE kms_audit SET line = convert_to(replace(convert_from(line, 'UTF8'), "
                 "'\"period\":2', '\"period\":9'), 'UTF8') WHERE seq = 3")
        with pytest.raises(AuditError, match="line 4: hash chain broken"):
            log.verify()
        _sql(db, "DELETE FROM kms_audit WHERE seq >= 3")  # truncation of the tail
        assert log.verify().lines == 2  # unnoticed without the exported head
        with pytest.raises(AuditError, match="records were removed"):
            log.verify(head)
        row = json.dumps({"seq": 3, "time": "x", "event": "user.add", "user": "u",
                          "prev": log.verify().head}, separators=(",", ":"))
        _sql(db, "INSERT INTO kms_audit (seq, line, mac) VALUES (3, %s, %s)", (row.encode(), "0" * 64))
        with pytest.raises(AuditError, match="not written with the audit key"):
            log.append("key.issue", user="u", period=3)
        with pytest.raises(AuditError, match="line 3: record MAC wrong"):
            log.verify()
    finally:
        log.close()


def test_concurrent_appends_from_two_connections_one_chain(db: str) -> None:
    a, b = DbAuditLog(db, KEY), DbAuditLog(db, KEY)
    try:
        threads = [threading.Thread(target=lambda w=w: [w.append("x", i=i) for i in range(40)]) for w in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert a.verify().lines == 80 and b.verify().lines == 80
    finally:
        a.close()
        b.close()
