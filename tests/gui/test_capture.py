"""Settings' capture + TLS key log switch (issue 18): off by default and writing nothing; switched on, the
GUI's own calls land in a 0600 pcap and key log that ``softphone analyze`` reads (one dialog, two streams,
the I_MESSAGE verified). Real lab (Kamailio over TLS, HTTPS KMS), the real window under Xvfb."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.gui.controller import DIAGNOSTICS_WARNING, Diagnostics
from tests.gui.conftest import wait_for
from tests.gui.test_window import Audio, Peer, account_for, opened, show, start_window, ui

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from softphone.analyze import KeyRing, analyse  # noqa: E402
from softphone.gui.app import build_window  # noqa: E402

pytestmark = pytest.mark.slow


async def one_call(window: Any, controller: Any) -> str:
    """Dial bob from the window, keep the call up ~2 s, hang up; the call's Call-ID."""
    window.dial.setText("sip:bob@lab.test")
    await ui(QTest.mouseClick, window.call_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: controller.state == "in-call", "the call to be answered", 20)
    call_id = controller.call.call_id
    await wait_for(lambda: controller.call.status()["packets_received"] > 50, "media from bob", 10)
    await ui(QTest.mouseClick, window.hangup_button, Qt.MouseButton.LeftButton)
    await wait_for(lambda: controller.state == "idle", "the call to end")
    return str(call_id)


def test_capture_switch_off_by_default_then_writes_an_analysable_capture(
        lab: Lab, speech: np.ndarray, tmp_path: Path, run_gui: Any, screenshots: Path) -> None:
    data = tmp_path / "data"
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), data, audio=Audio(speech))
    default_capture, default_keylog = data / "capture.pcap", data / "tls-keys.log"
    capture, keylog = tmp_path / "gui.pcap", tmp_path / "gui-keys.log"
    ids: list[str] = []

    async def scenario() -> None:
        async with Peer(lab, "bob", speech, auto_answer=True), opened(window):
            await start_window(window)
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            window.open_settings()
            dialog = window.settings_dialog
            await wait_for(dialog.isVisible, "the settings dialog")
            assert not dialog.diagnostics.isChecked()                 # off by default
            assert not dialog.diagnostics_warning.isVisible() and not dialog.diagnostics_paths.isEnabled()
            assert dialog.capture_path.text() == str(default_capture)
            dialog.accept()
            assert controller.diagnostics is None
            ids.append(await one_call(window, controller))           # switch off: a call writes nothing
            assert not default_capture.exists() and not default_keylog.exists()
            assert not capture.exists() and not keylog.exists()

            window.open_settings()
            dialog = window.settings_dialog
            await wait_for(dialog.isVisible, "the settings dialog again")
            await ui(QTest.mouseClick, dialog.diagnostics, Qt.MouseButton.LeftButton)
            await wait_for(dialog.diagnostics.isChecked, "the switch to turn on")
            assert dialog.diagnostics_warning.isVisible() and dialog.diagnostics_paths.isEnabled()
            warning = dialog.diagnostics_warning.text()
            assert warning == DIAGNOSTICS_WARNING
            assert "hold secrets" in warning and "TLS key log decrypts" in warning and "KMS XML" in warning
            dialog.capture_path.setText(str(capture))
            dialog.keylog_path.setText(str(keylog))
            await asyncio.sleep(0.2)
            assert dialog.grab().save(str(screenshots / "settings-capture.png"))
            dialog.accept()
            await wait_for(lambda: controller.diagnostics == Diagnostics(capture, keylog), "the switch applied")
            await wait_for(lambda: controller.phone is not None
                           and window.registration.property("state") == "registered", "re-registration", 30)
            assert window.notice.property("level") == "warning" and "hold secrets" in window.notice.text()
            assert str(capture) in window.notice.text() and str(keylog) in window.notice.text()
            ids.append(await one_call(window, controller))
            await asyncio.sleep(0.5)

            # the paths are remembered, the switch is not (off again at the next app start)
            assert window.prefs["capture_path"] == str(capture) and "diagnostics" not in window.prefs
            window.open_settings()
            await wait_for(window.settings_dialog.isVisible, "settings a third time")
            assert window.settings_dialog.diagnostics.isChecked()
            window.settings_dialog.reject()

    run_gui(scenario, 150)
    for f in (capture, keylog):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert "TRAFFIC_SECRET" in keylog.read_text()
    assert not default_capture.exists()

    ring = KeyRing()
    for user in ("alice", "bob"):
        ring.add(lab.keystores[user].mikey_key_sets(lab.uri(user)))
    a = analyse(capture, ring, tmp_path / "out", keylog=keylog)
    assert [d.call_id for d in a.dialogs if d.call_id in ids] == [ids[1]]   # only the call made with the switch on
    dlg = next(d for d in a.dialogs if d.call_id == ids[1])
    labels = [e.label for e in dlg.entries]
    assert "INVITE" in labels and "BYE" in labels, labels
    offers = [r for r in a.imessages if r.dialog is dlg]
    assert offers and all(r.verdict.description["valid"] for r in offers)
    streams = [s for s in a.streams if s.receiver.dialog is dlg]
    assert len(streams) == 2, a.findings
    assert all(s.stats.packets > 30 and s.auth_failures == 0 for s in streams)
    assert all(s.wav is not None for s in streams)


def test_unwritable_capture_path_is_refused_in_words(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                     run_gui: Any) -> None:
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech))

    async def scenario() -> None:
        async with opened(window):
            await show(window)
            await start_window(window)
            await controller.set_diagnostics(Diagnostics(tmp_path / "missing" / "c.pcap", tmp_path / "k.log"))
            assert window.notice.text() == (f"Cannot write the capture {tmp_path / 'missing' / 'c.pcap'}: "
                                            f"directory {tmp_path / 'missing'} does not exist — capture stays off")
            assert controller.diagnostics is None and not (tmp_path / "k.log").exists()

    run_gui(scenario, 60)
