"""The real window under Xvfb, driven by keyboard and mouse, against a real lab (Kamailio TLS + HTTPS KMS).

Phones on the other end are real :class:`~softphone.calls.phone.Phone` instances in the same loop: bob
answers automatically and plays speech, carol calls in, mallory sends a forged I_MESSAGE.
Screenshots of the idle, in-call and incoming-call states are written to ``build/screenshots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from softphone.calls.call import Call, reserve_port
from softphone.calls.events import CallEvent, Dtmf
from softphone.calls.phone import Phone
from softphone.config import Account, load_accounts, select_account
from softphone.media.audio import ArraySink, ArraySource
from softphone.sip.errors import CallFailed
from tests.e2e.test_refusals import _offer, _tamper
from tests.gui.conftest import wait_for

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from softphone.gui.app import build_window  # noqa: E402

pytestmark = pytest.mark.slow

SECURE_GREEN = (0x1B, 0x7F, 0x3B)
ERROR_RED = (0xB3, 0x26, 0x1E)


class Audio:
    """Per-call audio for the GUI phone: speech out, everything heard kept."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples
        self.sinks: list[ArraySink] = []

    def __call__(self) -> tuple[ArraySource, ArraySink]:
        sink = ArraySink()
        self.sinks.append(sink)
        return ArraySource(self.samples), sink


def account_for(lab: Lab, user: str, directory: Path, *, drop: tuple[str, ...] = (),
                **override: str) -> Account:
    """The lab's accounts TOML for ``user`` with keys removed (``drop``) or replaced (``override``)."""
    path = lab.account_file(user, directory)
    lines = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in drop:
            continue
        if key in override:
            line = f'{key} = "{override[key]}"'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return select_account(load_accounts(path), user)


