"""The account's RFC 5626 instance id: a urn:uuid kept beside the keystore, stable across starts."""

from __future__ import annotations

import uuid
from pathlib import Path

from softphone.calls.phone import instance_id
from softphone.config import Account


def test_instance_id_is_created_once_beside_the_keystore(tmp_path: Path) -> None:
    account = Account(name="alice", uri="sip:alice@example.org", registrar=None, username="alice",
                      keystore=tmp_path / "alice.keystore")
    first = instance_id(account)
    assert first.startswith("urn:uuid:") and uuid.UUID(first[9:])
    assert (tmp_path / "alice.keystore.instance").read_text().strip() == first
    assert instance_id(account) == first
    (tmp_path / "alice.keystore.instance").write_text("garbage\n")
    assert instance_id(account) != first     # an unreadable id is replaced, not sent
