"""kms.issue: community creation, users, one key set per (user, period), erase — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto import eccsi, sakke
from crypto.identity import NTP_UNIX_OFFSET, mikey_sakke_uid
from kms.audit import AuditLog
from kms.issue import Issuer, KmsError, init_community, open_community
from tests.kms.helpers import KMS_URI, PASSPHRASE

PW = PASSPHRASE.encode()


@pytest.fixture
def issuer(tmp_path: Path, db_url: str):
    init_community(tmp_path / "kms", KMS_URI, PW, db=db_url)
    iss = Issuer(open_community(tmp_path / "kms", PW))
    yield iss
    iss.close()


def test_community_files_sealed_and_private(tmp_path: Path) -> None:
    c = init_community(tmp_path / "kms", KMS_URI, PW)
    for name in ("master.sealed", "kms.json", "audit.log"):
        assert (tmp_path / "kms" / name).stat().st_mode & 0o777 == 0o600
    sealed = (tmp_path / "kms" / "master.sealed").read_bytes()
    for secret in (format(c.sakke.z, "x"), format(c.eccsi.ksak, "x")):
        assert secret.encode() not in sealed
    assert repr(c).count(format(c.eccsi.ksak, "x")) == 0 and "DataKey" not in repr(c)
    with pytest.raises(KmsError, match="wrong passphrase"):
        open_community(tmp_path / "kms", b"guess")
    with pytest.raises(KmsError, match="already holds"):
        init_community(tmp_path / "kms", KMS_URI, PW)
    reopened = open_community(tmp_path / "kms", PW)
    assert reopened.eccsi.kpak == c.eccsi.kpak and reopened.sakke.Z == c.sakke.Z
    assert AuditLog(tmp_path / "kms" / "audit.log").records()[0]["event"] == "master.create"


def test_period_is_ntp_based(tmp_path: Path) -> None:
    c = init_community(tmp_path / "kms", KMS_URI, PW, period=2592000)
    when = datetime(2021, 5, 17, 13, 25, 16, tzinfo=UTC)  # the reference sample's time
    assert c.period_at(when) == (int(when.timestamp()) + NTP_UNIX_OFFSET) // 2592000 == 1477
    assert c.period_start(1477) <= when < c.period_start(1478)


def test_issued_keys_validate_independently_and_repeat(issuer: Issuer) -> None:
    alice = issuer.add_user("sip:alice@example.org")
    user = issuer.authenticate(alice.token)
    first = issuer.provision(user)
    n = issuer.community.period_at(datetime.now(UTC))
    assert [ks.key_period_no for ks in first] == [n, n + 1]
    c = issuer.community
    for ks in first:
        uid = mikey_sakke_uid("sip:alice@example.org", KMS_URI, c.user_key_period, c.user_key_offset, ks.key_period_no)
        assert ks.user_id == uid
        eccsi.validate_signing_key(uid, ks.ssk, ks.pvt, c.eccsi.kpak)
        sakke.validate_rsk(uid, ks.rsk, c.sakke.Z)
    again = issuer.provision(issuer.authenticate(alice.token))
    assert [(k.rsk, k.ssk, k.pvt) for k in again] == [(k.rsk, k.ssk, k.pvt) for k in first]
    assert issuer.store.count_keysets("sip:alice@example.org") == 2
    events = [r["event"] for r in issuer.audit.records()]
    assert events.count("key.issue") == 2 and events.count("key.provision") == 2


def test_authentication_and_revocation(issuer: Issuer) -> None:
    alice = issuer.add_user("sip:alice@example.org")
    with pytest.raises(KmsError) as info:
        issuer.authenticate("not-a-token")
    assert info.value.status == 401
    issuer.revoke("sip:alice@example.org")
    with pytest.raises(KmsError) as info:
        issuer.authenticate(alice.token)
    assert info.value.status == 403
    with pytest.raises(KmsError, match="already exists"):
        issuer.add_user("sip:alice@example.org")
    raw = issuer.store.get_user("sip:alice@example.org")
    assert alice.token not in raw.token_hash and alice.token not in repr(alice)


def test_provisioning_window(issuer: Issuer) -> None:
    user = issuer.authenticate(issuer.add_user("sip:alice@example.org").token)
    far = datetime.now(UTC) + timedelta(seconds=3 * issuer.community.user_key_period)
    with pytest.raises(KmsError, match="outside the provisioning window"):
        issuer.provision(user, far)
    assert issuer.provision(user, far, window=False, only_period=True)[0].key_period_no == \
        issuer.community.period_at(far)


def test_erase_leaves_only_pseudonym(issuer: Issuer) -> None:
    new = issuer.add_user("sip:erin@example.org", transport_key=True)
    issuer.provision(issuer.authenticate(new.token))
    ref = issuer.user_ref("sip:erin@example.org")
    assert len(issuer.audit.export(ref)) == 4  # add, 2 issues, provision
    assert issuer.erase("sip:erin@example.org") == ref
    assert issuer.store.get_user("sip:erin@example.org") is None
    assert issuer.store.count_keysets("sip:erin@example.org") == 0
    log = issuer.audit.path.read_bytes()
    assert b"erin" not in log and new.token.encode() not in log
    assert issuer.audit.records()[-1] == {**issuer.audit.records()[-1], "event": "user.erase", "user": ref}
    issuer.audit.verify()
    with pytest.raises(KmsError, match="no user"):
        issuer.erase("sip:erin@example.org")
