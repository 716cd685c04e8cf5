"""What the desktop app shows, without Qt: contacts, recent calls, security badges, plain-words failures.

Everything here is pure and file-backed so it is unit-tested without a display:

* :class:`ContactBook` — ``contacts.toml`` (``[[contact]] name = …, uri = …``), editable, written 0600.
* :class:`CallHistory` — recent calls as JSON lines (time, duration, direction, peer, identity as
  verified by ECCSI, security, outcome). No audio and no key material is ever stored.
* :func:`badge` — the secure / interop / insecure badge for a call's security.
* :func:`explain` — a refusal or failure (SIP status + Warning) in words a user understands.
* :func:`key_status` — current/next key period and the expiry countdown from a keystore listing.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from softphone.calls.events import PeerAssurance
from softphone.calls.profile import SecurityLevel
from softphone.errors import SoftphoneError

MAX_HISTORY = 200


class GuiDataError(SoftphoneError):
    """A contacts or history file is unreadable or invalid (one line)."""


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path`` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# --- contacts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contact:
    name: str
    uri: str

    def label(self) -> str:
        return f"{self.name} <{self.uri}>"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def normalise_uri(text: str, domain: str | None = None) -> str:
    """What the user typed as a SIP URI: ``bob`` → ``sip:bob@<domain>``, ``bob@x`` → ``sip:bob@x``."""
    text = text.strip()
    if not text:
        raise GuiDataError("enter whom to call (a name, user@domain or sip: URI)")
    if any(c.isspace() for c in text) or any(c in text for c in "<>\""):
        raise GuiDataError(f"not a SIP address: {text!r}")
    if text.startswith(("sip:", "sips:", "tel:")):
        return text
    if "@" in text:
        return "sip:" + text
    if domain:
        return f"sip:{text}@{domain}"
    raise GuiDataError(f"not a SIP address: {text!r} (use user@domain)")


class ContactBook:
    """Contacts kept in a TOML file; every change is saved at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.contacts: list[Contact] = []
        if self.path.exists():
            self.contacts = self._load()

    def _load(self) -> list[Contact]:
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise GuiDataError(f"cannot read contacts {self.path}: {exc}") from None
        out = []
        for i, raw in enumerate(data.get("contact", [])):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("uri"), str):
                raise GuiDataError(f"contacts {self.path}: entry {i + 1} needs a name and a uri (strings)")
            out.append(Contact(raw["name"], raw["uri"]))
        return out

    def save(self) -> None:
        parts = ["# Softphone contacts (edited by the app; you may edit it too)\n"]
        for c in self.contacts:
            parts.append(f"\n[[contact]]\nname = {_toml_string(c.name)}\nuri = {_toml_string(c.uri)}\n")
        _write_private(self.path, "".join(parts))

    def add(self, name: str, uri: str) -> Contact:
        contact = self._checked(name, uri)
        self.contacts.append(contact)
        self.save()
        return contact

    def update(self, index: int, name: str, uri: str) -> Contact:
        contact = self._checked(name, uri)
        self.contacts[index] = contact
        self.save()
        return contact

    def remove(self, index: int) -> None:
        del self.contacts[index]
        self.save()

    def name_for(self, uri: str) -> str | None:
        return next((c.name for c in self.contacts if c.uri == uri), None)

    @staticmethod
    def _checked(name: str, uri: str) -> Contact:
        name = name.strip()
        if not name:
            raise GuiDataError("a contact needs a name")
        return Contact(name, normalise_uri(uri))


# --- call history ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CallRecord:
    """One recent call. Only what a call list shows: never audio, keys or key identifiers."""

    started: str                     # ISO 8601, UTC
    direction: str                   # "outgoing" | "incoming"
    peer: str                        # the SIP URI dialled / claimed
    verified_identity: str | None    # as verified by ECCSI (None for SDES or failed calls)
    security: str | None             # a SecurityLevel's text ("MIKEY-SAKKE", "SDES") or None
    outcome: str                     # "answered", "refused", "failed", "missed", "declined"
    duration_s: float = 0.0
    detail: str = ""

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.started)


