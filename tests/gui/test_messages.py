"""The Messages and Voicemail tabs and "Leave a voice message" (issue 17) against the real lab: Kamailio over
TLS with msilo (SQLite), keys from the HTTPS KMS; bob is a real :class:`Messenger` on his own user agent.

alice (the window) calls bob while he is offline (404 from the proxy): the window offers a voice message,
records it (a WAV-like source in tests) and sends it, stored by msilo; she writes him a message too. Bob
registers, gets both, his phone's "delivered" and "read" notifications turn alice's ticks; his reply shows an
unread badge until alice opens the thread; his voice message plays in alice's Voicemail tab; a tampered
message is refused in words and never shown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from softphone.keys.kms_client import KmsClient
from softphone.messaging import voice
from softphone.messaging.messenger import Messenger
from softphone.messaging.store import MessageStore
from softphone.sip.im import send_message
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool
from tests.gui.conftest import wait_for
from tests.gui.test_window import Audio, account_for, opened, start_window, ui

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from softphone.gui.app import build_window  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """This module's lab has msilo (store-and-forward for offline users)."""
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("guimsglab"), users=("alice", "bob"), msilo=True) as running:
        yield running


def messenger(lab: Lab, user: str, tmp: Path) -> Messenger:
    store = MessageStore.open(tmp / f"{user}.messages", b"pw", n_log2=10)
    client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return Messenger(lab.uri(user), UserAgent(lab.ua_config(user)), lab.keystores[user], store, kms_client=client)


def rows(widget: Any) -> list[str]:
    return [widget.item(i).text() for i in range(widget.count())]


