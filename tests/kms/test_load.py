"""Load: 1,000 KeyProvision requests from 50 concurrent HTTPS clients, every response checked."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks.kms import run_load
from crypto.identity import ntp_seconds
from kms.audit import AuditLog, audit_key
from kms.issue import open_community
from kmsinterface.xml import parse_key_prov
from tests.kms.helpers import PASSPHRASE, make_community, run_kms, start_kms

TOTAL, CONCURRENCY, USERS = 1000, 50, 50


@pytest.mark.slow
def test_thousand_requests_fifty_clients(tmp_path: Path) -> None:
    d = tmp_path / "kms"
    uris = tuple(f"sip:load{i}@example.org" for i in range(USERS))
    users = make_community(d, users=uris)
    server = start_kms(d)
    try:
        result = run_load(server.host, server.port, server.cafile, [users[u].token for u in uris], TOTAL, CONCURRENCY)
    finally:
        server.stop()
    assert result.errors == []
    assert len(result.results) == TOTAL  # none lost
    n = ntp_seconds() // 2592000
    first: dict[int, list] = {}
    for user, status, body, _ in result.results:
        assert status == 200
        resp = parse_key_prov(body)
        assert resp.user_uri == uris[user]
        assert [k.key_period_no for k in resp.key_sets] in ([n, n + 1], [n + 1, n + 2])
        keys = [(k.key_period_no, k.rsk, k.ssk, k.pvt) for k in resp.key_sets]
        first.setdefault(user, keys)
        assert keys == first[user]  # re-requests return the very same keys
    assert Counter(u for u, *_ in result.results) == {i: TOTAL // USERS for i in range(USERS)}
    records = AuditLog(d / "audit.log", audit_key(open_community(d, PASSPHRASE.encode()))).records()
    events = Counter(r["event"] for r in records)
    assert events["key.provision"] == TOTAL and events["key.issue"] == 2 * USERS  # not duplicated
    verify = run_kms("audit", "verify", "--dir", str(d))
    assert verify.returncode == 0, verify.stderr