class CallHistory:
    """Recent calls as JSON lines (newest last), at most :data:`MAX_HISTORY`."""

    _FIELDS = set(CallRecord.__dataclass_fields__)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: list[CallRecord] = []
        if self.path.exists():
            self.records = self._load()

    def _load(self) -> list[CallRecord]:
        out = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise GuiDataError(f"cannot read call history {self.path}: {exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                out.append(CallRecord(**{k: v for k, v in raw.items() if k in self._FIELDS}))
            except (ValueError, TypeError):
                raise GuiDataError(f"call history {self.path}: line {n} is not a call record") from None
        return out[-MAX_HISTORY:]

    def add(self, record: CallRecord) -> None:
        self.records.append(record)
        self.records = self.records[-MAX_HISTORY:]
        _write_private(self.path, "".join(json.dumps(asdict(r)) + "\n" for r in self.records))

    def recent_peers(self) -> list[str]:
        """Distinct peers, most recent first (for the dial field's completion)."""
        seen: list[str] = []
        for r in reversed(self.records):
            if r.peer not in seen:
                seen.append(r.peer)
        return seen


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def format_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


# --- security badge --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Badge:
    level: str   # "secure" | "interop" | "insecure"
    text: str
    colour: str  # background colour for the badge


_BADGES = {
    SecurityLevel.SECURE: Badge("secure", "SECURE — Secure Chorus (MIKEY-SAKKE), identity verified", "#1b7f3b"),
    SecurityLevel.SDES_INTEROP: Badge("interop", "ENCRYPTED — SDES interop, identity NOT verified", "#b36b00"),
    SecurityLevel.NOT_SECURE: Badge("insecure", "NOT SECURE — no verified keys", "#b3261e"),
}


_KEYED_TO_BADGE = Badge("secure", "SECURE — Secure Chorus (MIKEY-SAKKE), keys only the callee can decrypt",
                        _BADGES[SecurityLevel.SECURE].colour)


def badge(security: str | None, verified_identity: str | None = None, peer_assurance: str | None = None) -> Badge:
    """Secure Chorus (MIKEY-SAKKE, identity verified by ECCSI) vs SDES interop vs failed/none.

    ``security`` is a :class:`SecurityLevel` or its text (``"MIKEY-SAKKE"``, ``"SDES"``, as the call
    history stores it), or None. An outgoing MIKEY-SAKKE call (``peer_assurance`` ``keyed-to`` or
    ``peer-sending``) is secure but its callee was not verified: its badge says so."""
    level = SecurityLevel.of(security, verified_identity)
    if level is SecurityLevel.SECURE and peer_assurance in (PeerAssurance.KEYED_TO, PeerAssurance.PEER_SENDING):
        return _KEYED_TO_BADGE
    return _BADGES[level]


# --- plain words -----------------------------------------------------------------------------------
_MIKEY_REASONS = (
    ("bad signature", "{who} signature did not verify — call refused"),
    ("revoked", "{who} identity has been revoked — call refused"),
    ("replay", "the key message was replayed (a possible attack) — call refused"),
    ("unknown identity", "the call was encrypted for someone else — call refused"),
    ("expired key period", "{who} keys are for another key period — call refused"),
    ("expired timestamp", "the key message is too old (check both clocks) — call refused"),
    ("key unwrap failed", "the call key could not be decrypted — call refused"),
    ("malformed", "the key message was damaged — call refused"),
    ("unsupported", "the key message uses something this phone does not support — call refused"),
    ("is mandatory", "the other phone offered no Secure Chorus keys — call refused"),
    ("srtp is mandatory", "the other phone offered unencrypted audio — call refused"),
)
_STATUS = {
    404: "no such user", 408: "no answer", 480: "not available right now", 486: "busy", 487: "call cancelled",
    488: "the call's security was not accepted", 500: "the other phone had an internal error",
    503: "service unavailable", 600: "busy everywhere", 603: "declined", 403: "not allowed",
}


def explain(status: int | None, warning: str | None, *, incoming: bool) -> str:
    """A refused or failed call in words: ``explain(488, "MIKEY-SAKKE bad signature: …", incoming=True)``
    → ``"caller's signature did not verify — call refused"``."""
    text = (warning or "").lower()
    who = "caller's" if incoming else "your"  # outgoing: the callee did not accept our signature/keys
    for needle, words in _MIKEY_REASONS:
        if needle in text:
            sentence = words.format(who=who)
            if not incoming and needle in ("bad signature", "revoked", "expired key period"):
                sentence = sentence.replace("— call refused", "— the other phone refused the call")
            return sentence[0].upper() + sentence[1:]
    if status in _STATUS:
        return _STATUS[status][0].upper() + _STATUS[status][1:] + (f" ({warning})" if warning else "")
    if warning:
        return warning[0].upper() + warning[1:]
    return f"Call failed ({status})" if status else "Call failed"


# --- key status ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyStatus:
    current_period: int | None
    current_expires: datetime | None
    next_period: int | None
    periods: tuple[int, ...]

    def summary(self, now: datetime | None = None) -> str:
        if self.current_period is None:
            return "no keys for this period — secure calls unavailable"
        text = f"keys: period {self.current_period}"
        if self.current_expires is not None:
            text += f", expires in {countdown(self.current_expires, now)}"
        text += f"; next period {'held' if self.next_period is not None else 'not yet fetched'}"
        return text


def countdown(until: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    s = int((until - now).total_seconds())
    if s <= 0:
        return "expired"
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    return f"{d}d {h:02d}h {m:02d}m" if d else f"{h}h {m:02d}m"


class KeySetFacts(Protocol):
    """The public fields of a held key set (:class:`softphone.keys.keystore.KeySetSummary`)."""

    @property
    def user_uri(self) -> str: ...
    @property
    def key_period_no(self) -> int: ...
    @property
    def valid_from(self) -> datetime | None: ...
    @property
    def valid_to(self) -> datetime | None: ...


def key_status(summaries: Iterable[KeySetFacts], user_uri: str, now: datetime | None = None) -> KeyStatus:
    """From :meth:`softphone.keys.keystore.Keystore.list` entries (public fields only)."""
    now = now or datetime.now(UTC)
    mine: Sequence[KeySetFacts] = sorted((s for s in summaries if s.user_uri == user_uri),
                            key=lambda s: s.key_period_no)
    current = next((s for s in mine if (s.valid_from is None or s.valid_from <= now)
                    and (s.valid_to is None or now < s.valid_to)), None)
    nxt = None
    if current is not None:
        nxt = next((s.key_period_no for s in mine if s.key_period_no > current.key_period_no), None)
    return KeyStatus(current.key_period_no if current else None, current.valid_to if current else None, nxt,
                     tuple(s.key_period_no for s in mine))
