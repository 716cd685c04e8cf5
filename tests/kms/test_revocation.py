"""The signed revocation list (kmsinterface.revocation) and the keystore's no-rollback rule, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.eccsi import EccsiMasterKey
from kmsinterface.revocation import (
    RevocationList,
    RevocationListError,
    sign_revocation_list,
    signer_id,
    verify_revocation_list,
)
from kmsinterface.xml import KmsCertificate
from softphone.keys.keystore import Keystore, KeystoreError

KMS = "kms.example.org"
NOW = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def _signed(master: EccsiMasterKey, revoked: tuple[str, ...], issued: datetime = NOW, kms: str = KMS) -> bytes:
    ssk, pvt = master.issue(signer_id(kms))
    return sign_revocation_list(RevocationList(kms, issued, issued + timedelta(minutes=15), revoked),
                                ssk, pvt, master.kpak)


def test_round_trip_and_every_tampering_refused() -> None:
    master = EccsiMasterKey.generate()
    data = _signed(master, ("sip:mallory@example.org", "sip:eve@example.org"))
    rl = verify_revocation_list(data, {KMS: master.kpak})
    assert rl.revoked == ("sip:eve@example.org", "sip:mallory@example.org") and rl.issued == NOW

    doc = json.loads(data)
    for change in ({"revoked": ["sip:eve@example.org"]}, {"issued": "2027-01-01T00:00:00.000+00:00"},
                   {"kms_uri": "other.example.org"}, {"extra": 1}):
        with pytest.raises(RevocationListError):
            verify_revocation_list(json.dumps({**doc, **change}).encode(), {KMS: master.kpak,
                                                                            "other.example.org": master.kpak})
    with pytest.raises(RevocationListError, match="does not verify"):       # another community's key
        verify_revocation_list(data, {KMS: EccsiMasterKey.generate().kpak})
    with pytest.raises(RevocationListError, match="does not trust"):
        verify_revocation_list(data, {})
    with pytest.raises(RevocationListError):
        verify_revocation_list(b"not json", {KMS: master.kpak})


def test_a_user_signing_key_cannot_sign_a_list() -> None:
    """Users' keys are for 32-octet UIDs; a list signed as a user's UID does not verify as the KMS's."""
    master = EccsiMasterKey.generate()
    uid = bytes(32)
    ssk, pvt = master.issue(uid)
    from crypto.eccsi import EccsiSigner

    rl = RevocationList(KMS, NOW, NOW + timedelta(minutes=15), ())
    fields = rl.to_json()
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    forged = json.dumps({**fields, "signature": EccsiSigner(uid, ssk, pvt, master.kpak).sign(canonical).hex()})
    with pytest.raises(RevocationListError, match="does not verify"):
        verify_revocation_list(forged.encode(), {KMS: master.kpak})
    assert len(signer_id(KMS)) != 32


def test_keystore_keeps_the_newest_list_and_refuses_an_older_one(tmp_path: Path) -> None:
    master = EccsiMasterKey.generate()
    store = Keystore.create(tmp_path / "ks", b"correct horse battery staple")
    store.add_certificate(KmsCertificate(kms_uri=KMS, user_key_period=2592000, user_key_offset=0,
                                         pub_enc_key=b"\x04" + bytes(256), pub_auth_key=master.kpak))
    new = verify_revocation_list(_signed(master, ("sip:mallory@example.org",)), store.kpaks())
    old = verify_revocation_list(_signed(master, (), NOW - timedelta(hours=1)), store.kpaks())
    assert store.set_revocation_list(new)
    with pytest.raises(KeystoreError, match="older"):
        store.set_revocation_list(old)                      # replaying a list from before the revocation
    reopened = Keystore.open(tmp_path / "ks", b"correct horse battery staple")
    assert reopened.revoked() == {"sip:mallory@example.org"}


def test_erased_users_stay_revoked_while_their_keys_are_valid(tmp_path: Path) -> None:
    """Erasing (GDPR) a revoked user, or an active one, must not put their still-valid keys back in use."""
    from kms.issue import Issuer, init_community

    issuer = Issuer(init_community(tmp_path / "kms", KMS, b"operator passphrase"))
    try:
        c = issuer.community
        kpak = {KMS: c.eccsi.kpak}
        for name in ("mallory", "eve", "idle"):
            issuer.add_user(f"sip:{name}@example.org")
        for name in ("mallory", "eve"):
            user = issuer.store.get_user(f"sip:{name}@example.org")
            assert user is not None
            issuer.provision(user)
        issuer.revoke("sip:mallory@example.org")
        issuer.erase("sip:mallory@example.org")
        issuer.erase("sip:eve@example.org")                 # active, with keys: erasing revokes
        issuer.erase("sip:idle@example.org")                # never had keys: nothing to refuse
        rl = verify_revocation_list(issuer.revocation_list(), kpak)
        assert rl.revoked == ("sip:eve@example.org", "sip:mallory@example.org")
        assert issuer.store.kept_revoked("9999-01-01T00:00:00+00:00") == []   # dropped once the keys expired
    finally:
        issuer.close()
