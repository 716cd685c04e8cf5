"""Keys from our KMS, fetched over HTTPS into two phones' keystores, carry a MIKEY-SAKKE I_MESSAGE end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto.identity import ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.errors import MikeyError
from crypto.mikey.verify import Responder
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient, refresh
from tests.kms.helpers import make_community, start_kms

ALICE, BOB, EVE = "sip:alice@example.org", "sip:bob@example.org", "sip:eve@example.org"


def test_alice_to_bob_with_keys_from_our_kms(tmp_path: Path) -> None:
    users = make_community(tmp_path / "kms", users=(ALICE, BOB, EVE))
    server = start_kms(tmp_path / "kms")
    stores = {}
    try:
        for uri in (ALICE, BOB, EVE):
            stores[uri] = Keystore.create(tmp_path / f"{uri[4:9]}.ks", b"a strong test passphrase")
            client = KmsClient(server.url, users[uri].token, cafile=server.cafile)
            assert len(refresh(stores[uri], client, uri).fetched) == 2
    finally:
        server.stop()
    now = datetime.now(UTC)
    alice = stores[ALICE].current(ALICE, now)
    built = Initiator(alice.for_mikey()).build(BOB, ntp_time=ntp_seconds(now.timestamp()))
    bob = Responder(stores[BOB].mikey_key_sets(BOB))
    opened = bob.process(built.data, claimed_sender=ALICE, now=ntp_seconds(now.timestamp()))
    assert opened.key == built.key
    with pytest.raises(MikeyError):  # eve's RSK is not bob's: she cannot open it
        Responder(stores[EVE].mikey_key_sets(EVE)).process(built.data, now=ntp_seconds(now.timestamp()))
    assert stores[BOB].kms_params("kms.example.org").kpak == alice.kpak
