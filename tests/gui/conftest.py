"""GUI fixtures: a private Xvfb display, one QApplication, one qasync loop, and a helper to run
async scenarios on it with a deadline. Screenshots go to ``build/screenshots`` (kept after the run)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """Start Xvfb on a free display number (``-displayfd``) and point DISPLAY at it."""
    binary = require_tool("Xvfb")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp",
                             "-noreset"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as fh:
            number = fh.readline().strip()
        if not number:
            pytest.fail("Xvfb did not report a display number")
        old = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        os.environ["DISPLAY"] = f":{number}"
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        os.environ.pop("WAYLAND_DISPLAY", None)
        yield f":{number}"
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def qt_loop(xvfb: str) -> Iterator[Any]:
    """The QApplication (xcb on Xvfb) and a qasync loop to run scenarios on."""
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["softphone-tests"])
    assert app.platformName() == "xcb", app.platformName()
    app.setQuitOnLastWindowClosed(False)   # windows come and go between scenarios; the loop stays
    loop = qasync.QEventLoop(app)
    yield loop
    loop.close()


@pytest.fixture
def run_gui(qt_loop: Any) -> Callable[[Callable[[], Awaitable[Any]], float], Any]:
    """``run_gui(scenario, timeout)``: run an async scenario on the Qt loop, failing after ``timeout`` s."""
    def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
        previous = None
        try:
            previous = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            pass
        asyncio.set_event_loop(qt_loop)
        try:
            return qt_loop.run_until_complete(asyncio.wait_for(scenario(), timeout))
        finally:
            asyncio.set_event_loop(previous)
    return run


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A sentence of synthetic speech (espeak-ng) for the GUI phone and its peers to send."""
    espeak = require_tool("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-v", "en", "-s", "150", "-w", str(path),
                    "This is a Secure Chorus call from the desktop app. Hold on, I will check the badge."],
                   check=True, capture_output=True, timeout=30)
    from softphone.media.audio import read_wav

    return read_wav(path)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` on the running (Qt) loop until it is truthy; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
