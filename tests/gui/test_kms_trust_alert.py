"""The app alerts in plain words when the KMS presents other community keys than the trusted ones."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab import certs
from softphone.config import Account
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient, refresh
from tests.gui.conftest import wait_for
from tests.kms.helpers import KMS_URI, make_community, start_kms

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from softphone.gui.app import build_window  # noqa: E402
from tests.gui.test_window import Audio, opened, show  # noqa: E402

ALICE = "sip:alice@example.org"
PW = "a strong test passphrase"


def _secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_refused_key_swap_is_shown_as_an_alert(tmp_path: Path, run_gui: Any) -> None:
    a_user = make_community(tmp_path / "a", users=(ALICE,))[ALICE]
    b_user = make_community(tmp_path / "b", users=(ALICE,))[ALICE]
    store = Keystore.create(tmp_path / "alice.keystore", PW.encode(), n_log2=12)
    with start_kms(tmp_path / "a") as a:
        refresh(store, KmsClient(a.url, a_user.token, cafile=a.cafile), ALICE)  # first provisioning: pinned
    trusted = Keystore.open(store.path, PW.encode()).certificate(KMS_URI)
    for name in ("tls-cert.pem", "tls-key.pem"):  # B at the same URL behind the same TLS key, other Z/KPAK
        shutil.copy2(tmp_path / "a" / name, tmp_path / "b" / name)
    with start_kms(tmp_path / "b", "--listen", f"127.0.0.1:{a.port}") as b:
        ca = certs.make_ca(tmp_path / "pki")
        ua = certs.issue(ca, tmp_path / "pki", "ua")
        # A TLS registrar that is not there: registration fails at once, the keys are what is tested.
        account = Account(name="alice", uri=ALICE, registrar="sip:127.0.0.1:9;transport=tls", username="alice",
                          tls_cert_file=ua.cert, tls_key_file=ua.key, ca_file=ca.cert, keystore=store.path,
                          keystore_passphrase_file=_secret(tmp_path / "pass", PW), kms_url=b.url,
                          kms_token_file=_secret(tmp_path / "token", b_user.token), kms_ca_file=a.cafile)
        controller, window = build_window(account, tmp_path / "data", audio=Audio(np.zeros(48000, dtype=np.int16)))

        async def scenario() -> None:
            async with opened(window):
                await show(window)
                await window.start()
                window.notice.setText("")
                await controller.fetch_keys(force=True)            # what Settings → Fetch now does
                await wait_for(lambda: "community keys" in window.notice.text(),
                               f"the key-swap alert ({window.notice.text()!r})")
                text = window.notice.text()
                assert text.startswith(f"Warning: the KMS at {b.url} presented a different set of community keys")
                assert "Nothing was replaced" in text and "softphone keys trust" in text and "\n" not in text
                assert window.notice.property("level") == "error" and window.notice.isVisible()

        run_gui(scenario, 60)
    assert Keystore.open(store.path, PW.encode()).certificate(KMS_URI) == trusted