class Peer:
    """A real phone for the other end of the GUI's calls, auto-answering with speech if asked."""

    def __init__(self, lab: Lab, user: str, speech: np.ndarray, auto_answer: bool = False) -> None:
        self.events: list[CallEvent] = []
        self.phone = Phone(lab.settings(user), on_event=self.events.append)
        self.speech = speech
        self.auto_answer = auto_answer
        self.calls: list[tuple[Call, ArraySink]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Peer:
        await self.phone.start()
        await self.phone.register()
        if self.auto_answer:
            self._task = asyncio.get_running_loop().create_task(self._answer())
        return self

    async def _answer(self) -> None:
        while True:
            incoming = await self.phone.next_incoming()
            sink = ArraySink()
            self.calls.append((await incoming.accept(ArraySource(self.speech), sink), sink))

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.phone.close()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def screenshot(window: Any, directory: Path, name: str) -> QImage:
    """Grab the window into ``directory/name.png`` and check it is a real rendering, not a blank."""
    path = directory / f"{name}.png"
    assert window.grab().save(str(path)), f"could not write {path}"
    image = QImage(str(path))
    assert image.width() >= 600 and image.height() >= 450, (image.width(), image.height())
    colours = Counter(image.pixel(x, y) for x in range(0, image.width(), 3) for y in range(0, image.height(), 3))
    total = sum(colours.values())
    assert len(colours) >= 12, f"{name}: only {len(colours)} colours — blank window?"
    assert colours.most_common(1)[0][1] / total < 0.92, f"{name}: nearly uniform image"
    return image


def has_colour(image: QImage, rgb: tuple[int, int, int], min_pixels: int = 200) -> bool:
    want = (0xFF << 24) | (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
    count = sum(1 for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)
                if image.pixel(x, y) == want)
    return count >= min_pixels // 4


def recent_rows(window: Any) -> list[list[str]]:
    t = window.recent
    return [[t.item(r, c).text() if t.item(r, c) else "" for c in range(t.columnCount())] for r in range(t.rowCount())]


async def start_window(window: Any, passphrase: str | None = None) -> None:
    """Start the phone through the window; type the keystore passphrase into the real dialog if asked."""
    await show(window)
    task = asyncio.get_running_loop().create_task(window.start())
    if passphrase is not None:
        dialog = await wait_for(lambda: getattr(window, "passphrase_dialog", None), "the passphrase prompt")
        await wait_for(dialog.isVisible, "the passphrase prompt to show")
        edit = dialog.findChild(type(window.dial), "passphrase")
        await ui(QTest.keyClicks, edit, passphrase)
        await ui(QTest.keyClick, edit, Qt.Key.Key_Return)
    assert await asyncio.wait_for(task, 60), window.notice.text()


async def ui(action: Any, *args: Any) -> None:
    """Send input the way Qt's own loop would: from a loop callback, not from inside the scenario task.

    QTest delivers events synchronously and may process pending ones; doing that inside a running task
    would make qasync try to step other tasks (media) while this one is current, which asyncio refuses.
    """
    asyncio.get_running_loop().call_soon(action, *args)
    await asyncio.sleep(0.05)


async def show(window: Any) -> None:
    window.show()
    window.raise_()
    window.activateWindow()
    await wait_for(window.isActiveWindow, "the window to become active")


async def close_window(window: Any) -> None:
    window.close()
    await wait_for(lambda: window.controller.phone is None and not window.controller._tasks, "the phone to stop")


@contextlib.asynccontextmanager
async def opened(window: Any) -> AsyncIterator[Any]:
    """Close the window (and stop its phone) however the scenario ends."""
    try:
        yield window
    finally:
        if window.isVisible():
            await close_window(window)


def test_place_secure_call_hold_resume_hangup(lab: Lab, speech: np.ndarray, tmp_path: Path, run_gui: Any,
                                              screenshots: Path) -> None:
    audio = Audio(speech)
    account = account_for(lab, "alice", tmp_path / "cfg", drop=("keystore_passphrase_file",))
    controller, window = build_window(account, tmp_path / "data", audio=audio)

    async def scenario() -> None:
        async with Peer(lab, "bob", speech, auto_answer=True) as bob, opened(window):
            await start_window(window, passphrase=lab.keystore_passphrases["alice"])
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            assert "period" in window.keys.text() and "expires in" in window.keys.text()
            await wait_for(lambda: QApplication.focusWidget() is window.dial, "focus in the dial field")
            idle = screenshot(window, screenshots, "idle")
            assert not has_colour(idle, SECURE_GREEN)

            await ui(QTest.keyClicks, window.dial, "bob")            # the account's domain is added
            await ui(QTest.keyClick, window.dial, Qt.Key.Key_Return)
            await wait_for(lambda: controller.state == "in-call", "the call to be answered", 20)
            await wait_for(lambda: window.badge.property("level") == "secure", "the secure badge")
            assert "SECURE" in window.badge.text() and "Secure Chorus" in window.badge.text()
            assert window.identity.text() in ("keyed to sip:bob@lab.test — only bob can decrypt",
                                              "keyed to sip:bob@lab.test — bob's phone is sending")
            assert "verified" not in window.badge.text()          # nothing from bob was verified
            await wait_for(lambda: window.identity.text() == "keyed to sip:bob@lab.test — bob's phone is sending",
                           "bob's first authenticated packet")
            assert "AEAD_AES_128_GCM" in window.details.text() and "opus" in window.details.text().lower()
            key_id = controller.call.status()["key_id"]
            assert key_id and key_id in window.details.text()
            await wait_for(lambda: window.spk_meter.value() > 20 and window.mic_meter.value() > 20,
                           "both level meters to move", 10)
            await wait_for(lambda: re.fullmatch(r"00:0[1-9]", window.timer.text()), "the call timer to run")
            assert "loss 0.0%" in window.stats.text()
            incall = screenshot(window, screenshots, "in-call")
            assert has_colour(incall, SECURE_GREEN), "no green secure badge in the in-call screenshot"

            await ui(QTest.mouseClick, window.hold_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: window.call_state.text() == "On hold", "hold")
            await wait_for(lambda: "held" in bob.kinds(), "bob to see the hold")
            assert window.hold_button.text().replace("&", "") == "Resume"
            await ui(QTest.keyClick, window, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)   # Ctrl+H resumes
            await wait_for(lambda: window.call_state.text() == "Connected", "resume")
            await wait_for(lambda: "resumed" in bob.kinds(), "bob to see the resume")

            await ui(QTest.keyClick, window, Qt.Key.Key_5)  # DTMF from the keyboard
            await wait_for(lambda: any(isinstance(e, Dtmf) and e.digit == "5" for e in bob.events),
                           "bob to receive DTMF 5")
            await asyncio.sleep(1.0)
            await ui(QTest.keyClick, window, Qt.Key.Key_Escape)                                     # hang up
            await wait_for(lambda: controller.state == "idle", "the call to end")
            await wait_for(lambda: bob.calls and bob.calls[0][0].is_ended, "bob's side to end")
            row = recent_rows(window)[0]
            assert row[2] == "sip:bob@lab.test" and row[3] == "—" and row[4] == "MIKEY-SAKKE"  # keyed to, not verified
            assert row[6] == "answered" and row[1] == "→"
            assert QApplication.focusWidget() is window.dial
            await close_window(window)

            # the first 1.5 s of speech each way (before hold) came through decrypted and intact
            heard_by_bob = compare(speech[:72000], bob.calls[0][1].samples()[:144000])
            heard_by_alice = compare(speech[:72000], audio.sinks[0].samples()[:144000])
            assert heard_by_bob.ok(), heard_by_bob      # speech present; silence or noise scores ~0
            assert heard_by_alice.ok(), heard_by_alice

    run_gui(scenario, 120)
    history = (tmp_path / "data" / "alice.history.jsonl").read_text()
    assert "sip:bob@lab.test" in history and "key" not in history.replace('"key_id"', "")
    assert (tmp_path / "data" / "alice.history.jsonl").stat().st_mode & 0o077 == 0


def test_incoming_call_forged_call_refused_and_app_stays_usable(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                                 run_gui: Any, screenshots: Path) -> None:
    audio = Audio(speech)
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data", audio=audio)
    window.contacts.add("Carol Example", "sip:carol@lab.test")
    window.refresh_contacts()

    async def scenario() -> None:
        async with Peer(lab, "carol", speech) as carol, Peer(lab, "mallory", speech) as mallory, \
                Peer(lab, "bob", speech, auto_answer=True), opened(window):
            await start_window(window)
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")

            # carol calls: the incoming view shows her ECCSI-verified identity before we answer
            placing = asyncio.get_running_loop().create_task(
                carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(), timeout=20))
            await wait_for(lambda: controller.state == "incoming", "the incoming-call view")
            assert window.incoming_identity.text() == "Carol Example — sip:carol@lab.test"
            assert window.incoming_badge.property("level") == "secure"
            assert "verified by ECCSI signature: sip:carol@lab.test" in window.incoming_detail.text()
            incoming = screenshot(window, screenshots, "incoming")
            assert has_colour(incoming, SECURE_GREEN)
            assert QApplication.focusWidget() is window.accept_button
            await ui(QTest.keyClick, QApplication.focusWidget(), Qt.Key.Key_Space)       # accept from the keyboard
            carol_call = await asyncio.wait_for(placing, 20)
            await wait_for(lambda: controller.state == "in-call", "the answered call")
            assert window.identity.text() == "Carol Example — sip:carol@lab.test (verified by ECCSI)"
            await asyncio.sleep(1.0)
            await carol_call.hangup()                                          # the far end hangs up
            await wait_for(lambda: controller.state == "idle", "the remote hangup")
            assert recent_rows(window)[0][1] == "←" and recent_rows(window)[0][6] == "answered"

            # mallory forges the signature: refused before ringing, the user is told why
            port = reserve_port("127.0.0.1")
            session = await mallory.phone.ua.invite(lab.uri("alice"),
                                                    _tamper(_offer(mallory.phone, lab, "alice", port)))
            with pytest.raises(CallFailed) as refused:
                await session.answered(10)
            assert refused.value.status == 488
            await wait_for(lambda: "signature" in window.notice.text(), "the refusal notice")
            assert window.notice.text() == ("Call from sip:mallory@lab.test: "
                                            "Caller's signature did not verify — call refused")
            assert window.notice.property("level") == "error" and controller.state == "idle"
            assert recent_rows(window)[0][6].startswith("refused: Caller's signature did not verify")
            screenshot(window, screenshots, "refused")

            # still usable: call a contact by name from the dial field
            window.contacts.add("Bob", "sip:bob@lab.test")
            window.refresh_contacts()
            window.dial.clear()
            await ui(QTest.keyClicks, window.dial, "Bob")
            await ui(QTest.keyClick, window.dial, Qt.Key.Key_Return)
            await wait_for(lambda: window.badge.property("level") == "secure", "a secure call to bob", 20)
            await wait_for(lambda: window.identity.text() == "Bob — keyed to sip:bob@lab.test — bob's phone is sending",
                           f"bob's phone sending (shown: {window.identity.text()!r})", 5)
            await ui(QTest.mouseClick, window.hangup_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: controller.state == "idle", "hang up")
            await close_window(window)

    run_gui(scenario, 120)
    assert 'name = "Carol Example"' in (tmp_path / "data" / "contacts.toml").read_text()


