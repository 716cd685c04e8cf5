"""Quitting the app and clearing banners, against the lab (Kamailio TLS + HTTPS KMS) under Xvfb.

``softphone gui`` runs as a subprocess and is quit with Ctrl+Q typed into its window (xdotool): it
must exit 0 without a traceback and un-REGISTER (Kamailio logs ``expires=0``). In-process, Phone →
Quit during a call hangs up (the peer sees BYE) and un-REGISTERs; banners go away with their cause.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.media.audio import ArraySink, ArraySource
from tests.conftest import require_tool
from tests.gui.conftest import wait_for
from tests.gui.test_window import Audio, Peer, account_for, show

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtGui import QAction  # noqa: E402

from softphone.gui.app import build_window  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def unregistered(lab: Lab, user: str) -> int:
    assert lab.kamailio is not None
    return len(lab.kamailio.matching(rf"LAB REGISTER aor=sip:{user}@lab.test .*expires=0 "))


def registered(lab: Lab, user: str) -> int:
    assert lab.kamailio is not None
    return len(lab.kamailio.matching(rf"LAB REGISTER aor=sip:{user}@lab.test .*expires=[1-9]"))


def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["ctrl+q", "sigterm"])
def test_gui_subprocess_quit_unregisters_and_exits_0(lab: Lab, tmp_path: Path, xvfb: str, how: str) -> None:
    xdotool = require_tool("xdotool")
    config = lab.account_file("alice", tmp_path / "cfg")
    before_reg, before_unreg = registered(lab, "alice"), unregistered(lab, "alice")
    env = {**os.environ, "DISPLAY": xvfb, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.Popen([sys.executable, "-m", "softphone", "gui", "--config", str(config),
                             "--data-dir", str(tmp_path / "data")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: registered(lab, "alice") > before_reg or proc.poll() is not None, "the GUI to REGISTER", 60)
        assert proc.poll() is None, proc.communicate()
        found = subprocess.run([xdotool, "search", "--sync", "--name", "Secure Chorus softphone"], env=env,
                               capture_output=True, text=True, timeout=20)
        window = found.stdout.split()[0]
        if how == "sigterm":
            proc.terminate()
        else:
            subprocess.run([xdotool, "windowfocus", "--sync", window], env=env, check=True, timeout=20)
            subprocess.run([xdotool, "key", "--clearmodifiers", how], env=env, check=True, timeout=20)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "RuntimeError" not in err, err
    assert unregistered(lab, "alice") > before_unreg, "no un-REGISTER reached Kamailio"


def test_quit_during_a_call_hangs_up_and_unregisters(lab: Lab, speech: np.ndarray, tmp_path: Path,  # noqa: F811
                                                     run_gui: Any) -> None:
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech))
    before = unregistered(lab, "alice")

    async def scenario() -> None:
        async with Peer(lab, "bob", speech, auto_answer=True) as bob:
            await show(window)
            running = asyncio.get_running_loop().create_task(window.run())
            await wait_for(lambda: window.registration.property("state") == "registered", "registration", 30)
            controller.dial("bob")
            await wait_for(lambda: controller.state == "in-call", "the call to be answered", 20)
            quit_action = next(a for a in window.actions() if isinstance(a, QAction) and a.text() == "&Quit")
            asyncio.get_running_loop().call_soon(quit_action.trigger)   # Phone → Quit
            await asyncio.wait_for(running, 20)                      # run() returns: the app can exit 0
            assert controller.phone is None and not window.isVisible()
            await wait_for(lambda: bob.calls and bob.calls[0][0].is_ended, "bob to get the BYE", 10)
            assert "ended" in bob.kinds()
            await lab.kamailio.await_log(r"LAB REGISTER aor=sip:alice@lab.test .*expires=0 ", 10, before + 1)

    run_gui(scenario, 90)


def test_wrong_passphrase_banner_cleared_by_the_right_one(lab: Lab, tmp_path: Path, run_gui: Any) -> None:
    account = account_for(lab, "alice", tmp_path / "cfg", drop=("keystore_passphrase_file",))
    controller, window = build_window(account, tmp_path / "data", audio=lambda: (ArraySource(np.zeros(1)),
                                                                              ArraySink()))
    answers = iter(["not the passphrase", lab.keystore_passphrases["alice"]])
    seen: list[tuple[str, bool]] = []

    def prompt() -> asyncio.Future[str | None]:
        seen.append((window.notice.text(), window.notice.isVisible()))
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        future.set_result(next(answers))
        return future

    async def scenario() -> None:
        await show(window)
        try:
            assert await window.start(prompt), window.notice.text()
            assert "passphrase" in seen[1][0].lower() and seen[1][1], seen   # the red banner was shown …
            assert not window.notice.isVisible(), window.notice.text()    # … and is gone once unlocked
            assert window.notice.property("level") is None
            # the phone fetched the KMS's signed revocation list; Settings says what it enforces
            await wait_for(lambda: "revoked, list issued" in controller.revocation_status(), "the revocation list")
            window.open_settings()
            assert "0 revoked, list issued" in window.settings_dialog.revocations.text()
            window.settings_dialog.reject()
        finally:
            window.close()
            await wait_for(lambda: controller.phone is None and not controller._tasks, "the phone to stop")

    run_gui(scenario, 60)


def test_call_ended_banner_cleared_by_next_incoming_call(lab: Lab, speech: np.ndarray, tmp_path: Path,  # noqa: F811
                                                         run_gui: Any) -> None:
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech))

    async def scenario() -> None:
        async with Peer(lab, "carol", speech) as carol:
            await show(window)
            try:
                assert await window.start()
                await wait_for(lambda: window.registration.property("state") == "registered", "registration")
                loop = asyncio.get_running_loop()
                placing = loop.create_task(carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(),
                                                            timeout=20))
                await wait_for(lambda: controller.state == "incoming", "the first call")
                controller.accept()
                call = await asyncio.wait_for(placing, 20)
                await wait_for(lambda: controller.state == "in-call", "the answered call")
                await call.hangup()
                await wait_for(lambda: window.notice.text().startswith("call ended"), "the call-ended banner")
                assert window.notice.isVisible()
                placing = loop.create_task(carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(),
                                                            timeout=20))
                await wait_for(lambda: controller.state == "incoming", "the second call")
                assert not window.notice.isVisible(), window.notice.text()
                controller.decline()
                with pytest.raises(Exception):  # noqa: B017 - CallError: declined
                    await asyncio.wait_for(placing, 20)
            finally:
                window.close()
                await wait_for(lambda: controller.phone is None and not controller._tasks, "the phone to stop")

    run_gui(scenario, 90)