def test_conversations_ticks_badges_voicemail_and_refusals(lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                            run_gui: Any, screenshots: Path) -> None:
    audio = Audio(speech[: 48000 * 5])           # the "microphone": 5 s of speech
    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=audio, call_timeout=10)
    bob = messenger(lab, "bob", tmp_path)
    bob.start()
    alice_uri, bob_uri = lab.uri("alice"), lab.uri("bob")

    async def scenario() -> None:
        async with opened(window):
            await start_window(window)
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            assert controller.messages.messenger is not None, controller.messages.problem
            mv, vv = window.messages_view, window.voicemail_view

            # bob is offline: the call fails (404 from the proxy) and a voice message is offered
            window.dial.setText("bob")
            await ui(QTest.mouseClick, window.call_button, Qt.MouseButton.LeftButton)
            await wait_for(window.voicemail_offer.isVisible, "the voice-message offer", 20)
            assert window.voicemail_offer_text.text().startswith(f"{bob_uri} is offline. Leave a voice message")
            await ui(QTest.mouseClick, window.leave_voicemail, Qt.MouseButton.LeftButton)
            await wait_for(lambda: not window.voicemail_offer.isVisible(), "the voice message to be sent", 30)
            assert "stored for offline delivery" in window.notice.text(), window.notice.text()
            assert rows(vv.list)[0].startswith(f"→ to {bob_uri}") and "5.0 s" in rows(vv.list)[0]

            # a text to offline bob: stored by msilo, one tick
            window.tabs.setCurrentWidget(mv)
            mv.to.setText("bob")
            await ui(QTest.keyClicks, mv.compose, "hello bob, are you there?")
            await ui(QTest.keyClick, mv.compose, Qt.Key.Key_Return)
            await wait_for(lambda: any("hello bob" in r for r in rows(mv.messages_thread)), "the sent message")
            assert rows(mv.messages_thread)[-1].endswith("→ hello bob, are you there?   ✓ stored for offline delivery")
            assert controller.messages.store is not None
            stored = lab.kamailio.stored_messages() if lab.kamailio else []
            assert len(stored) == 2 and all(b"hello bob" not in s[3] for s in stored)   # the store sees ciphertext

            # bob registers: msilo delivers both; his phone's notifications turn alice's ticks
            async with bob.ua:
                await bob.ua.register()
                got = [await asyncio.wait_for(bob.received.get(), 15) for _ in range(2)]
                vm = next(m for m in got if voice.voice_item(m.attachments))
                text = next(m for m in got if not voice.voice_item(m.attachments))
                assert text.text == "hello bob, are you there?" and vm.peer == alice_uri
                heard = compare(speech[: 48000 * 5], voice.decode(voice.voice_item(vm.attachments) or b""))
                assert heard.ok(), heard
                await wait_for(lambda: rows(mv.messages_thread)[-1].endswith("✓✓ delivered"), "the delivered tick")
                await bob.mark_read(text.id)
                await wait_for(lambda: rows(mv.messages_thread)[-1].endswith("✓✓ read"), "the read tick")

                # bob replies: an unread badge until alice opens the thread (which tells bob it was read)
                mv.conversations.setCurrentItem(None)
                mv.to.clear()
                window.tabs.setCurrentIndex(0)
                reply = await bob.send_text(alice_uri, "yes, just back online")
                await wait_for(lambda: "● 1 unread" in rows(mv.conversations)[0], "the unread badge")
                assert window.tabs.tabText(window.tabs.indexOf(mv)) == "&Messages (1)"
                window.tabs.setCurrentWidget(mv)
                mv.conversations.setCurrentRow(0)
                await wait_for(lambda: window.tabs.tabText(window.tabs.indexOf(mv)) == "&Messages",
                               "the badge to clear")
                receipts = [await asyncio.wait_for(bob.notifications.get(), 15) for _ in range(2)]
                assert sorted(receipts) == [(reply.id, "delivered"), (reply.id, "read")]   # sent concurrently
                assert any(r.endswith("← yes, just back online") for r in rows(mv.messages_thread))
                assert "verified by its ECCSI signature" in mv.thread_peer.text()
                assert window.grab().save(str(screenshots / "messages.png"))

                # a tampered message is refused in words and never shown
                sealed = bob.sealer.seal_text(alice_uri, "tampered text")
                body = bytearray(sealed.body)
                i = body.rindex(b"--scmsg--") - 20
                body[i] = ord("A") if body[i] != ord("A") else ord("B")
                resp = await send_message(bob.ua, alice_uri, bytes(body), sealed.content_type)
                assert resp.status == 200 and "message refused (tampered)" in (resp.headers.get("Warning") or "")
                await wait_for(lambda: window.notice.text().startswith(f"Refused a message claimed from {bob_uri}"),
                               "the refusal notice")
                assert window.notice.property("level") == "error" and "not shown" in window.notice.text()
                assert mv.refusals.text().startswith("1 refused message(s), never shown")
                assert not any("tampered" in r for r in rows(mv.messages_thread))

                # bob's voice message: a badge on Voicemail, then Play into alice's speaker
                await bob.send(alice_uri, voice.items(speech[: 48000 * 4]))
                await wait_for(lambda: window.tabs.tabText(window.tabs.indexOf(vv)) == "&Voicemail (1)",
                               "the voicemail badge")
                window.tabs.setCurrentWidget(vv)
                vv.list.setCurrentRow(0)
                assert rows(vv.list)[0].startswith(f"← from {bob_uri}") and rows(vv.list)[0].endswith("● new")
                assert window.tabs.tabText(window.tabs.indexOf(mv)) == "&Messages"   # voice counts on Voicemail
                assert window.grab().save(str(screenshots / "voicemail.png"))
                sinks = len(audio.sinks)
                await ui(QTest.mouseClick, vv.play, Qt.MouseButton.LeftButton)
                await wait_for(lambda: vv.state.text() == "played 4.0 s", "playback", 20)
                played = compare(speech[: 48000 * 4], audio.sinks[sinks].samples())
                assert played.ok(), played
                await wait_for(lambda: window.tabs.tabText(window.tabs.indexOf(vv)) == "&Voicemail",
                               "the voicemail badge to clear")

    run_gui(scenario, 180)
    history = controller.account.keystore.with_name(controller.account.keystore.name + ".messages")  # type: ignore[union-attr]
    assert history.stat().st_mode & 0o077 == 0 and b"hello bob" not in history.read_bytes()


def test_no_answer_statuses_offer_a_voice_message() -> None:
    assert all(voice.unanswered(s) for s in (404, 408, 480, 486, 487, 603))
    assert voice.unanswered(None, "call to sip:bob@lab.test not answered within 3 s")
    assert not voice.unanswered(488, "Not Acceptable Here") and not voice.unanswered(None, "cannot send INVITE")


