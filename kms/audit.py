"""MAC-chained audit log (GDPR Art. 30 record of processing) as JSON lines.

Each line is a JSON object ``{"seq", "time", "event", ..., "prev"}`` where ``prev`` is the
HMAC-SHA256 (hex) of the previous line's bytes (64 zeros for the first), keyed with the audit key:
HKDF-SHA256 of the community's sealed master secrets (:func:`audit_key`). Whoever can write the
file but not unseal the master can neither edit, delete nor insert a record and recompute the
chain. The sequence number and MAC of the last line are kept in ``<log>.head``; since an earlier
MAC can be copied from the log itself, a head *exported elsewhere* (:meth:`AuditLog.export_head`,
itself MACed) is what proves that no tail was cut off: :meth:`AuditLog.verify` with that head
fails if record ``seq`` is missing or differs.

Users appear only by pseudonym (``user`` = :func:`pseudonym`), never by URI, so erasing a user's
salt leaves an unlinkable record. Values must be ``str``/``int``/``bool``/``None``: bytes (keys)
are refused. Appends are serialised across threads and processes by ``flock`` on the log, so
several KMS processes on one host may share a community directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms.errors import KmsError

GENESIS = "0" * 64
HEAD_FORMAT = "softphone-kms audit head v1"


class AuditError(KmsError):
    """The audit log was edited, reordered, truncated, or cannot be written."""


def pseudonym(salt: bytes, user_uri: str) -> str:
    """The stable per-user reference used in the log (SHA-256 of a per-user random salt and the URI)."""
    return hashlib.sha256(b"kms-audit-user\x00" + salt + user_uri.encode()).hexdigest()[:32]


class _Master(Protocol):
    @property
    def kms_uri(self) -> str: ...

    @property
    def sakke(self) -> Any: ...

    @property
    def eccsi(self) -> Any: ...


class AuditKey:
    """The 256-bit audit MAC key; ``repr`` never shows it."""

    __slots__ = ("_key", "kms_uri")

    def __init__(self, key: bytes, kms_uri: str) -> None:
        if len(key) != 32:
            raise AuditError("audit key must be 32 octets")
        self._key = key
        self.kms_uri = kms_uri

    def __repr__(self) -> str:
        return f"AuditKey(<hidden>, {self.kms_uri!r})"

    def mac(self, purpose: bytes, data: bytes) -> str:
        return hmac.new(self._key, purpose + b"\x00" + data, hashlib.sha256).hexdigest()


def audit_key(community: _Master) -> AuditKey:
    """HKDF-SHA256 over the SAKKE and ECCSI master secrets, bound to the KMS URI."""
    z, ksak = int(community.sakke.z), int(community.eccsi.ksak)
    ikm = z.to_bytes((z.bit_length() + 7) // 8 or 1, "big") + b"\x00" + ksak.to_bytes(32, "big")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=community.kms_uri.encode(),
               info=b"softphone-kms audit chain v1").derive(ikm)
    return AuditKey(key, community.kms_uri)


@dataclass(frozen=True)
class VerifyResult:
    lines: int
    head: str
    anchored: int = 0  # sequence number of the exported head the log was checked against (0: none)


class AuditLog:
    """Appends chained records; safe across threads and processes (``flock`` on the log).

    Without a key the log can only be read (:meth:`records` then checks sequence numbers only).
    """

    def __init__(self, path: str | Path, key: AuditKey | None = None) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._key = key
        self._lock = threading.Lock()

    def _mac(self, line: bytes) -> str:
        if self._key is None:
            raise AuditError("the audit log needs the community's audit key (unseal the master)")
        return self._key.mac(b"line", line)

    def append(self, event: str, **fields: str | int | bool | None) -> int:
        """Append one record; returns its sequence number."""
        for key, value in fields.items():
            if not isinstance(value, (str, int, bool, type(None))):
                raise AuditError(f"audit field {key!r} must be text or a number, not {type(value).__name__}")
        if self._key is None:
            raise AuditError("the audit log needs the community's audit key (unseal the master)")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                seq, prev = self._tail(fd)
                record = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                          "event": event, **fields, "prev": prev}
                line = json.dumps(record, sort_keys=False, separators=(",", ":")).encode()
                os.write(fd, line + b"\n")
                self._write_head(seq + 1, self._mac(line))
                return seq + 1
            finally:
                os.close(fd)

    def _tail(self, fd: int) -> tuple[int, str]:
        """(seq, MAC) of the last record, read from the log itself (under the lock) and required to
        match the head: a record the head does not vouch for is never chained onto, so an append
        can neither fork the chain nor adopt a line written without the key."""
        size = os.fstat(fd).st_size
        head_seq, head_mac = self._read_head()
        if size == 0:
            if head_seq:
                raise AuditError(f"the log is empty but {self.head_path.name} says {head_seq}: records were removed")
            return 0, GENESIS
        chunk, data = 4096, b""
        while True:
            start = max(size - chunk, 0)
            data = os.pread(fd, size - start, start)
            if not data.endswith(b"\n"):
                raise AuditError("the last audit record is incomplete: the log cannot be extended safely")
            if b"\n" in data[:-1] or start == 0:
                break
            chunk *= 4
        last = data[:-1].rsplit(b"\n", 1)[-1]
        try:
            seq = json.loads(last)["seq"]
        except (ValueError, KeyError, TypeError):
            raise AuditError("the last audit record is corrupt: the log cannot be extended safely") from None
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise AuditError("the last audit record is corrupt: the log cannot be extended safely")
        mac = self._mac(last)
        if head_seq != seq or not hmac.compare_digest(head_mac, mac):
            raise AuditError(f"log ends at record {seq} but {self.head_path.name} says {head_seq}: "
                             "the log cannot be extended safely")
        return seq, mac

    def _read_head(self) -> tuple[int, str]:
        try:
            seq, digest = self.head_path.read_text().split()
            return int(seq), digest
        except FileNotFoundError:
            if self.path.exists() and self.path.stat().st_size:
                raise AuditError(f"{self.head_path.name} is missing: the log cannot be extended safely") from None
            return 0, GENESIS
        except ValueError:
            raise AuditError(f"{self.head_path.name} is corrupt") from None

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{seq} {digest}\n")
        os.replace(tmp, self.head_path)

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise AuditError(f"audit log {self.path} does not exist") from None
        lines = data.split(b"\n")
        if lines[-1]:
            raise AuditError(f"line {len(lines)}: last record is incomplete")
        return lines[:-1]

    def records(self) -> list[dict]:
        """All records, after verifying the chain (sequence numbers only when no key is held)."""
        if self._key is not None:
            self.verify()
        out = []
        for number, line in enumerate(self._lines(), 1):
            record = _parse(number, line)
            out.append(record)
        return out

    def verify(self, head: dict | None = None) -> VerifyResult:
        """Check every MAC link, the sequence numbers and the local head, and, given an exported
        ``head`` (:meth:`export_head`), that the log still holds that record unchanged.

        :class:`AuditError` names the first break.
        """
        if head is not None:
            self.check_head(head)
        prev, count = GENESIS, 0
        anchored = 0
        for number, line in enumerate(self._lines(), 1):
            record = _parse(number, line)
            if record.get("prev") != prev:
                raise AuditError(f"line {number}: hash chain broken (line {number - 1} was edited or removed, "
                                 "or the chain was recomputed without the audit key)")
            prev, count = self._mac(line), number
            if head is not None and number == head["seq"]:
                if not hmac.compare_digest(prev, str(head["mac"])):
                    raise AuditError(f"line {number}: differs from the exported head (records rewritten)")
                anchored = number
        if head is not None and not anchored:
            raise AuditError(f"log ends at record {count} but the exported head is at record {head['seq']}: "
                             "records were removed")
        self._check_local_head(count, prev)
        return VerifyResult(count, prev, anchored)

    def _check_local_head(self, count: int, prev: str) -> None:
        seq, digest = self._read_head()
        if (seq, digest) != (count, prev):
            raise AuditError(f"log ends at record {count} but the head says {seq}: records were removed or edited")

    def export_head(self) -> dict:
        """The current head as a MACed JSON-able object, for the operator to store elsewhere."""
        result = self.verify()
        assert self._key is not None
        head: dict[str, Any] = {"format": HEAD_FORMAT, "kms_uri": self._key.kms_uri, "seq": result.lines,
                                "mac": result.head, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        head["tag"] = self._key.mac(b"head", _canonical(head))
        return head

    def check_head(self, head: dict) -> None:
        """Refuse an exported head that is malformed, of another community, or not MACed with our key."""
        if self._key is None:
            raise AuditError("checking an exported head needs the community's audit key")
        if not isinstance(head, dict) or head.get("format") != HEAD_FORMAT or not isinstance(head.get("seq"), int) \
                or isinstance(head.get("seq"), bool) or not isinstance(head.get("tag"), str):
            raise AuditError("not an exported audit head")
        if head.get("kms_uri") != self._key.kms_uri:
            raise AuditError("the exported head belongs to another KMS community")
        body = {k: v for k, v in head.items() if k != "tag"}
        if not hmac.compare_digest(self._key.mac(b"head", _canonical(body)), head["tag"]):
            raise AuditError("the exported head's MAC is wrong (forged or edited head)")

    def export(self, user_ref: str) -> list[dict]:
        """Every record about one pseudonymised user (a data subject access request, GDPR Art. 15)."""
        return [r for r in self.records() if r.get("user") == user_ref]


AUDIT_TABLE = """CREATE TABLE IF NOT EXISTS kms_audit (
    seq BIGINT PRIMARY KEY, line BYTEA NOT NULL, mac TEXT NOT NULL)"""
_LOCK_ID = 0x4B4D5341  # pg_advisory_xact_lock key serialising appends across KMS processes


class DbAuditLog(AuditLog):
    """The same MAC chain in PostgreSQL (table ``kms_audit``), for KMS processes on several hosts.

    Each row also carries its own MAC, so a row inserted without the key is never chained onto;
    appends are serialised by a transaction-scoped advisory lock and the primary key on ``seq``
    makes a fork impossible. Rows deleted from the tail are caught by an exported head.
    """

    def __init__(self, url: str, key: AuditKey | None, path: str | Path = "kms_audit") -> None:
        super().__init__(path, key)
        import psycopg

        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            self._conn.execute(AUDIT_TABLE)
        except psycopg.Error as exc:
            raise AuditError(f"audit database unavailable: {exc.__class__.__name__}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def append(self, event: str, **fields: str | int | bool | None) -> int:
        import psycopg

        for key, value in fields.items():
            if not isinstance(value, (str, int, bool, type(None))):
                raise AuditError(f"audit field {key!r} must be text or a number, not {type(value).__name__}")
        if self._key is None:
            raise AuditError("the audit log needs the community's audit key (unseal the master)")
        with self._lock:
            try:
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                    row = self._conn.execute("SELECT seq, line, mac FROM kms_audit ORDER BY seq DESC LIMIT 1"
                                             ).fetchone()
                    seq, prev = 0, GENESIS
                    if row is not None:
                        seq, prev = int(row[0]), self._mac(bytes(row[1]))
                        if not hmac.compare_digest(prev, str(row[2])):
                            raise AuditError(f"audit record {seq} was not written with the audit key: "
                                             "the log cannot be extended safely")
                    record = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                              "event": event, **fields, "prev": prev}
                    line = json.dumps(record, sort_keys=False, separators=(",", ":")).encode()
                    self._conn.execute("INSERT INTO kms_audit (seq, line, mac) VALUES (%s, %s, %s)",
                                       (seq + 1, line, self._mac(line)))
            except psycopg.Error as exc:
                raise AuditError(f"audit database error: {exc.__class__.__name__}") from None
            return seq + 1

    def import_lines(self, lines: list[bytes]) -> None:
        """Copy a verified file log's records verbatim (the chain is over the line bytes)."""
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            if self._conn.execute("SELECT COUNT(*) FROM kms_audit").fetchone()[0]:  # type: ignore[index]
                raise AuditError("the audit table is not empty")
            for number, line in enumerate(lines, 1):
                self._conn.execute("INSERT INTO kms_audit (seq, line, mac) VALUES (%s, %s, %s)",
                                   (number, line, self._mac(line)))

    def _rows(self) -> list[tuple[int, bytes, str]]:
        import psycopg

        with self._lock:
            try:
                rows = self._conn.execute("SELECT seq, line, mac FROM kms_audit ORDER BY seq").fetchall()
            except psycopg.Error as exc:
                raise AuditError(f"audit database error: {exc.__class__.__name__}") from None
        return [(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]

    def _lines(self) -> list[bytes]:
        out = []
        for number, (seq, line, _) in enumerate(self._rows(), 1):
            if seq != number:
                raise AuditError(f"line {number}: sequence number {seq} where {number} was expected "
                                 "(line deleted or reordered)")
            out.append(line)
        return out

    def _check_local_head(self, count: int, prev: str) -> None:
        rows = self._rows()
        for number, (_, line, mac) in enumerate(rows, 1):
            if not hmac.compare_digest(self._mac(line), mac):
                raise AuditError(f"line {number}: record MAC wrong (edited or written without the audit key)")


def open_audit(directory: str | Path, db: str, key: AuditKey | None) -> AuditLog:
    """The community's audit log: ``kms.json`` ``"audit": "postgresql"`` → :class:`DbAuditLog` on
    the community database, otherwise the file ``audit.log`` in the community directory."""
    d = Path(directory)
    try:
        where = json.loads((d / "kms.json").read_text()).get("audit", "file")
    except (OSError, ValueError, AttributeError):
        where = "file"
    if where == "postgresql":
        return DbAuditLog(db, key)
    return AuditLog(d / "audit.log", key)


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _parse(number: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        raise AuditError(f"line {number}: not a JSON record (edited)") from None
    if not isinstance(record, dict) or record.get("seq") != number:
        raise AuditError(f"line {number}: sequence number {record.get('seq') if isinstance(record, dict) else '?'} "
                         f"where {number} was expected (line deleted or reordered)")
    return record
# --- reading the log as a person would (``softphone-kms audit show``) --------------------------------
_FIXED = ("seq", "time", "event", "user", "prev")
PSEUDONYM_FIELDS = ("user", "target")


def select(records: Iterable[dict], *, since: datetime | None = None, user_ref: str | None = None,
           events: Iterable[str] = ()) -> list[dict]:
    """Records at or after ``since``, about ``user_ref`` (a pseudonym), whose event is one of ``events``
    or starts with one followed by a dot (``key`` selects ``key.issue`` and ``key.provision``)."""
    wanted = tuple(events)
    out = []
    for r in records:
        if since is not None:
            try:
                if datetime.fromisoformat(str(r.get("time"))) < since:
                    continue
            except ValueError:
                continue
        if user_ref is not None and user_ref not in (r.get(f) for f in PSEUDONYM_FIELDS):
            continue
        event = str(r.get("event", ""))
        if wanted and not any(event == e or event.startswith(e + ".") for e in wanted):
            continue
        out.append(r)
    return out


def reveal(records: Iterable[dict], names: dict[str, str]) -> list[dict]:
    """Records with pseudonyms replaced by URIs (``names``: pseudonym → URI); unknown ones stay as they are
    (an erased user's records are no longer linkable)."""
    return [{k: names.get(v, v) if k in PSEUDONYM_FIELDS and isinstance(v, str) else v for k, v in r.items()}
            for r in records]


def render_table(records: list[dict]) -> str:
    """One line a record: sequence, local time, event, user (pseudonym or URI), the other fields."""
    rows = [("SEQ", "TIME (UTC)", "EVENT", "USER", "DETAILS")]
    for r in records:
        try:
            when = datetime.fromisoformat(str(r.get("time"))).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            when = str(r.get("time", ""))
        details = " ".join(f"{k}={v}" for k, v in r.items() if k not in _FIXED and v is not None)
        rows.append((str(r.get("seq", "")), when, str(r.get("event", "")), str(r.get("user") or "-"), details))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"
