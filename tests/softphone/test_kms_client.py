"""softphone.keys.kms_client against a real ``softphone-kms serve`` over HTTPS."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient, KmsClientError, KmsUnreachable, ntp_hex, read_transport_key, refresh
from tests.kms.helpers import make_community, start_kms

ALICE, BOB, TK = "sip:alice@example.org", "sip:bob@example.org", "sip:tk@example.org"


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("client") / "kms"
    users = make_community(d, users=(ALICE, BOB), trk_users=(TK,))
    server = start_kms(d)
    try:
        yield server, users
    finally:
        server.stop()


def test_ntp_hex_matches_ts_example() -> None:
    assert ntp_hex(datetime(2014, 2, 23, 8, 39, 14, tzinfo=UTC)) == "D6B4323200000000"


def test_fetch_validates_and_stores_then_idles(kms, tmp_path: Path) -> None:
    server, users = kms
    client = KmsClient(server.url, users[ALICE].token, cafile=server.cafile)
    init = client.init()
    assert init.user_uri == ALICE
    store = Keystore.create(tmp_path / "ks", b"a strong test passphrase")
    first = refresh(store, client, ALICE)
    n = store.period_at(init.certificate.kms_uri)
    assert first.fetched == [n, n + 1] and first.warning is None
    assert refresh(store, client, ALICE).fetched == []  # next period already held: no request
    keys = store.current(ALICE)
    again = client.key_prov(ALICE, datetime.now(UTC))
    assert [k.ssk for k in again.key_sets] == [keys.ssk]
    assert token_not_in_repr(client, users[ALICE].token)


def token_not_in_repr(client: KmsClient, token: str) -> bool:
    return token not in repr(client)


def test_transport_key_user(kms, tmp_path: Path) -> None:
    server, users = kms
    trk_file = tmp_path / "trk"
    trk_file.write_text(f"{users[TK].transport_key.key_id} {users[TK].transport_key.key.hex()}\n")
    trk_file.chmod(0o600)
    store = Keystore.create(tmp_path / "ks", b"a strong test passphrase")
    with pytest.raises(KmsClientError, match="encrypted under transport key"):
        refresh(store, KmsClient(server.url, users[TK].token, cafile=server.cafile), TK)
    client = KmsClient(server.url, users[TK].token, cafile=server.cafile, transport_key=read_transport_key(trk_file))
    assert len(refresh(store, client, TK).fetched) == 2
    trk_file.chmod(0o644)
    with pytest.raises(KmsClientError, match="readable by others"):
        read_transport_key(trk_file)


def test_refusals_surface_status(kms) -> None:
    server, users = kms
    with pytest.raises(KmsClientError, match="HTTP 401 invalid bearer token") as info:
        KmsClient(server.url, "forged", cafile=server.cafile).key_prov()
    assert info.value.status == 401
    with pytest.raises(KmsClientError, match="HTTP 403 a user may only fetch its own keys"):
        KmsClient(server.url, users[ALICE].token, cafile=server.cafile).key_prov(BOB)
    with pytest.raises(KmsClientError, match="must be https"):
        KmsClient("http://127.0.0.1:1", "t")


def test_untrusted_certificate_is_unreachable(kms) -> None:
    server, users = kms
    with pytest.raises(KmsUnreachable, match="TLS with KMS"):
        KmsClient(server.url, users[ALICE].token).init()  # system CAs do not know the self-signed cert


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_kms_keeps_cached_keys(kms, tmp_path: Path) -> None:
    server, users = kms
    store = Keystore.create(tmp_path / "ks", b"a strong test passphrase")
    dead = KmsClient(f"https://127.0.0.1:{_dead_port()}", users[BOB].token, cafile=server.cafile, timeout=3)
    with pytest.raises(KmsUnreachable, match="unreachable"):
        refresh(store, dead, BOB)
    refresh(store, KmsClient(server.url, users[BOB].token, cafile=server.cafile), BOB)
    result = refresh(store, dead, BOB, force=True)
    assert result.fetched == [] and "using cached keys for period" in result.warning
    assert store.current(BOB).user_uri == BOB
