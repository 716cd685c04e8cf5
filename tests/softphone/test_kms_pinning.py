"""The KMS's TLS key and community keys are pinned at first provisioning; a swap is refused until the user trusts it.

Real ``softphone-kms serve`` processes: community A serves first; then, at the same URL, community B (same
KMS URI, other Z/KPAK), either behind A's TLS key or behind its own certificate that the client's CA store
also trusts (as a public CA would vouch for an impostor).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kms.issue import NewUser, open_community
from kms.server import self_signed_certificate
from kmsinterface.xml import serialise_kms_certificate
from lab.kms import KmsServer
from softphone.cli import main
from softphone.keys.errors import KeysError
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import (
    KmsCertificateChanged,
    KmsClient,
    KmsKeysChanged,
    KmsTrustChanged,
    refresh,
)
from tests.kms.helpers import KMS_URI, PASSPHRASE, make_community, start_kms

ALICE = "sip:alice@example.org"
PW = b"a strong test passphrase"


@dataclass
class Swap:
    store: Keystore
    a: KmsServer
    a_user: NewUser
    b_dir: Path
    b_user: NewUser
    bundle: Path          # a CA file trusting both servers' certificates (a "system store")


@pytest.fixture
def swap(tmp_path: Path) -> Iterator[Swap]:
    a_user = make_community(tmp_path / "a", users=(ALICE,))[ALICE]
    b_user = make_community(tmp_path / "b", users=(ALICE,))[ALICE]
    store = Keystore.create(tmp_path / "ks", PW, n_log2=12)
    with start_kms(tmp_path / "a") as a:
        bundle = tmp_path / "bundle.pem"
        yield Swap(store, a, a_user, tmp_path / "b", b_user, bundle)


def _first_provisioning(s: Swap) -> None:
    first = refresh(s.store, KmsClient(s.a.url, s.a_user.token, cafile=s.a.cafile), ALICE)
    assert len(first.fetched) == 2 and first.pinned is not None
    assert (first.pinned.origin, first.pinned.kms_uri) == (f"127.0.0.1:{s.a.port}", KMS_URI)
    assert s.store.kms_pin(f"127.0.0.1:{s.a.port}") == first.pinned


def _held(store: Keystore) -> tuple:
    reopened = Keystore.open(store.path, PW)
    return (reopened.certificate(KMS_URI), reopened.list(), reopened.kms_pins(),
            [k.ssk for k in reopened.mikey_key_sets(ALICE)])


def _b_at_a_url(s: Swap) -> KmsServer:
    s.a.stop()
    return start_kms(s.b_dir, "--listen", f"127.0.0.1:{s.a.port}")


def test_changed_community_keys_refused_nothing_replaced(swap: Swap) -> None:
    _first_provisioning(swap)
    before = _held(swap.store)
    for name in ("tls-cert.pem", "tls-key.pem"):  # B behind A's very TLS key: only Z/KPAK differ
        shutil.copy2(swap.a.cafile.parent / name, swap.b_dir / name)
    with _b_at_a_url(swap) as b:
        client = KmsClient(b.url, swap.b_user.token, cafile=swap.a.cafile)
        with pytest.raises(KmsKeysChanged, match="other public keys .* refused, nothing replaced") as info:
            refresh(swap.store, client, ALICE, force=True)
        assert isinstance(info.value, KeysError) and "\n" not in str(info.value)
        assert "softphone keys trust" in str(info.value)
        assert _held(swap.store) == before

        # the user imports B's certificate (as the operator handed it over): now B's keys are accepted
        b = open_community(swap.b_dir, PASSPHRASE.encode())
        cert_file = swap.b_dir.parent / "b-cert.xml"
        cert_file.write_bytes(serialise_kms_certificate(b.certificate()))
        pw = swap.b_dir.parent / "pw"
        pw.write_text(PW.decode())
        pw.chmod(0o600)
        assert main(["keys", "import", "--keystore", str(swap.store.path), "--passphrase-file", str(pw),
                     str(cert_file)]) == 0
        store = Keystore.open(swap.store.path, PW)
        assert store.certificate(KMS_URI).pub_auth_key == b.eccsi.kpak and store.list() == []  # old sets dropped
        again = refresh(store, client, ALICE)
        assert len(again.fetched) == 2 and store.current(ALICE).kpak == b.eccsi.kpak


def test_changed_tls_key_refused_before_the_token_is_sent(swap: Swap, tmp_path: Path, capsys) -> None:
    _first_provisioning(swap)
    before = _held(swap.store)
    self_signed_certificate(swap.b_dir, ["localhost", "127.0.0.1"])  # B's own certificate, another subject
    with _b_at_a_url(swap) as b:
        swap.bundle.write_bytes(swap.a.cafile.read_bytes() + b.cafile.read_bytes())
        client = KmsClient(b.url, swap.b_user.token, cafile=swap.bundle)
        with pytest.raises(KmsCertificateChanged, match="different TLS key .* nothing sent or replaced"):
            refresh(swap.store, client, ALICE, force=True)
        assert _held(swap.store) == before
        audit = swap.b_dir / "audit.log"
        assert "kms.init" not in audit.read_text() and "key.provision" not in audit.read_text()  # B saw no token

        # the CLI says the same in one line; ``keys trust`` is the user's explicit acceptance
        pw, token = tmp_path / "pw", tmp_path / "token"
        pw.write_text(PW.decode())
        token.write_text(swap.b_user.token)
        pw.chmod(0o600)
        token.chmod(0o600)
        fetch = ["--keystore", str(swap.store.path), "--passphrase-file", str(pw), "--kms", b.url,
                 "--token-file", str(token), "--ca", str(swap.bundle), "--user", ALICE]
        assert main(["keys", "fetch", "--force", *fetch]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "different TLS key" in err and "softphone keys trust" in err
        assert _held(swap.store) == before
        assert main(["keys", "trust", *fetch]) == 0
        out = capsys.readouterr().out
        assert f"trusted KMS 127.0.0.1:{b.port}: community {KMS_URI}" in out
        assert "kms.init" in audit.read_text()
        store = Keystore.open(swap.store.path, PW)
        community = open_community(swap.b_dir, PASSPHRASE.encode())
        assert store.certificate(KMS_URI).pub_enc_key == community.sakke.Z
        assert store.current(ALICE).kpak == community.eccsi.kpak
        assert refresh(store, client, ALICE, force=True).pinned is None  # accepted: pinned, no error


def test_error_types() -> None:
    assert issubclass(KmsCertificateChanged, KmsTrustChanged) and issubclass(KmsKeysChanged, KmsTrustChanged)
    assert issubclass(KmsTrustChanged, KeysError)
