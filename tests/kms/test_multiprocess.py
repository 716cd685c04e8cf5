"""Two ``softphone-kms serve`` processes on one community and one PostgreSQL, under concurrent load."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.kms import LoadResult, run_load
from crypto.identity import ntp_seconds
from kms.audit import AuditLog, DbAuditLog, audit_key, open_audit
from kms.issue import Issuer, open_community
from kms.store import open_store
from kmsinterface.xml import parse_key_prov
from tests.kms.helpers import KMS_URI, PASSPHRASE, make_community, run_kms, start_kms

USERS, PER_SERVER, CONCURRENCY = 20, 300, 12


def _database(postgres_url: str, tag: str) -> str:
    import psycopg

    name = f"kms_multi_{tag}_{os.getpid()}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.mark.slow
@pytest.mark.parametrize("audit", ["file", "postgresql"])
def test_two_processes_share_one_postgres(tmp_path: Path, postgres_url: str, audit: str) -> None:
    url = _database(postgres_url, audit)
    d = tmp_path / "kms"
    uris = tuple(f"sip:multi{i}@example.org" for i in range(USERS))
    if audit == "file":  # processes on one host share the community directory's audit.log
        users = make_community(d, db=url, users=uris)
    else:  # the audit chain in PostgreSQL: processes may run on several hosts
        r = run_kms("init", "--dir", str(d), "--uri", KMS_URI, "--db", url, "--audit-in-db")
        assert r.returncode == 0, r.stderr
        assert not (d / "audit.log").exists()
        issuer = Issuer(open_community(d, PASSPHRASE.encode()))
        try:
            assert isinstance(issuer.audit, DbAuditLog)
            users = {u: issuer.add_user(u) for u in uris}
        finally:
            issuer.close()
    tokens = [users[u].token for u in uris]
    servers = [start_kms(d), start_kms(d)]
    results: list[LoadResult] = []
    try:
        def load(i: int) -> None:
            s = servers[i]
            results.append(run_load(s.host, s.port, s.cafile, tokens, PER_SERVER, CONCURRENCY, timeout=240))

        threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
    finally:
        for s in servers:
            s.stop()

    assert len(results) == 2 and all(r.errors == [] for r in results)
    assert sum(len(r.results) for r in results) == 2 * PER_SERVER  # every request served
    n = ntp_seconds() // 2592000
    keys: dict[int, list] = {}
    for result in results:
        for user, status, body, _ in result.results:
            assert status == 200
            resp = parse_key_prov(body)
            assert resp.user_uri == uris[user]
            assert [k.key_period_no for k in resp.key_sets] in ([n, n + 1], [n + 1, n + 2])
            got = [(k.key_period_no, k.rsk, k.ssk, k.pvt) for k in resp.key_sets]
            assert keys.setdefault(user, got) == got  # both processes deliver the very same key sets

    community = open_community(d, PASSPHRASE.encode())
    log: AuditLog = open_audit(d, url, audit_key(community))
    assert isinstance(log, DbAuditLog) == (audit == "postgresql")
    records = log.records()  # verifies every MAC link: one linear chain, nothing lost or forked
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[0]["event"] == "master.create"
    events = Counter(r["event"] for r in records)
    assert events["master.unseal"] == 2
    assert events["key.provision"] == 2 * PER_SERVER  # none lost
    assert events["key.issue"] == 2 * USERS  # each period issued once, by one of the two processes
    store = open_store(url)
    try:
        assert store.count_keysets() == 2 * USERS
    finally:
        store.close()
    verify = run_kms("audit", "verify", "--dir", str(d))
    assert verify.returncode == 0, verify.stderr
