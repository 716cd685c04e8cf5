"""The first-run wizard under Xvfb against the lab (Kamailio TLS + HTTPS KMS), typed into like a user would.

Each page first gets a mistake and must say what is wrong in plain words, then the right values;
the test page creates the keystore, fetches keys and signs in (a wrong password is caught there
first); Finish writes the accounts file 0600 and the main window starts from it, registered.
Screenshots of every page go to ``build/screenshots/wizard-*.png`` (copied to docs/screenshots/).
``softphone gui`` without an accounts file (or with an empty one) opens the wizard; cancelling exits 2.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from lab.kms import run_kms
from softphone.config import load_accounts
from tests.conftest import require_tool
from tests.gui.conftest import wait_for
from tests.gui.test_window import ERROR_RED, Audio, has_colour, screenshot, show, ui

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QWizard  # noqa: E402

from softphone.gui.app import build_window, needs_setup  # noqa: E402
from softphone.gui.wizard import (  # noqa: E402
    FirstRunWizard,
    normalise_registrar,
    normalise_sip_uri,
    passphrase_problem,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "violet tractor 7 lantern"


def test_plain_word_checks() -> None:
    assert normalise_sip_uri("carol@lab.test") == "sip:carol@lab.test"
    with pytest.raises(ValueError, match="user@domain"):
        normalise_sip_uri("carol")
    assert normalise_registrar("127.0.0.1:5071") == "sip:127.0.0.1:5071;transport=tls"
    assert normalise_registrar("sip.example.org") == "sip:sip.example.org:5061;transport=tls"
    with pytest.raises(ValueError, match="TLS only"):
        normalise_registrar("sip:127.0.0.1:5060;transport=udp")
    assert "12 characters" in (passphrase_problem("abc") or "")
    assert "carol" in (passphrase_problem("carol-is-the-best-1", ("carol",)) or "")
    assert passphrase_problem("aaaaaaaaaaaaaaaa") and passphrase_problem("onlylettershere")
    assert passphrase_problem(PASSPHRASE) is None


async def _next(wizard: FirstRunWizard) -> None:
    await ui(QTest.mouseClick, wizard.button(QWizard.WizardButton.NextButton), Qt.MouseButton.LeftButton)


async def _type(edit: Any, text: str) -> None:
    edit.clear()
    await ui(QTest.keyClicks, edit, text)


async def _refused(wizard: FirstRunWizard, page: Any, needle: str) -> None:
    await _next(wizard)
    await wait_for(lambda: needle in page.error.text(), f"the error {needle!r} (shown: {page.error.text()!r})", 5)
    assert wizard.currentPage() is page


def test_first_run_wizard_against_the_lab(lab: Lab, tmp_path: Path, run_gui: Any, screenshots: Path) -> None:
    assert lab.kamailio is not None
    config = tmp_path / "cfg" / "accounts.toml"
    config.parent.mkdir()
    config.write_text("# nothing yet\n")
    assert needs_setup(config) and needs_setup(tmp_path / "missing.toml")
    wizard = FirstRunWizard(config, tmp_path / "data")

    async def scenario() -> None:
        await show(wizard)
        w = wizard
        await _type(w.identity.uri, "carol")
        await _refused(w, w.identity, "user@domain")
        shot = screenshot(w, screenshots, "wizard-error")
        assert has_colour(shot, ERROR_RED, 40)
        await _type(w.identity.uri, "carol@lab.test")
        await _type(w.identity.display, "Carol Example")
        screenshot(w, screenshots, "wizard-1-identity")
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.server, "the server page")
        assert w.identity.uri.text() == "sip:carol@lab.test"

        await _type(w.server.registrar, f"sip:127.0.0.1:{lab.kamailio.udp_port};transport=udp")
        await _type(w.server.password, "wrong password")
        await _refused(w, w.server, "TLS only")
        await _type(w.server.registrar, f"127.0.0.1:{lab.kamailio.tls_port}")
        w.server.ca_file.setText(str(tmp_path / "no-such-ca.pem"))
        await _refused(w, w.server, "does not exist")
        w.server.ca_file.setText(str(lab.pki["ca"].cert))
        await _refused(w, w.server, "certificate and private key")
        w.server.cert_file.setText(str(lab.pki["ua"].cert))
        w.server.key_file.setText(str(lab.pki["ua"].key))
        screenshot(w, screenshots, "wizard-2-server")
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.kms, "the KMS page")

        await _type(w.kms.url, lab.kms_url.replace("https", "http"))
        await _refused(w, w.kms, "https://")
        await _type(w.kms.url, lab.kms_url)
        await _refused(w, w.kms, "token")
        await _type(w.kms.token, lab.tokens["carol"])
        w.kms.kms_ca.setText(str(lab.kms_ca))
        screenshot(w, screenshots, "wizard-3-kms")
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.secret, "the passphrase page")
        assert w.secret.keystore.text() == str(tmp_path / "data" / "carol.keystore")

        await _type(w.secret.passphrase, "carol1234567")
        await wait_for(lambda: w.secret.strength.text().startswith("Weak"), "the strength hint")
        await _refused(w, w.secret, "'carol'")
        await _type(w.secret.passphrase, PASSPHRASE)
        await _type(w.secret.again, PASSPHRASE + "x")
        await _refused(w, w.secret, "differ")
        await _type(w.secret.again, PASSPHRASE)
        assert w.secret.strength.text() == "Strong enough."
        screenshot(w, screenshots, "wizard-4-passphrase")
        await _next(w)

        # the test page: keys come, the wrong password is caught at sign-in
        await wait_for(lambda: w.currentPage() is w.test, "the test page")
        await wait_for(lambda: "✘" in w.test.checks.text(), "the failed sign-in", 30)
        assert "✔ Keys for sip:carol@lab.test: key period" in w.test.checks.text()
        assert "user name or password is wrong" in w.test.checks.text(), w.test.checks.text()
        assert not w.button(QWizard.WizardButton.FinishButton).isEnabled()
        screenshot(w, screenshots, "wizard-5-test-failed")
        await ui(QTest.mouseClick, w.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
        await ui(QTest.mouseClick, w.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
        await wait_for(lambda: w.currentPage() is w.kms, "back to the KMS page")
        await ui(QTest.mouseClick, w.button(QWizard.WizardButton.BackButton), Qt.MouseButton.LeftButton)
        await wait_for(lambda: w.currentPage() is w.server, "back to the server page")
        await _type(w.server.password, lab.passwords["carol"])
        for page in (w.kms, w.secret, w.test):
            await _next(w)
            await wait_for(lambda page=page: w.currentPage() is page, "the next page")
        await wait_for(lambda: w.test.passed, f"the checks to pass ({w.test.checks.text()!r})", 30)
        assert "✔ Signed in to sip:127.0.0.1" in w.test.checks.text()
        finish = w.button(QWizard.WizardButton.FinishButton)
        await wait_for(finish.isEnabled, "Finish to be enabled")
        screenshot(w, screenshots, "wizard-5-test")
        await ui(QTest.mouseClick, finish, Qt.MouseButton.LeftButton)
        await wait_for(lambda: not w.isVisible(), f"the wizard to close ({w.test.error.text()!r})")

    run_gui(scenario, 150)
    assert lab.kamailio.matching(r"LAB REGISTER aor=sip:carol@lab.test .*expires=0 ")   # the test signed out
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    account = load_accounts(config)[0]
    assert account.uri == "sip:carol@lab.test" and account.display_name == "Carol Example"
    assert account.password() == lab.passwords["carol"] and account.kms_token() == lab.tokens["carol"]
    for path in config.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert PASSPHRASE not in config.read_text()                           # secrets only in their 0600 files
    assert account.keystore_passphrase() == PASSPHRASE                     # as softphone setup writes it

    # the main window opens from the new account, unlocked with the wizard's passphrase
    controller, window = build_window(account, tmp_path / "data", audio=Audio(np.zeros(1)))
    controller.unlock(PASSPHRASE)

    async def opened() -> None:
        await show(window)
        try:
            assert await window.start(), window.notice.text()
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            assert "period" in window.keys.text()
        finally:
            window.close()
            await wait_for(lambda: controller.phone is None and not controller._tasks, "the phone to stop")

    run_gui(opened, 60)


def test_import_kms_files(lab: Lab, tmp_path: Path, run_gui: Any) -> None:
    """Offline: the KMS XML files an administrator exported instead of a KMS URL and token."""
    assert lab.kamailio is not None
    kms_dir = str(lab.workdir / "kms")
    init, prov = tmp_path / "init.xml", tmp_path / "prov.xml"
    for args in (("export-init", "--out", str(init)), ("provision", "--user", lab.uri("bob"), "--out", str(prov))):
        out = run_kms(lab._kms_passphrase, *args, "--dir", kms_dir)
        assert out.returncode == 0, out.stderr
    config = tmp_path / "cfg" / "accounts.toml"
    wizard = FirstRunWizard(config, tmp_path / "data")

    async def scenario() -> None:
        w = wizard
        await show(w)
        w.identity.uri.setText("bob@lab.test")
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.server, "the server page")
        w.server.registrar.setText(f"127.0.0.1:{lab.kamailio.tls_port}")
        w.server.password.setText(lab.passwords["bob"])
        w.server.ca_file.setText(str(lab.pki["ca"].cert))
        w.server.cert_file.setText(str(lab.pki["ua"].cert))
        w.server.key_file.setText(str(lab.pki["ua"].key))
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.kms, "the KMS page")
        await ui(QTest.keyClick, w.kms.offline, Qt.Key.Key_I, Qt.KeyboardModifier.AltModifier)  # Alt+I: Import
        await wait_for(w.kms.offline.isChecked, "the import choice")
        assert not w.kms.url.isEnabled() and w.kms.init_file.isEnabled()
        await _refused(w, w.kms, "KmsInit")
        w.kms.init_file.setText(str(init))
        w.kms.prov_file.setText(str(prov))
        await _next(w)
        await wait_for(lambda: w.currentPage() is w.secret, "the passphrase page")
        await _type(w.secret.passphrase, PASSPHRASE)
        await _type(w.secret.again, PASSPHRASE)
        await _next(w)
        await wait_for(lambda: w.test.passed or "✘" in w.test.checks.text(), "the checks", 30)
        assert w.test.passed, w.test.checks.text()
        await ui(QTest.mouseClick, w.button(QWizard.WizardButton.FinishButton), Qt.MouseButton.LeftButton)
        await wait_for(lambda: not w.isVisible(), f"the wizard to close ({w.test.error.text()!r})")

    run_gui(scenario, 90)
    account = load_accounts(config)[0]
    assert account.kms_url is None and account.keystore is not None and account.keystore.exists()


def test_gui_without_accounts_opens_the_wizard_and_cancel_exits_2(tmp_path: Path, xvfb: str) -> None:
    xdotool = require_tool("xdotool")
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.Popen([sys.executable, "-m", "softphone", "gui", "--data-dir", str(tmp_path / "data")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = subprocess.run([xdotool, "search", "--sync", "--name", "first start"], env=env,
                               capture_output=True, text=True, timeout=30)
        window = found.stdout.split()[0]
        subprocess.run([xdotool, "windowfocus", "--sync", window], env=env, check=True, timeout=20)
        subprocess.run([xdotool, "key", "Escape"], env=env, check=True, timeout=20)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, err
    assert "setup cancelled" in err and "Traceback" not in err
    assert not (tmp_path / "xdg" / "softphone" / "accounts.toml").exists()
