"""Groups in the window: the Groups tab's rows and states in words, a group call placed from it through the
lab (Kamailio over TLS, our focus registered as sip:team@lab.test, bob and carol in the same loop, eve
holding only the GMK she was rekeyed out of), and a group key delivered by the lab's GMS showing up.

The call panel of a group call says "group-keyed" and lists who is heard; "verified" never appears."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lab.deployment import Lab
from lab.focus import NEW_GMK_ID, give_group_keys, lab_focus
from softphone.calls.phone import Phone
from softphone.config import load_accounts, select_account
from softphone.keys.groups import GroupKey
from softphone.keys.keystore import Keystore
from softphone.media.audio import ArraySink
from softphone.media.codecs import FRAME_SAMPLES
from tests.conftest import require_tool
from tests.gui.conftest import wait_for

pytest.importorskip("PySide6")
pytest.importorskip("qasync")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from softphone.calls.events import CallStatus, GroupStatus, MemberHeard  # noqa: E402
from softphone.gui.app import build_window  # noqa: E402
from softphone.gui.groups import (  # noqa: E402
    NO_GROUPS,
    GroupCallPanel,
    GroupsView,
    group_rows,
    member_lines,
    unknown_key_text,
)
from tests.gui.test_window import Audio, close_window, opened, screenshot, show, ui  # noqa: E402

NOW = 1_800_000_000   # 15 Jan 2027 08:00 UTC
GMS = "sip:gms@example.org"
ME = "sip:alice@example.org"


def _key(group: str, gmk_id: int, **kw: Any) -> GroupKey:
    return GroupKey(group, gmk_id, bytes(16), bytes(16), ME, GMS, members=(ME, "sip:bob@example.org"), **kw)


def _rows(view: GroupsView) -> list[list[str]]:
    t = view.table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


# --- (a) the tab, from a keystore ---------------------------------------------------------------------------
def test_group_rows_state_in_words() -> None:
    keys = [_key("sip:team@example.org", 1, activation=NOW - 3600, revoked=True),
            _key("sip:team@example.org", 2, activation=NOW - 60, expiry=NOW + 86400),
            _key("sip:team@example.org", 3, activation=NOW + 7200),
            _key("sip:later@example.org", 7, activation=NOW + 600),
            _key("sip:old@example.org", 8, activation=NOW - 7200, expiry=NOW - 3600),
            _key("sip:gone@example.org", 9, revoked=True)]
    rows = {r.uri: r for r in group_rows(keys, NOW)}
    assert [r.state for r in rows.values()] == ["revoked", "pending", "expired", "keyed"]  # sorted by URI
    assert rows["sip:team@example.org"].text == ("keyed — GMK 00000002 valid until 16 Jan 2027 08:00 UTC; "
                                                 "next key from 15 Jan 2027 10:00 UTC")
    assert rows["sip:later@example.org"].text == f"key pending from 15 Jan 2027 08:10 UTC (sent by {GMS})"
    assert rows["sip:old@example.org"].text.startswith("expired 15 Jan 2027 07:00 UTC")
    assert rows["sip:gone@example.org"].text.startswith("revoked")
    assert [r.callable for r in rows.values()] == [False, False, False, True]
    assert group_rows([], NOW) == []


def test_tab_lists_groups_from_the_keystore_and_calls_only_keyed_ones(qt_loop: Any, tmp_path: Path) -> None:
    store = Keystore.create(tmp_path / "alice.keystore", b"correct horse battery staple", n_log2=10)
    view = GroupsView(store.group_keys, now=lambda: NOW)
    assert view.empty.text() == NO_GROUPS and not view.empty.isHidden() and view.table.isHidden()
    assert view.table.rowCount() == 0 and not view.call_button.isEnabled()
    store.add_group_key(_key("sip:team@example.org", 2, activation=NOW - 60))
    store.add_group_key(_key("sip:later@example.org", 7, activation=NOW + 600))
    view.refresh()   # what the window does on MessageCenter.group_key and after registration
    assert view.empty.isHidden() and not view.table.isHidden()
    assert _rows(view) == [["sip:later@example.org", f"key pending from 15 Jan 2027 08:10 UTC (sent by {GMS})", "2"],
                           ["sip:team@example.org", "keyed — GMK 00000002 valid, no expiry", "2"]]
    wanted: list[str] = []
    view.call_requested.connect(wanted.append)
    view.table.selectRow(0)
    assert not view.call_button.isEnabled()   # a pending group cannot be called yet
    view.call_button.click()
    view.table.selectRow(1)
    assert view.call_button.isEnabled()
    view.call_button.click()
    assert wanted == ["sip:team@example.org"]


def test_call_panel_words_for_members_and_unknown_keys(qt_loop: Any) -> None:
    st = GroupStatus("sip:team@example.org", "00001002",
                     (MemberHeard("sip:bob@example.org", "0000100201020304", 250, 0),
                      MemberHeard(None, "00001002aabbccdd", 1, 2),
                      MemberHeard("sip:carol@example.org", "0000100205060708", 0, 0)), unknown_mki=3)
    assert member_lines(st) == ["sip:bob@example.org — group-keyed, 250 packets",
                                "unlisted sender (key 00001002aabbccdd) — group-keyed, 1 packet, "
                                "2 failed the group key check"]
    assert unknown_key_text(st) == "3 packets under a group key this phone does not hold"
    assert unknown_key_text(GroupStatus("sip:team@example.org", "00001002")) == ""
    panel = GroupCallPanel()
    assert panel.show_status(CallStatus("confirmed", "sip:team@example.org", group=st))
    assert panel.member_texts() == member_lines(st) and not panel.unknown.isHidden()
    assert not panel.show_status(CallStatus("confirmed", "sip:bob@example.org"))   # a 1:1 call: hidden
    assert panel.isHidden() and panel.member_texts() == []


# --- (b) a group call from the window, through the lab -------------------------------------------------------
class LoopSource:
    """Speech over and over (a member who keeps talking until the window has joined and looked)."""

    def __init__(self, samples: np.ndarray) -> None:
        self._samples = samples.astype(np.int16, copy=False)
        self._pos = 0

    def read(self) -> np.ndarray:
        idx = (np.arange(FRAME_SAMPLES) + self._pos) % len(self._samples)
        self._pos = (self._pos + FRAME_SAMPLES) % len(self._samples)
        return self._samples[idx]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def group_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("guigroups"), users=("alice", "bob", "carol", "eve", "team", "gms")) as running:
        yield running


def _window(lab: Lab, user: str, tmp_path: Path, speech: np.ndarray) -> tuple[Any, Any]:
    account = select_account(load_accounts(lab.account_file(user, tmp_path / "cfg")), user)
    return build_window(account, tmp_path / "data", audio=Audio(speech))


@contextlib.asynccontextmanager
async def members_calling(lab: Lab, group: str, users: tuple[str, ...], speech: np.ndarray) -> AsyncIterator[None]:
    """``users`` call ``group`` through the focus and talk (each a different stretch of speech)."""
    phones = {u: Phone(lab.settings(u)) for u in users}
    async with contextlib.AsyncExitStack() as stack:
        for p in phones.values():
            await stack.enter_async_context(p)
            await p.register()
        calls = []
        for i, p in enumerate(phones.values()):
            calls.append(await p.call(group, LoopSource(np.roll(speech, (i + 1) * len(speech) // 4)), ArraySink(),
                                      timeout=10))
        try:
            yield
        finally:
            for c in calls:
                with contextlib.suppress(Exception):
                    await c.hangup()


@pytest.mark.slow
def test_group_call_from_the_tab_shows_members_heard_group_keyed(group_lab: Lab, speech: np.ndarray,
                                                                  tmp_path: Path, run_gui: Any,
                                                                  screenshots: Path) -> None:
    lab = group_lab
    group = give_group_keys(lab, ("alice", "bob", "carol"), ("eve",))   # before the GUI opens its keystore
    controller, window = _window(lab, "alice", tmp_path, speech)
    window.resize(760, 640)

    async def scenario() -> None:
        async with lab_focus(lab), members_calling(lab, group, ("bob", "carol", "eve"), speech), opened(window):
            await show(window)
            assert await window.start(), window.notice.text()
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            window.tabs.setCurrentWidget(window.groups_view)
            rows = await wait_for(lambda: _rows(window.groups_view), "the group in the Groups tab")
            assert rows == [[group, f"keyed — GMK {NEW_GMK_ID:08x} valid, no expiry", "3"]]
            await ui(QTest.mouseClick, window.groups_view.call_button, Qt.MouseButton.LeftButton)
            await wait_for(lambda: controller.state == "in-call", "the group call to be answered by the focus", 20)
            want = {lab.uri("bob"), lab.uri("carol")}
            await wait_for(lambda: {t.split(" — ")[0] for t in window.group_panel.member_texts()} == want,
                           "bob and carol in the members heard", 20)
            await wait_for(lambda: window.group_panel.unknown.text(), "eve's packets counted as unknown keys", 10)
            assert window.badge.text() == f"Group call — group-keyed (GMK {NEW_GMK_ID:08x})"
            assert all(t.split(" — ")[1].startswith("group-keyed") for t in window.group_panel.member_texts())
            assert window.group_panel.unknown.text().endswith(" under a group key this phone does not hold")
            assert not window.hold_button.isEnabled() and not window.keypad_button.isEnabled()
            await asyncio.sleep(1.0)   # a few more packets in the counts for the picture
            screenshot(window, screenshots, "group-call")
            shown = " ".join(w.text() for w in (window.badge, window.identity, window.details, window.call_state,
                                               window.group_panel.unknown))
            shown += " ".join(window.group_panel.member_texts())
            assert "verified" not in shown.lower() and "ECCSI" not in shown
            await ui(QTest.keyClick, window, Qt.Key.Key_Escape)   # hang up
            await wait_for(lambda: controller.state == "idle", "the call to end")
            assert window.group_panel.isHidden()
            await close_window(window)

    run_gui(scenario, 120)


@pytest.mark.slow
def test_group_key_from_the_gms_appears_in_the_tab(group_lab: Lab, speech: np.ndarray, tmp_path: Path,
                                                    run_gui: Any) -> None:
    """The running window takes a group key from the lab's GMS (a trusted GMS: the accounts file's
    ``trusted_gms``) and lists the group without a restart."""
    lab = group_lab
    crew = "sip:crew@lab.test"
    controller, window = _window(lab, "alice", tmp_path, speech)
    notices: list[str] = []
    controller.notice.connect(lambda _level, text, _cause: notices.append(text))

    async def scenario() -> None:
        async with opened(window):
            await show(window)
            assert await window.start(), window.notice.text()
            await wait_for(lambda: window.registration.property("state") == "registered", "registration")
            assert crew not in [r.uri for r in window.groups_view.rows]
            t0 = time.monotonic()
            done = await asyncio.to_thread(lab.group, "create", crew, "--member", lab.uri("alice"), "--text", "crew")
            assert done.returncode == 0, done.stderr
            await wait_for(lambda: crew in [r.uri for r in window.groups_view.rows], "crew in the Groups tab",
                           max(5.0, 30 - (time.monotonic() - t0)))
            row = next(r for r in window.groups_view.rows if r.uri == crew)
            assert row.state == "keyed" and row.text.startswith("keyed — GMK ") and row.gms == lab.gms_uri()
            assert f"group key for {crew} received from {lab.gms_uri()}" in notices
            await close_window(window)

    run_gui(scenario, 90)
