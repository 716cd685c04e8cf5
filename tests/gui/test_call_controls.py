"""Call waiting, transfer and early media in the window, against the lab (Kamailio TLS + HTTPS KMS) under Xvfb.

alice is the window; bob and carol are real phones in the same loop:

- call waiting: alice talks to bob, carol calls — a banner says who is calling and how that was verified;
  "Answer (hold current)" holds bob (bob's side becomes recvonly), both calls are listed, switching resumes
  bob and holds carol, either can be hung up; "Decline" gives carol 486; "Transfer held call to this one"
  connects bob with carol (REFER with Replaces) and both of alice's calls end;
- blind transfer: "Transfer…" sends bob to carol; carol's phone verifies bob's new I_MESSAGE (ECCSI) and
  the window says "Transferred sip:bob@lab.test to sip:carol@lab.test"; when bob transfers alice, the new
  call to carol is listed with its own (fresh) keys;
- early media: a 183 with SDP makes the panel say "Early media (not yet answered)" and its audio plays.

The call-waiting screenshot goes to ``build/screenshots/call-waiting.png`` (copied to docs/screenshots/).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from softphone.calls.call import Call
from softphone.calls.errors import CallError
from softphone.calls.events import Failed
from softphone.media.audio import ArraySink, ArraySource
from tests.gui.conftest import wait_for
from tests.gui.test_window import Audio, Peer, account_for, opened, screenshot, start_window, ui

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from softphone.gui.app import build_window  # noqa: E402

pytestmark = pytest.mark.slow


def _direction(call: Call) -> str | None:
    return call.negotiated.direction if call.negotiated is not None else None


def _rows(window: Any) -> list[str]:
    return [window.calls_list.item(i).text() for i in range(window.calls_list.count())]


def _select(window: Any, who: str) -> None:
    row = next(i for i, text in enumerate(_rows(window)) if who in text)
    window.calls_list.setCurrentRow(row)


async def _in_call_with_bob(window: Any, controller: Any, bob: Peer) -> Call:
    await start_window(window)
    await wait_for(lambda: window.registration.property("state") == "registered", "registration", 30)
    controller.dial("bob")
    await wait_for(lambda: controller.state == "in-call", "the call to bob to be answered", 20)
    await wait_for(lambda: bob.calls, "bob's side of the call")
    return bob.calls[0][0]


def test_call_waiting_answer_switch_hangup_decline_and_attended_transfer(lab: Lab, speech: np.ndarray,
                                                                         tmp_path: Path, run_gui: Any,
                                                                         screenshots: Path) -> None:
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with Peer(lab, "bob", speech, auto_answer=True) as bob, Peer(lab, "carol", speech) as carol, \
                opened(window):
            bob_call = await _in_call_with_bob(window, controller, bob)
            assert not window.waiting_banner.isVisible() and not window.calls_box.isVisible()

            # carol calls while alice talks to bob: it rings, the banner says who and how verified
            placing = loop.create_task(carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(),
                                                        timeout=20))
            await wait_for(window.waiting_banner.isVisible, "the call-waiting banner")
            assert window.waiting_text.text() == ("Call waiting: sip:carol@lab.test is calling — identity verified "
                                                  "by ECCSI (Secure Chorus)")
            assert controller.state == "in-call" and window.call_state.text() == "Connected"
            screenshot(window, screenshots, "call-waiting")

            await ui(QTest.mouseClick, window.answer_waiting_button, Qt.MouseButton.LeftButton)
            carol_call = await asyncio.wait_for(placing, 20)
            await wait_for(lambda: not window.waiting_banner.isVisible(), "the banner to go")
            await wait_for(lambda: _direction(bob_call) == "recvonly", "bob's side to be on hold")
            await wait_for(lambda: len(_rows(window)) == 2, "both calls listed")
            assert window.calls_box.isVisible()
            rows = _rows(window)
            assert any("sip:bob@lab.test" in r and r.endswith("— on hold") for r in rows), rows
            assert any(r.startswith("▶ sip:carol@lab.test (verified by ECCSI)") and r.endswith("— connected")
                       for r in rows), rows
            assert window.identity.text() == "sip:carol@lab.test (verified by ECCSI)"
            assert window.badge.property("level") == "secure"
            assert window.attended_button.isVisible()

            # switch back to bob: bob resumes, carol is held
            _select(window, "bob")
            await ui(QTest.mouseClick, window.switch_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: _direction(carol_call) == "recvonly", "carol's side to be on hold")
            await wait_for(lambda: _direction(bob_call) == "sendrecv", "bob resumed")
            await wait_for(lambda: any(r.startswith("▶ keyed to sip:bob@lab.test") and r.endswith("— connected")
                                       for r in _rows(window)), "bob current in the list")
            assert controller.call is not None and controller.call.peer == lab.uri("bob")
            assert window.call_state.text() == "Connected"

            # hang up the held carol from the list: bob's call goes on alone
            _select(window, "carol")
            await ui(QTest.mouseClick, window.hangup_selected_button, Qt.MouseButton.LeftButton)
            await asyncio.wait_for(carol_call.ended(), 10)
            await wait_for(lambda: len(_rows(window)) == 1, "one call left")
            assert not window.calls_box.isVisible() and not bob_call.is_ended and controller.state == "in-call"

            # decline: carol hears busy (486), bob's call goes on
            placing = loop.create_task(carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(),
                                                        timeout=20))
            await wait_for(window.waiting_banner.isVisible, "the second call-waiting banner")
            await ui(QTest.mouseClick, window.decline_waiting_button, Qt.MouseButton.LeftButton)
            with pytest.raises(CallError, match="486"):
                await asyncio.wait_for(placing, 20)
            assert any(isinstance(e, Failed) and e.status == 486 for e in carol.events)
            assert not window.waiting_banner.isVisible() and not bob_call.is_ended
            assert _direction(bob_call) == "sendrecv"

            # attended transfer: answer carol again (bob held), then connect bob with carol
            placing = loop.create_task(carol.phone.call(lab.uri("alice"), ArraySource(speech), ArraySink(),
                                                        timeout=20))
            await wait_for(window.waiting_banner.isVisible, "the third call-waiting banner")
            await ui(QTest.mouseClick, window.answer_waiting_button, Qt.MouseButton.LeftButton)
            carol_call = await asyncio.wait_for(placing, 20)
            await wait_for(window.attended_button.isVisible, "the attended-transfer button")
            await ui(QTest.mouseClick, window.attended_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: controller.state == "idle", "both of alice's calls to end", 20)
            await asyncio.wait_for(bob_call.ended(), 5)
            await asyncio.wait_for(carol_call.ended(), 5)
            await wait_for(lambda: bool(bob.phone.active_calls()) and bool(carol.phone.active_calls()),
                           "bob and carol connected")
            joined = carol.phone.active_calls()[0]
            assert joined.peer == lab.uri("bob")
            assert joined.negotiated is not None and joined.negotiated.peer_identity == lab.uri("bob")
            assert "Transferred sip:bob@lab.test to sip:carol@lab.test" in window.notice.text()
            await bob.phone.active_calls()[0].hangup()

    run_gui(scenario, 180)


def test_blind_transfer_from_the_window_and_being_transferred(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                              run_gui: Any) -> None:
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech))

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with Peer(lab, "bob", speech, auto_answer=True) as bob, Peer(lab, "carol", speech) as carol, \
                opened(window):
            bob_call = await _in_call_with_bob(window, controller, bob)
            await ui(QTest.mouseClick, window.transfer_button, Qt.MouseButton.LeftButton)
            dialog = await wait_for(lambda: getattr(window, "transfer_dialog", None), "the transfer dialog")
            await wait_for(dialog.isVisible, "the transfer dialog to show")
            await ui(QTest.keyClicks, dialog.target, "carol")
            await ui(QTest.keyClick, dialog.target, Qt.Key.Key_Return)
            incoming = await carol.phone.next_incoming(20)
            assert incoming.peer_identity == lab.uri("bob")      # carol verified bob's new I_MESSAGE (ECCSI)
            carol_call = await incoming.accept(ArraySource(speech), ArraySink())
            await wait_for(lambda: controller.state == "idle", "alice's call to end after the transfer", 20)
            assert "Transferred sip:bob@lab.test to sip:carol@lab.test" in window.notice.text()
            await asyncio.wait_for(bob_call.ended(), 5)
            new = bob.phone.active_calls()[0]
            assert new.peer == lab.uri("carol") and new.negotiated is not None and carol_call.negotiated is not None
            assert new.negotiated.key_id == carol_call.negotiated.key_id != bob_call.negotiated.key_id  # type: ignore[union-attr]
            await carol_call.hangup()
            await asyncio.wait_for(new.ended(), 10)

            # a failed transfer says why, with the status bob's call to the target got, and the call goes on
            controller.dial("bob")
            await wait_for(lambda: controller.state == "in-call", "the second call to bob", 20)
            await wait_for(lambda: len(bob.calls) == 2, "bob's side of the second call")
            second = bob.calls[-1][0]
            controller.transfer("nobody")
            await wait_for(lambda: window.notice.text().startswith("Transfer failed: 404 no such user"),
                           "the failure words", 30)
            assert window.notice.property("level") == "error" and "sip:nobody@lab.test" in window.notice.text()
            ours = controller.call   # alice's media was never stopped; bob's restarted on the same keys
            assert ours is not None
            heard = int(ours.status().get("packets_received") or 0)
            await wait_for(lambda: int(ours.status().get("packets_received") or 0) > heard + 10,
                           "alice hearing bob again after the failed transfer", 10)
            assert controller.state == "in-call" and not second.is_ended
            controller.hangup()
            await wait_for(lambda: controller.state == "idle", "alice's hang-up")

            controller.dial("bob")
            await wait_for(lambda: controller.state == "in-call", "the third call to bob", 20)
            await wait_for(lambda: len(bob.calls) == 3, "bob's side of the third call")
            old = bob.calls[-1][0]

            # alice is transferred by bob to carol: the new call is listed, keyed afresh
            answering = loop.create_task(carol.phone.next_incoming(20))
            transferring = loop.create_task(bob.phone.transfer(old, lab.uri("carol")))
            incoming = await answering
            assert incoming.peer_identity == lab.uri("alice")
            carol_call = await incoming.accept(ArraySource(speech), ArraySink())
            await asyncio.wait_for(transferring, 20)
            await wait_for(lambda: controller.call is not None and controller.call.peer == lab.uri("carol"),
                           "the new call to carol to be current")
            await wait_for(lambda: window.transfer_text.text().startswith(
                "Transferred by sip:bob@lab.test: now in a call with sip:carol@lab.test"), "the transferee words")
            assert controller.state == "in-call" and window.badge.property("level") == "secure"
            assert window.identity.text().startswith("keyed to sip:carol@lab.test")
            assert controller.call.negotiated is not None and carol_call.negotiated is not None
            assert controller.call.negotiated.key_id == carol_call.negotiated.key_id
            await carol_call.hangup()
            await wait_for(lambda: controller.state == "idle", "the transferred call to end")

    run_gui(scenario, 180)


def test_early_media_wording_then_answer(lab: Lab, speech: np.ndarray, tmp_path: Path, run_gui: Any) -> None:
    audio = Audio(speech)
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data", audio=audio)

    async def scenario() -> None:
        async with Peer(lab, "bob", speech) as bob, opened(window):
            await start_window(window)
            await wait_for(lambda: window.registration.property("state") == "registered", "registration", 30)
            controller.dial("bob")
            incoming = await bob.phone.next_incoming(20)
            await incoming.early_media(ArraySource(speech), ArraySink())
            await wait_for(lambda: window.call_state.text() == "Early media (not yet answered)", "early-media words")
            assert controller.state == "ringing" and window.badge.property("level") == "secure"
            await wait_for(lambda: len(audio.sinks[-1].samples()) > 8000, "early audio to play")
            await incoming.accept(ArraySource(speech), ArraySink())
            await wait_for(lambda: controller.state == "in-call", "the answer")
            await wait_for(lambda: window.call_state.text() == "Connected", "the normal in-call words")
            controller.hangup()
            await wait_for(lambda: controller.state == "idle", "the call to end")

    run_gui(scenario, 90)
