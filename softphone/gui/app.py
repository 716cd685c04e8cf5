"""Start the desktop app: Qt application + asyncio loop (qasync) + one window over one account.

``softphone gui`` calls :func:`run`. Tests build the same pieces with :func:`build_window` on their
own display (Xvfb) and drive the real widgets.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from softphone.calls.profile import ProfileError, load_profile
from softphone.calls.profile import available_profiles as known_profiles
from softphone.config import DEFAULT_CONFIG, Account
from softphone.gui.model import CallHistory, ContactBook, GuiDataError, _write_private
from softphone.media.audio import (
    AudioError,
    AudioSink,
    AudioSource,
    SoundDeviceSink,
    SoundDeviceSource,
    WavSink,
    WavSource,
    list_devices,
)

if TYPE_CHECKING:  # Qt is imported when the window is built, not when this module is
    from softphone.gui.controller import PhoneController
    from softphone.gui.window import MainWindow


def load_prefs(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def available_profiles(current: str) -> tuple[str, ...]:
    names = [current]
    for name in known_profiles():
        try:
            load_profile(name)
        except ProfileError:
            continue
        if name not in names:
            names.append(name)
    return tuple(names)


def audio_factory(prefs: dict, play: Path | None = None, record: Path | None = None
                  ) -> Callable[[], tuple[AudioSource, AudioSink]]:
    """Sources/sinks per call: WAV files when given (headless), else the chosen sound devices."""
    def make() -> tuple[AudioSource, AudioSink]:
        source: AudioSource = WavSource(play) if play else SoundDeviceSource(prefs.get("input_device"))
        try:
            sink: AudioSink = WavSink(record) if record else SoundDeviceSink(prefs.get("output_device"))
        except (AudioError, OSError):
            source.close()
            raise
        return source, sink
    return make


def devices() -> tuple[list[dict], str | None]:
    try:
        return list_devices(), None
    except AudioError as exc:
        return [], str(exc)


def build_window(account: Account, data_dir: Path, *, profile: str | None = None,
                 audio: Callable[[], tuple[AudioSource, AudioSink]] | None = None,
                 play: Path | None = None, record: Path | None = None, call_timeout: float = 30.0,
                 device_list: Callable[[], tuple[list[dict], str | None]] = devices,
                 ) -> tuple[PhoneController, MainWindow]:
    """The controller and main window for ``account`` (a QApplication must exist)."""
    from softphone.gui.controller import PhoneController
    from softphone.gui.window import MainWindow

    data_dir = Path(data_dir)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in account.name)
    prefs_path = data_dir / "gui.json"
    prefs = load_prefs(prefs_path)
    history = CallHistory(data_dir / f"{safe}.history.jsonl")
    contacts = ContactBook(data_dir / "contacts.toml")
    controller = PhoneController(account, history, audio or audio_factory(prefs, play, record),
                                 profile=profile or prefs.get("profile", {}).get(account.name),
                                 call_timeout=call_timeout)

    def save(p: dict) -> None:
        p.setdefault("profile", {})[account.name] = controller.profile_name
        _write_private(prefs_path, json.dumps(p, indent=2))

    window = MainWindow(controller, contacts, prefs=prefs, save_prefs=save,
                        profiles=available_profiles(controller.profile_name), devices=device_list)
    return controller, window


def needs_setup(config: Path) -> bool:
    """No accounts file, or one without any ``[[account]]``: the first-run wizard is what to show."""
    try:
        data = tomllib.loads(Path(config).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # unreadable or broken: load_accounts says why, the wizard must not overwrite it
    return not data.get("account")


def run(account: Account | None, data_dir: Path, *, profile: str | None = None, play: Path | None = None,
        record: Path | None = None, config: Path | None = None) -> int:
    """Show the window and run until it is closed (after the first-run wizard when ``account`` is None,
    which writes ``config``). Raises :class:`GuiDataError` for unreadable data files."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
            and os.environ.get("QT_QPA_PLATFORM") not in ("offscreen", "minimal"):
        raise GuiDataError("no display: set DISPLAY (or run under xvfb-run)")
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Secure Chorus softphone")
    QApplication.setQuitOnLastWindowClosed(False)  # closing hangs up and un-REGISTERs, then run() returns
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    async def main() -> int:
        nonlocal account
        passphrase = None
        if account is None:
            from softphone.gui.wizard import first_run

            done = await first_run(config or DEFAULT_CONFIG, data_dir)
            if done is None:
                print("softphone: setup cancelled, no account configured", file=sys.stderr)
                return 2
            account, passphrase = done
        controller, window = build_window(account, data_dir, profile=profile, play=play, record=record)
        if passphrase is not None:
            controller.unlock(passphrase)
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C in the terminal, or a session logout: quit cleanly
            signal.signal(signum, lambda _signum, _frame: loop.call_soon_threadsafe(window.close))
        window.show()
        await window.run()
        return 0

    with loop:
        return loop.run_until_complete(main())