def test_unreachable_kms_is_reported_and_app_stays_usable(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                          run_gui: Any, screenshots: Path) -> None:
    with socket.socket() as s:                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    fresh = account_for(lab, "carol", tmp_path / "cfg1", kms_url=dead, keystore=str(tmp_path / "empty.keystore"))
    # PortAudio lists devices once per process: a stub here keeps it uninitialised for the media tests
    devices = ([{"name": "Test microphone", "hostapi": "ALSA", "max_input_channels": 1, "max_output_channels": 0},
                {"name": "Test speaker", "hostapi": "ALSA", "max_input_channels": 0, "max_output_channels": 2}], None)
    controller, window = build_window(fresh, tmp_path / "data1", audio=Audio(speech), device_list=lambda: devices)

    async def scenario() -> None:
        async with opened(window):
            await show(window)
            assert not await window.start()           # no keys and no KMS: reported, not fatal
            text = window.notice.text()
            assert text.startswith(f"Cannot reach the KMS at {dead}") and "secure calls are unavailable" in text, text
            assert window.registration.property("state") == "offline"
            assert "no keys for this period" in window.keys.text()
            screenshot(window, screenshots, "kms-unreachable")
            await ui(QTest.keyClicks, window.dial, "bob")
            await ui(QTest.keyClick, window.dial, Qt.Key.Key_Return)
            await wait_for(lambda: "not ready" in window.notice.text(), "the not-ready notice")
            assert controller.state == "idle"
            window.open_settings()
            await wait_for(lambda: window.settings_dialog.isVisible(), "the settings dialog")
            assert "no keys for this period" in window.settings_dialog.keys.text()
            assert window.settings_dialog.input.itemText(1) == "Test microphone (ALSA)"
            assert window.settings_dialog.output.itemText(1) == "Test speaker (ALSA)"
            assert window.settings_dialog.audio_processing.isChecked()  # AEC/NS/AGC on by default
            window.notice.setText("")
            await ui(QTest.mouseClick, window.settings_dialog.fetch, Qt.MouseButton.LeftButton)  # Fetch now: still down
            await wait_for(lambda: "Cannot reach the KMS" in window.notice.text(), "the fetch-now failure")
            window.settings_dialog.reject()
            await close_window(window)

    run_gui(scenario, 60)

    # With keys already held, an unreachable KMS is a warning and calls still work.
    cached = account_for(lab, "alice", tmp_path / "cfg2", kms_url=dead)
    controller2, window2 = build_window(cached, tmp_path / "data2", audio=Audio(speech))

    async def scenario2() -> None:
        async with Peer(lab, "bob", speech, auto_answer=True), opened(window2):
            await start_window(window2)
            await wait_for(lambda: window2.registration.property("state") == "registered", "registration")
            await ui(QTest.keyClick, window2, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)      # fetch keys now
            await wait_for(lambda: "Cannot reach the KMS" in window2.notice.text(), "the KMS warning")
            assert "using cached keys for period" in window2.notice.text()
            assert window2.notice.property("level") == "warning"
            window2.dial.setText("sip:bob@lab.test")
            await ui(QTest.mouseClick, window2.call_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: window2.badge.property("level") == "secure", "a secure call with cached keys", 20)
            await ui(QTest.keyClick, window2, Qt.Key.Key_Escape)
            await wait_for(lambda: controller2.state == "idle", "hang up")
            await close_window(window2)

    run_gui(scenario2, 60)


