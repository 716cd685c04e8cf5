"""The GUI's Qt-free model: contacts, history, badges, plain-words failures, key status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from softphone.gui.model import (
    CallHistory,
    CallRecord,
    ContactBook,
    GuiDataError,
    badge,
    explain,
    key_status,
    normalise_uri,
)


def test_contacts_round_trip_edit_and_0600(tmp_path: Path) -> None:
    path = tmp_path / "contacts.toml"
    book = ContactBook(path)
    book.add('Bob "the builder"', "bob@example.org")
    book.add("Carol", "sip:carol@example.org")
    book.update(1, "Carol B", "sips:carol@example.org")
    again = ContactBook(path)
    assert [(c.name, c.uri) for c in again.contacts] == [('Bob "the builder"', "sip:bob@example.org"),
                                                       ("Carol B", "sips:carol@example.org")]
    again.remove(0)
    assert [c.name for c in ContactBook(path).contacts] == ["Carol B"]
    assert path.stat().st_mode & 0o077 == 0
    with pytest.raises(GuiDataError, match="needs a name"):
        book.add(" ", "sip:x@y")
    path.write_text("[[contact]]\nname = 1\n")
    with pytest.raises(GuiDataError, match="entry 1"):
        ContactBook(path)


def test_normalise_uri() -> None:
    assert normalise_uri("bob", "lab.test") == "sip:bob@lab.test"
    assert normalise_uri(" bob@x.org ") == "sip:bob@x.org"
    assert normalise_uri("sips:a@b") == "sips:a@b"
    for bad in ("", "bob", "a b@c", "<sip:x@y>"):
        with pytest.raises(GuiDataError):
            normalise_uri(bad)


def test_history_keeps_no_secrets_and_recent_peers(tmp_path: Path) -> None:
    h = CallHistory(tmp_path / "h.jsonl")
    for peer in ("sip:a@x", "sip:b@x", "sip:a@x"):
        h.add(CallRecord("2026-11-29T01:00:00+00:00", "outgoing", peer, peer, "MIKEY-SAKKE", "answered", 3.0))
    assert CallHistory(tmp_path / "h.jsonl").recent_peers() == ["sip:a@x", "sip:b@x"]
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(GuiDataError, match="line 1"):
        CallHistory(tmp_path / "bad.jsonl")


def test_badges_and_explanations() -> None:
    assert badge("MIKEY-SAKKE", "sip:b@x").level == "secure"
    assert badge("MIKEY-SAKKE", None).level == "insecure"   # unverified MIKEY is not shown as secure
    assert badge("SDES").level == "interop"
    assert badge(None).level == "insecure"
    assert explain(488, "MIKEY-SAKKE bad signature: ECCSI verification failed", incoming=True) == \
        "Caller's signature did not verify — call refused"
    assert explain(488, "MIKEY-SAKKE bad signature: x", incoming=False) == \
        "Your signature did not verify — the other phone refused the call"
    assert explain(488, "MIKEY-SAKKE revoked identity: sip:m@x is revoked", incoming=True).startswith(
        "Caller's identity has been revoked")
    assert explain(486, None, incoming=False) == "Busy"
    assert explain(None, None, incoming=False) == "Call failed"


def test_key_status_current_next_and_countdown() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    s = lambda n, a, b: SimpleNamespace(user_uri="sip:a@x", key_period_no=n, valid_from=a, valid_to=b)  # noqa: E731
    cur = s(10, now - timedelta(days=5), now + timedelta(days=2, hours=3))
    ks = key_status([cur, s(11, cur.valid_to, cur.valid_to + timedelta(days=30)),
                     SimpleNamespace(user_uri="sip:other@x", key_period_no=99, valid_from=None, valid_to=None)],
                    "sip:a@x", now)
    assert (ks.current_period, ks.next_period, ks.periods) == (10, 11, (10, 11))
    assert ks.summary(now) == "keys: period 10, expires in 2d 03h 00m; next period held"
    assert key_status([], "sip:a@x", now).summary(now).startswith("no keys for this period")