def test_busy_or_silent_callee_gets_the_offer_and_dismiss_sends_nothing(
        lab: Lab, speech: np.ndarray, tmp_path: Path, run_gui: Any, screenshots: Path) -> None:
    """A real phone for bob refuses with 486 Busy Here, then lets a call ring out (alice's 4 s timeout): both
    times the offer appears, in words; leaving a message is optional (Dismiss sends nothing)."""
    from softphone.calls.phone import IncomingCall, Phone

    controller, window = build_window(account_for(lab, "alice", tmp_path / "cfg"), tmp_path / "data",
                                      audio=Audio(speech[: 48000 * 2]), call_timeout=4)
    ringing: list[IncomingCall] = []

    async def scenario() -> None:
        phone = Phone(lab.settings("bob"))
        async with phone, opened(window):
            await phone.register()

            async def busy_then_silent() -> None:
                incoming = await phone.next_incoming()
                await incoming.reject(486, warning="busy in another call")
                ringing.append(await phone.next_incoming())   # never answered
            bob = asyncio.get_running_loop().create_task(busy_then_silent())
            await start_window(window)
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            window.dial.setText("bob")
            await ui(QTest.mouseClick, window.call_button, Qt.MouseButton.LeftButton)
            await wait_for(window.voicemail_offer.isVisible, "the voice-message offer after 486", 20)
            assert controller.voicemail_to == lab.uri("bob")
            assert "Busy" in window.notice.text(), window.notice.text()
            assert window.voicemail_offer_text.text().startswith(f"{lab.uri('bob')} is busy. Leave a voice message")
            assert window.grab().save(str(screenshots / "voicemail-offer.png"))
            before = len(controller.messages.voicemails())   # the history (beside the lab keystore) is shared
            await ui(QTest.mouseClick, window.dismiss_voicemail, Qt.MouseButton.LeftButton)
            await asyncio.sleep(0.5)
            assert not window.voicemail_offer.isVisible() and len(controller.messages.voicemails()) == before

            await ui(QTest.mouseClick, window.call_button, Qt.MouseButton.LeftButton)
            await wait_for(window.voicemail_offer.isVisible, "the voice-message offer after the timeout", 20)
            await bob
            assert ringing, "bob's phone never saw the second call"
            assert window.voicemail_offer_text.text().startswith(
                f"{lab.uri('bob')} did not answer. Leave a voice message"), window.voicemail_offer_text.text()
            assert "not answered within 4 s" in window.notice.text(), window.notice.text()

    run_gui(scenario, 90)


def test_cli_call_voicemail_on_no_answer(lab: Lab, speech: np.ndarray, tmp_path: Path) -> None:
    """``softphone call --voicemail-on-no-answer WAV`` to offline bob: the recording reaches him (msilo)."""
    import os
    import subprocess
    import sys

    from softphone.media.audio import write_wav

    wav = tmp_path / "vm.wav"
    write_wav(wav, speech[: 48000 * 3])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cfg = lab.account_file("alice", tmp_path)
    args = [sys.executable, "-m", "softphone.cli", "call", "sip:bob@lab.test", "--config", str(cfg), "--play",
            str(wav), "--record", str(tmp_path / "out.wav"), "--timeout", "10"]
    too_long = tmp_path / "long.wav"
    write_wav(too_long, np.zeros(48000 * 13, dtype=np.int16))
    refused = subprocess.run([*args, "--voicemail-on-no-answer", str(too_long)], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "one secure message holds at most 12 s" in refused.stderr, refused.stderr
    done = subprocess.run([*args, "--voicemail-on-no-answer", str(wav)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stored for offline delivery" in done.stdout and "leaving a voice message" in done.stdout, done.stdout
    without = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)
    assert without.returncode == 1 and "voice message" not in without.stdout

    bob = messenger(lab, "bob", tmp_path)
    bob.start()

    async def receive() -> bytes:
        async with bob.ua:
            await bob.ua.register()
            while True:
                got = await asyncio.wait_for(bob.received.get(), 15)
                item = voice.voice_item(got.attachments)
                if item is not None and got.peer == lab.uri("alice") and "3.0 s" in got.text:
                    return item

    item = asyncio.run(receive())
    heard = compare(speech[: 48000 * 3], voice.decode(item))
    assert heard.ok(), heard