def test_screenshots_differ_per_state(screenshots: Path) -> None:
    shots = {p.stem: QImage(str(p)) for p in screenshots.glob("*.png")}
    assert {"idle", "in-call", "incoming"} <= set(shots), sorted(shots)
    arrays = {k: np.frombuffer(bytes(v.constBits()), dtype=np.uint8) for k, v in shots.items()}
    assert not np.array_equal(arrays["idle"], arrays["in-call"])
    assert not np.array_equal(arrays["in-call"], arrays["incoming"])


def test_blocking_the_qt_thread_leaves_no_gap_in_the_calls_audio(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                                  run_gui: Any) -> None:
    """In a real window's call, the Qt thread (which runs the window, SIP and asyncio under qasync) is held for
    300 ms, once asleep and once spinning in Python: meanwhile the call's media thread sends and plays 15
    frames (300 ms of audio) with consecutive RTP timestamps, and the call goes on afterwards. Only
    scheduling-proof facts are asserted; how evenly the frames are paced is the benchmarks' business."""
    import functools
    import threading

    from tests.media.test_engine import _advanced, _contiguous, _hold_the_loop

    audio = Audio(speech)
    account = account_for(lab, "alice", tmp_path / "cfg", drop=("keystore_passphrase_file",))
    controller, window = build_window(account, tmp_path / "data", audio=audio)

    async def scenario() -> None:
        async with Peer(lab, "bob", speech, auto_answer=True), opened(window):
            await start_window(window, passphrase=lab.keystore_passphrases["alice"])
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            controller.phone.settings.trace_media = True
            await ui(QTest.keyClicks, window.dial, "bob")
            await ui(QTest.keyClick, window.dial, Qt.Key.Key_Return)
            await wait_for(lambda: controller.state == "in-call", "the call to be answered", 20)
            media = controller.call.media
            await wait_for(lambda: media is not None and len(media.trace_played) > 10, "audio both ways", 10)
            assert threading.current_thread() is threading.main_thread()  # the Qt thread: held below
            for busy in (False, True):
                sent0, played0 = len(media.trace_sent), len(media.trace_played)
                held = _hold_the_loop(functools.partial(_advanced, media, media, sent0, played0), busy=busy)
                sent, played = list(media.trace_sent)[sent0:], list(media.trace_played)[played0:]
                assert held, ("busy" if busy else "asleep", len(sent), len(played))
                _contiguous(sent, "sent while the Qt thread was held")
                _contiguous(played, "played while the Qt thread was held")
            await asyncio.sleep(0.5)
            assert controller.state == "in-call" and media.stats().srtp_failures == {}
            await ui(QTest.keyClick, window, Qt.Key.Key_Escape)
            await wait_for(lambda: controller.state == "idle", "the call to end")

    run_gui(scenario, 120)
