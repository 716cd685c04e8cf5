"""Hash-chained audit log (GDPR Art. 30 record of processing) as JSON lines.

Each line is a JSON object ``{"seq", "time", "event", ..., "prev"}`` where ``prev`` is the SHA-256
(hex) of the previous line's bytes (64 zeros for the first). The sequence number and hash of the
last line are also kept in ``<log>.head``, so truncating the tail is detected too. Users appear
only by pseudonym (``user`` = :func:`pseudonym`), never by URI, so erasing a user's salt leaves an
unlinkable record. Values must be ``str``/``int``/``bool``/``None``: bytes (keys) are refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kms.errors import KmsError

GENESIS = "0" * 64


class AuditError(KmsError):
    """The audit log was edited, reordered, truncated, or cannot be written."""


def pseudonym(salt: bytes, user_uri: str) -> str:
    """The stable per-user reference used in the log (SHA-256 of a per-user random salt and the URI)."""
    return hashlib.sha256(b"kms-audit-user\x00" + salt + user_uri.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class VerifyResult:
    lines: int
    head: str


class AuditLog:
    """Appends chained records; safe across threads and processes (``flock`` on the log)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self._lock = threading.Lock()

    def append(self, event: str, **fields: str | int | bool | None) -> int:
        """Append one record; returns its sequence number."""
        for key, value in fields.items():
            if not isinstance(value, (str, int, bool, type(None))):
                raise AuditError(f"audit field {key!r} must be text or a number, not {type(value).__name__}")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                seq, prev = self._read_head()
                record = {"seq": seq + 1, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                          "event": event, **fields, "prev": prev}
                line = json.dumps(record, sort_keys=False, separators=(",", ":")).encode()
                os.write(fd, line + b"\n")
                self._write_head(seq + 1, hashlib.sha256(line).hexdigest())
                return seq + 1
            finally:
                os.close(fd)

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

    def records(self) -> list[dict]:
        """All records, after verifying the chain."""
        self.verify()
        return [json.loads(line) for line in self.path.read_bytes().splitlines()]

    def verify(self) -> VerifyResult:
        """Check every link, the sequence numbers and the head; :class:`AuditError` names the first break."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise AuditError(f"audit log {self.path} does not exist") from None
        prev, count = GENESIS, 0
        for number, line in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"), 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise AuditError(f"line {number}: not a JSON record (edited)") from None
            if not isinstance(record, dict) or record.get("seq") != number:
                got = record.get("seq") if isinstance(record, dict) else "?"
                raise AuditError(f"line {number}: sequence number {got} "
                                 f"where {number} was expected (line deleted or reordered)")
            if record.get("prev") != prev:
                raise AuditError(f"line {number}: hash chain broken (line {number - 1} was edited or removed)")
            prev, count = hashlib.sha256(line).hexdigest(), number
        if data and not data.endswith(b"\n"):
            raise AuditError(f"line {count}: last record is incomplete")
        seq, digest = self._read_head()
        if (seq, digest) != (count, prev):
            raise AuditError(f"log ends at record {count} but the head says {seq}: records were removed or edited")
        return VerifyResult(count, prev)

    def export(self, user_ref: str) -> list[dict]:
        """Every record about one pseudonymised user (a data subject access request, GDPR Art. 15)."""
        return [r for r in self.records() if r.get("user") == user_ref]


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
