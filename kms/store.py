"""KMS storage: users (hashed bearer credentials, sealed TrK) and issued key sets (sealed RSK/SSK).

One SQL schema, two backends: SQLite in WAL mode (default, a file in the KMS directory) and
PostgreSQL (``postgresql://…`` URL, psycopg 3). Secret columns hold values already encrypted by
the caller (:class:`kmsinterface.sealed.DataKey`); the store never sees a key in clear.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kms.errors import KmsError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        uri TEXT PRIMARY KEY, salt {blob} NOT NULL, token_hash TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL, trk_id TEXT, trk_enc {blob}, created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS keysets (
        uri TEXT NOT NULL REFERENCES users(uri) ON DELETE CASCADE, period_no BIGINT NOT NULL,
        user_id {blob} NOT NULL, rsk_enc {blob} NOT NULL, ssk_enc {blob} NOT NULL, pvt {blob} NOT NULL,
        issued TEXT NOT NULL, PRIMARY KEY (uri, period_no))""",
    """CREATE TABLE IF NOT EXISTS revocations (uri TEXT PRIMARY KEY, until TEXT NOT NULL)""",
)


class StoreError(KmsError):
    """A storage operation failed (duplicate user, unknown user, database unreachable)."""


@dataclass(frozen=True)
class UserRecord:
    uri: str
    salt: bytes = field(repr=False)
    token_hash: str = field(repr=False)
    status: str = "active"
    trk_id: str | None = None
    trk_enc: bytes | None = field(default=None, repr=False)
    created: str = ""


@dataclass(frozen=True)
class StoredKeySet:
    uri: str
    period_no: int
    user_id: bytes
    rsk_enc: bytes = field(repr=False)
    ssk_enc: bytes = field(repr=False)
    pvt: bytes = b""
    issued: str = ""


class Store:
    """Thread-safe access to the KMS database (one connection guarded by a lock)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self._dialect = dialect
        self._lock = threading.RLock()
        blob = "BYTEA" if dialect == "postgresql" else "BLOB"
        for stmt in SCHEMA:
            self._exec(stmt.format(blob=blob))

    @property
    def dialect(self) -> str:
        return self._dialect

    def _exec(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self._dialect == "postgresql":
            sql = sql.replace("?", "%s")
        with self._lock:
            try:
                cur = self._conn.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
                if self._dialect == "sqlite":
                    self._conn.commit()
                return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
            except Exception as exc:
                if self._dialect == "sqlite":
                    self._conn.rollback()
                if _is_integrity_error(exc):
                    raise StoreError("duplicate entry") from None
                raise StoreError(f"database error: {exc.__class__.__name__}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # users -------------------------------------------------------------------------------------
    def add_user(self, user: UserRecord) -> None:
        if self.get_user(user.uri) is not None:
            raise StoreError(f"user {user.uri} already exists")
        self._exec(
            "INSERT INTO users (uri, salt, token_hash, status, trk_id, trk_enc, created) VALUES (?,?,?,?,?,?,?)",
            (user.uri, user.salt, user.token_hash, user.status, user.trk_id, user.trk_enc, user.created),
        )

    def _user(self, where: str, value: str) -> UserRecord | None:
        rows = self._exec(
            f"SELECT uri, salt, token_hash, status, trk_id, trk_enc, created FROM users WHERE {where} = ?", (value,)
        )
        return UserRecord(*rows[0]) if rows else None

    def get_user(self, uri: str) -> UserRecord | None:
        return self._user("uri", uri)

    def user_by_token(self, token_hash: str) -> UserRecord | None:
        return self._user("token_hash", token_hash)

    def list_users(self) -> list[UserRecord]:
        rows = self._exec("SELECT uri, salt, token_hash, status, trk_id, trk_enc, created FROM users ORDER BY uri")
        return [UserRecord(*r) for r in rows]

    def set_status(self, uri: str, status: str) -> None:
        if self.get_user(uri) is None:
            raise StoreError(f"no user {uri}")
        self._exec("UPDATE users SET status = ? WHERE uri = ?", (status, uri))

    def erase_user(self, uri: str) -> None:
        """Delete the user row, its salt (unlinking audit pseudonyms) and every key set issued to it."""
        if self.get_user(uri) is None:
            raise StoreError(f"no user {uri}")
        with self._lock:
            self._exec("DELETE FROM keysets WHERE uri = ?", (uri,))
            self._exec("DELETE FROM users WHERE uri = ?", (uri,))

    # key sets ----------------------------------------------------------------------------------
    def get_keyset(self, uri: str, period_no: int) -> StoredKeySet | None:
        rows = self._exec(
            "SELECT uri, period_no, user_id, rsk_enc, ssk_enc, pvt, issued FROM keysets"
            " WHERE uri = ? AND period_no = ?",
            (uri, period_no),
        )
        return StoredKeySet(*rows[0]) if rows else None

    def put_keyset(self, ks: StoredKeySet) -> bool:
        """Insert unless one exists for (uri, period); returns whether this call inserted it."""
        with self._lock:
            if self.get_keyset(ks.uri, ks.period_no) is not None:
                return False
            try:
                self._exec(
                    "INSERT INTO keysets (uri, period_no, user_id, rsk_enc, ssk_enc, pvt, issued)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (ks.uri, ks.period_no, ks.user_id, ks.rsk_enc, ks.ssk_enc, ks.pvt, ks.issued),
                )
            except StoreError:
                if self.get_keyset(ks.uri, ks.period_no) is not None:
                    return False  # another process inserted it first
                raise
            return True

    def last_period(self, uri: str) -> int | None:
        """The newest key period issued to ``uri`` (None if none)."""
        rows = self._exec("SELECT MAX(period_no) FROM keysets WHERE uri = ?", (uri,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    # revocations kept beyond the user row ------------------------------------------------------------
    def keep_revoked(self, uri: str, until: str) -> None:
        """Keep ``uri`` on the revocation list until ``until`` (ISO 8601 UTC), even once the user is erased."""
        with self._lock:
            self._exec("DELETE FROM revocations WHERE uri = ?", (uri,))
            self._exec("INSERT INTO revocations (uri, until) VALUES (?, ?)", (uri, until))

    def kept_revoked(self, now: str) -> list[str]:
        """URIs kept on the revocation list whose keys may still be valid at ``now`` (older entries are dropped)."""
        with self._lock:
            self._exec("DELETE FROM revocations WHERE until <= ?", (now,))
            return [r[0] for r in self._exec("SELECT uri FROM revocations ORDER BY uri")]

    def count_keysets(self, uri: str | None = None) -> int:
        if uri is None:
            return int(self._exec("SELECT COUNT(*) FROM keysets")[0][0])
        return int(self._exec("SELECT COUNT(*) FROM keysets WHERE uri = ?", (uri,))[0][0])


def _is_integrity_error(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    return type(exc).__name__ in ("UniqueViolation", "IntegrityError", "ForeignKeyViolation")


def open_store(db: str | Path) -> Store:
    """``postgresql://…`` → PostgreSQL; anything else is an SQLite file path (created 0600, WAL)."""
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            pg = psycopg.connect(text, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else "error"
            raise StoreError(f"cannot connect to PostgreSQL: {first}") from None
        return Store(pg, "postgresql")
    path = Path(text)
    if not path.exists():
        import os

        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    try:
        lite = sqlite3.connect(path, check_same_thread=False, timeout=10)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("PRAGMA synchronous=NORMAL")
        lite.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    return Store(lite, "sqlite")
