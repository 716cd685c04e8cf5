"""kms.store against SQLite and a real PostgreSQL: users, hashed tokens, sealed key sets, erase."""

from __future__ import annotations

import threading

import pytest

from kms.store import StoredKeySet, StoreError, UserRecord, open_store


def _user(uri: str, token_hash: str = "h") -> UserRecord:
    return UserRecord(uri=uri, salt=b"s" * 16, token_hash=token_hash + uri, status="active", trk_id="t1",
                      trk_enc=b"\x01enc", created="2026-11-28T00:00:00+00:00")


def test_users_crud(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.add_user(_user("sip:alice@example.org"))
        store.add_user(_user("sip:bob@example.org"))
        with pytest.raises(StoreError, match="already exists"):
            store.add_user(_user("sip:alice@example.org"))
        assert store.get_user("sip:alice@example.org") == _user("sip:alice@example.org")
        assert store.user_by_token("hsip:bob@example.org").uri == "sip:bob@example.org"
        assert store.user_by_token("nope") is None
        store.set_status("sip:bob@example.org", "revoked")
        assert [(u.uri, u.status) for u in store.list_users()] == [
            ("sip:alice@example.org", "active"), ("sip:bob@example.org", "revoked")]
        with pytest.raises(StoreError, match="no user"):
            store.set_status("sip:carol@example.org", "revoked")
    finally:
        store.close()


def test_keysets_insert_once_and_erase(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.add_user(_user("sip:alice@example.org"))
        ks = StoredKeySet("sip:alice@example.org", 1500, b"u" * 32, b"r" * 300, b"s" * 60, b"\x04" + b"p" * 64, "now")
        assert store.put_keyset(ks) is True
        other = StoredKeySet("sip:alice@example.org", 1500, b"v" * 32, b"x", b"y", b"z", "later")
        assert store.put_keyset(other) is False
        assert store.get_keyset("sip:alice@example.org", 1500) == ks
        assert store.get_keyset("sip:alice@example.org", 1501) is None
        assert store.count_keysets() == 1
        store.erase_user("sip:alice@example.org")
        assert store.get_user("sip:alice@example.org") is None
        assert store.count_keysets() == 0
        with pytest.raises(StoreError, match="no user"):
            store.erase_user("sip:alice@example.org")
    finally:
        store.close()


def test_concurrent_put_keeps_one(db_url: str) -> None:
    store = open_store(db_url)
    try:
        store.add_user(_user("sip:alice@example.org"))
        results: list[bool] = []

        def put(i: int) -> None:
            results.append(store.put_keyset(
                StoredKeySet("sip:alice@example.org", 7, bytes([i]) * 32, b"r", b"s", b"p", "t")))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results.count(True) == 1 and len(results) == 8
        assert store.count_keysets("sip:alice@example.org") == 1
    finally:
        store.close()


def test_sqlite_file_is_private(tmp_path) -> None:
    path = tmp_path / "kms.sqlite3"
    open_store(str(path)).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_unreachable_postgres_is_one_line_error() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    assert "\n" not in str(info.value)
