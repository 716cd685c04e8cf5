"""softphone.keys.keystore: validated imports (Streamwide/Alea samples, our KMS), encryption at rest, API."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kms.issue import Issuer, open_community
from kmsinterface.xml import KeyProvResponse, parse_key_prov, parse_kms_init
from softphone.keys.keystore import Keystore, KeystoreError, NoKeysError
from tests.kms.helpers import PASSPHRASE, make_community

PW = b"phone passphrase"
XML = "streamwide/xml"


def _samples(vectors_dir: Path, prefix: str) -> tuple[bytes, list[Path]]:
    d = vectors_dir / XML
    return (d / f"{prefix}_init.xml").read_bytes(), sorted(d.glob(f"{prefix}_keyprov_*.xml"))


def test_imports_streamwide_and_alea_samples(tmp_path: Path, vectors_dir: Path, streamwide_keysets: dict) -> None:
    ks = Keystore.create(tmp_path / "ks", PW)
    stored = []
    for prefix in ("streamwide_official_v5", "alea_v3"):
        init, provs = _samples(vectors_dir, prefix)
        ks.add_certificate(parse_kms_init(init).certificate)
        for path in provs:
            if "u2alea" in path.name:
                continue
            stored += ks.import_key_prov(parse_key_prov(path.read_bytes()))
    assert len(stored) == 7
    reopened = Keystore.open(tmp_path / "ks", PW)
    alice = reopened.get("sip:alice@streamwide.com", 236)
    ref = streamwide_keysets["streamwide_official_v5"]
    assert alice.ssk.hex() == ref["users"]["sip:alice@streamwide.com"]["SSK"]
    assert alice.rsk.hex() == ref["users"]["sip:alice@streamwide.com"]["RSK"]
    assert alice.kpak.hex() == ref["KPAK"] and alice.z.hex() == ref["Z"]
    assert (alice.user_key_period, alice.kms_uri) == (16777215, "kms.mydev.streamwide.com")
    assert alice.ssk.hex() not in repr(alice) and alice.rsk.hex() not in repr(alice)


def test_u2alea_refused_with_clear_error(tmp_path: Path, vectors_dir: Path) -> None:
    ks = Keystore.create(tmp_path / "ks", PW)
    init, provs = _samples(vectors_dir, "alea_v3")
    ks.add_certificate(parse_kms_init(init).certificate)
    [u2] = [p for p in provs if "u2alea" in p.name]
    with pytest.raises(KeystoreError, match=r"key set sip:u2alea@veronica-cluster period \d+: .*fails") as info:
        ks.import_key_prov(parse_key_prov(u2.read_bytes()))
    assert "\n" not in str(info.value)
    assert ks.list() == [] and Keystore.open(tmp_path / "ks", PW).list() == []


def test_keyprov_without_certificate_or_with_wrong_uid_refused(tmp_path: Path, vectors_dir: Path) -> None:
    ks = Keystore.create(tmp_path / "ks", PW)
    init, provs = _samples(vectors_dir, "streamwide_official_v5")
    prov = parse_key_prov(provs[0].read_bytes())
    with pytest.raises(NoKeysError, match="no certificate for KMS kms.mydev.streamwide.com"):
        ks.import_key_prov(prov)
    ks.add_certificate(parse_kms_init(init).certificate)
    bad = dataclasses.replace(prov.key_sets[0], key_period_no=prov.key_sets[0].key_period_no + 1)
    with pytest.raises(KeystoreError, match="UserID does not match"):
        ks.import_key_prov(dataclasses.replace(prov, key_sets=[bad]))
    swapped = dataclasses.replace(prov.key_sets[0], ssk=bytes(31) + b"\x01")
    with pytest.raises(KeystoreError, match="signing key"):
        ks.import_key_prov(dataclasses.replace(prov, key_sets=[prov.key_sets[0], swapped]))
    assert ks.list() == []  # all or nothing


def test_no_key_bytes_in_clear_on_disk(tmp_path: Path, vectors_dir: Path) -> None:
    path = tmp_path / "ks"
    ks = Keystore.create(path, PW)
    init, provs = _samples(vectors_dir, "streamwide_official_v5")
    ks.add_certificate(parse_kms_init(init).certificate)
    secrets = []
    for p in provs:
        for k in ks.import_key_prov(parse_key_prov(p.read_bytes())):
            held = ks.get(k.user_uri, k.key_period_no)
            secrets += [held.ssk, held.rsk, held.pvt]
    blob = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(secrets) == 12
    for secret in secrets:
        for form in (secret, secret.hex().encode(), secret.hex().upper().encode(), secret[:16], secret[-16:]):
            assert form not in blob
    assert b"streamwide" not in blob
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        Keystore.open(path, b"guess")
    tampered = bytearray(blob)
    tampered[-5] ^= 0x40
    path.write_bytes(bytes(tampered))
    with pytest.raises(KeystoreError, match="wrong passphrase or file modified"):
        Keystore.open(path, PW)


def test_our_kms_keys_keep_three_newest_periods(tmp_path: Path) -> None:
    make_community(tmp_path / "kms", users=("sip:alice@example.org",))
    issuer = Issuer(open_community(tmp_path / "kms", PASSPHRASE.encode()))
    try:
        user = issuer.store.get_user("sip:alice@example.org")
        c = issuer.community
        now = datetime.now(UTC)
        n = c.period_at(now)
        ks = Keystore.create(tmp_path / "ks", PW)
        ks.past_period_retention_s = 0  # no history kept for stored messages
        kept = Keystore.create(tmp_path / "ks-history", PW)
        for store in (ks, kept):
            store.add_certificate(c.certificate())
        assert ks.needs_refresh("sip:alice@example.org", c.kms_uri, now)
        for p in range(n - 3, n + 2):
            sets = issuer.provision(user, c.period_start(p), only_period=True, window=False)
            ks.import_key_prov(KeyProvResponse(user.uri, c.kms_uri, now, sets))
            if p >= n - 2:
                kept.import_key_prov(KeyProvResponse(user.uri, c.kms_uri, now, sets))
    finally:
        issuer.close()
    assert [s.key_period_no for s in ks.list()] == [n - 1, n, n + 1]  # previous, current, next
    # by default a past period's keys stay PAST_PERIOD_RETENTION_S after it ended (stored messages)
    assert [s.key_period_no for s in kept.list()] == [n - 2, n - 1, n, n + 1]
    assert not ks.needs_refresh("sip:alice@example.org", c.kms_uri, now)
    assert ks.current("sip:alice@example.org", now).key_period_no == n
    with pytest.raises(NoKeysError, match=f"key period {n - 2}"):
        ks.get("sip:alice@example.org", n - 2)
    with pytest.raises(NoKeysError, match="no keys for sip:bob"):
        ks.current("sip:bob@example.org")
