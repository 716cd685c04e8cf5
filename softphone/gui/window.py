"""The main window: account and key state, dial field, contacts, recent calls, incoming and in-call views.

Widgets have object names (``dial``, ``call_button``, ``badge``, ``identity``, ``hold_button`` …) so
tests and accessibility tools can find them. Keyboard: the dial field has focus at start, Enter
calls; in a call Ctrl+M mutes, Ctrl+H holds/resumes, Ctrl+K shows the keypad, digits send DTMF,
Esc hangs up (declines an incoming call); Alt+A accepts; Ctrl+, opens Settings; Ctrl+Q quits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QStringListModel, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from softphone.calls.events import CallStatus, Incoming
from softphone.calls.profile import SecurityLevel
from softphone.gui.controller import DIAGNOSTICS_WARNING, CallLine, Diagnostics, PhoneController
from softphone.gui.conversations import ConversationsView, VoicemailView
from softphone.gui.groups import GroupCallPanel, GroupsView, group_badge_style, group_call_title, group_peer_text
from softphone.gui.model import CallRecord, ContactBook, GuiDataError, badge, format_duration
from softphone.messaging import voice

NOTICE_COLOURS = {"info": "#1f4e79", "warning": "#8a5a00", "error": "#b3261e"}
REG_COLOURS = {"registered": "#1b7f3b", "starting": "#8a5a00", "registering": "#8a5a00", "retrying": "#b3261e",
               "offline": "#b3261e", "failed": "#b3261e"}
KEYPAD = "123456789*0#"


def _label(text: str = "", name: str = "", bold: bool = False, size: int | None = None) -> QLabel:
    w = QLabel(text)
    if name:
        w.setObjectName(name)
        w.setAccessibleName(name.replace("_", " "))
    w.setWordWrap(True)
    w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    style = ("font-weight: bold;" if bold else "") + (f"font-size: {size}pt;" if size else "")
    if style:
        w.setStyleSheet(style)
    return w


def _dtmf_slot(controller: PhoneController, digit: str) -> Callable[[], None]:
    """A button slot sending ``digit`` (``clicked`` may pass its checked flag: ignored)."""
    def send(_checked: bool = False) -> None:
        controller.dtmf(digit)
    return send


def _button(text: str, name: str, slot: Callable[[], Any]) -> QPushButton:
    b = QPushButton(text)
    b.setObjectName(name)
    b.setAccessibleName(name.replace("_", " "))
    b.clicked.connect(slot)
    b.setAutoDefault(True)
    return b


class ContactDialog(QDialog):
    """Add or edit one contact (name + SIP URI)."""

    def __init__(self, parent: QWidget, name: str = "", uri: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Contact")
        self.name = QLineEdit(name)
        self.name.setObjectName("contact_name")
        self.uri = QLineEdit(uri)
        self.uri.setObjectName("contact_uri")
        self.uri.setPlaceholderText("sip:bob@example.org")
        form = QFormLayout(self)
        form.addRow("&Name", self.name)
        form.addRow("SIP &address", self.uri)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


class TransferDialog(QDialog):
    """Whom to transfer the current call to (blind transfer)."""

    def __init__(self, parent: QWidget, peer: str) -> None:
        super().__init__(parent)
        self.setObjectName("transfer_dialog")
        self.setWindowTitle("Transfer call")
        self.target = QLineEdit()
        self.target.setObjectName("transfer_target")
        self.target.setPlaceholderText("carol, carol@example.org or sip:carol@example.org")
        form = QFormLayout(self)
        form.addRow(_label(f"Transfer {peer} to someone else: their phone calls them (with new keys) and "
                           "this call ends once they answer."))
        form.addRow("&Transfer to", self.target)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


def waiting_words(info: Incoming, name: str | None = None) -> str:
    """A second caller in words, claiming no more than was verified: ``sip:carol@x is calling — verified by
    ECCSI``."""
    verified = info.verified_identity
    who = verified or info.peer or "an unknown caller"
    if name:
        who = f"{name} — {who}"
    if verified:
        security = "identity verified by ECCSI (Secure Chorus)"
    elif info.security == SecurityLevel.SDES_INTEROP.label:
        security = "encrypted (SDES interop), identity NOT verified"
    else:
        security = "identity NOT verified"
    return f"{who} is calling — {security}"


class SettingsDialog(QDialog):
    """Audio devices, profile, KMS and key status (with expiry countdown and Fetch now)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window_ = window
        self.setObjectName("settings")
        self.setWindowTitle("Settings")
        self.setMinimumWidth(640)
        c = window.controller
        prefs = window.prefs
        self.input = QComboBox()
        self.input.setObjectName("input_device")
        self.output = QComboBox()
        self.output.setObjectName("output_device")
        self.input.addItem("System default", None)
        self.output.addItem("System default", None)
        devices, error = window.devices()
        for d in devices:
            if d["max_input_channels"] > 0:
                self.input.addItem(f"{d['name']} ({d['hostapi']})", d["name"])
            if d["max_output_channels"] > 0:
                self.output.addItem(f"{d['name']} ({d['hostapi']})", d["name"])
        for combo, current in ((self.input, prefs.get("input_device")), (self.output, prefs.get("output_device"))):
            i = combo.findData(current)
            combo.setCurrentIndex(max(0, i))
        self.audio_processing = QCheckBox("&Echo cancellation, noise suppression, gain control")
        self.audio_processing.setObjectName("audio_processing")
        self.audio_processing.setChecked(prefs.get("audio_processing", c.account.audio_processing != "off") is True)
        self.profile = QComboBox()
        self.profile.setObjectName("profile")
        for name in window.profiles:
            self.profile.addItem(name, name)
        self.profile.setCurrentIndex(max(0, self.profile.findData(c.profile_name)))
        kms = QLineEdit(c.account.kms_url or "(none configured)")
        kms.setObjectName("kms_url")
        kms.setReadOnly(True)
        self.keys = _label(name="settings_keys")
        self.revocations = _label(c.revocation_status(), "settings_revocations")
        self.fetch = _button("&Fetch keys now", "fetch_now", lambda: c.spawn(c.fetch_keys(force=True)))
        # capture + TLS key log for 'softphone analyze': off by default (and at every app start), warned
        data = c.history.path.parent
        self.diagnostics = QCheckBox("Record a &capture and TLS key log of calls (for 'softphone analyze')")
        self.diagnostics.setObjectName("diagnostics")
        self.diagnostics.setChecked(c.diagnostics is not None)
        self.capture_path = QLineEdit(str(c.diagnostics.capture if c.diagnostics else
                                          prefs.get("capture_path") or data / "capture.pcap"))
        self.capture_path.setObjectName("capture_path")
        self.keylog_path = QLineEdit(str(c.diagnostics.keylog if c.diagnostics else
                                         prefs.get("keylog_path") or data / "tls-keys.log"))
        self.keylog_path.setObjectName("keylog_path")
        self.diagnostics_warning = _label(DIAGNOSTICS_WARNING, "diagnostics_warning")
        self.diagnostics_warning.setStyleSheet(f"color: {NOTICE_COLOURS['error']};")
        paths = QWidget()
        grid = QGridLayout(paths)
        grid.setContentsMargins(0, 0, 0, 0)
        for row, (text, edit) in enumerate((("Capture (pcap)", self.capture_path),
                                            ("TLS key log", self.keylog_path))):
            grid.addWidget(QLabel(text), row, 0)
            grid.addWidget(edit, row, 1)
            grid.addWidget(_button("Choose…", f"{edit.objectName()}_choose", self._chooser(edit)), row, 2)
        self.diagnostics_paths = paths
        self.diagnostics.toggled.connect(self._diagnostics_toggled)
        self._diagnostics_toggled(self.diagnostics.isChecked())
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("&Microphone", self.input)
        form.addRow("&Speaker", self.output)
        if error:
            form.addRow("", _label(error, "devices_error"))
        form.addRow("", self.audio_processing)
        form.addRow("&Profile", self.profile)
        form.addRow("KMS", kms)
        form.addRow("Keys", self.keys)
        form.addRow("Revoked callers", self.revocations)
        form.addRow("", self.fetch)
        form.addRow("Analysis", self.diagnostics)
        form.addRow("", self.diagnostics_paths)
        form.addRow("", self.diagnostics_warning)
        form.addRow(buttons)
        self.refresh()
        c.keys_changed.connect(lambda _status: self.refresh())
        self.accepted.connect(self._apply)

    def _diagnostics_toggled(self, on: bool) -> None:
        self.diagnostics_paths.setEnabled(on)
        self.diagnostics_warning.setVisible(on)
        self.adjustSize()   # room for the warning's lines

    def _chooser(self, edit: QLineEdit) -> Callable[[], None]:
        def choose(_checked: bool = False) -> None:
            path, _ = QFileDialog.getSaveFileName(self, "File holding secrets", edit.text())
            if path:
                edit.setText(path)
        return choose

    def chosen_diagnostics(self) -> Diagnostics | None:
        if not self.diagnostics.isChecked():
            return None
        return Diagnostics(Path(self.capture_path.text().strip()).expanduser(),
                           Path(self.keylog_path.text().strip()).expanduser())

    def refresh(self) -> None:
        ks = self.window_.controller.current_keys()
        if ks is None:
            self.keys.setText("no keystore (this profile needs no KMS keys)")
            return
        self.revocations.setText(self.window_.controller.revocation_status())
        lines = [ks.summary()]
        if ks.periods:
            lines.append("held periods: " + ", ".join(map(str, ks.periods)))
        self.keys.setText("\n".join(lines))

    def _apply(self) -> None:
        w = self.window_
        w.prefs["input_device"] = self.input.currentData()
        w.prefs["output_device"] = self.output.currentData()
        w.prefs["audio_processing"] = w.controller.audio_processing = self.audio_processing.isChecked()
        if w.controller.settings is not None:  # from the next call on
            w.controller.settings.audio_processing = w.controller.audio_processing
        diagnostics = self.chosen_diagnostics()
        if diagnostics is not None:   # the paths are remembered, the switch is not
            w.prefs["capture_path"], w.prefs["keylog_path"] = str(diagnostics.capture), str(diagnostics.keylog)
        w.save_prefs()
        profile = self.profile.currentData()
        if profile and profile != w.controller.profile_name:
            w.controller.diagnostics = diagnostics   # the profile change restarts the phone anyway
            w.controller.spawn(w.controller.change_profile(profile))
        elif diagnostics != w.controller.diagnostics:
            w.controller.spawn(w.controller.set_diagnostics(diagnostics))


class MainWindow(QMainWindow):
    """The softphone window over one :class:`PhoneController`."""

    def __init__(self, controller: PhoneController, contacts: ContactBook, *, prefs: dict | None = None,
                 save_prefs: Callable[[dict], None] | None = None, profiles: tuple[str, ...] = (),
                 devices: Callable[[], tuple[list[dict], str | None]] | None = None) -> None:
        super().__init__()
        self.controller = controller
        self.contacts = contacts
        self.prefs = prefs if prefs is not None else {}
        if isinstance(self.prefs.get("audio_processing"), bool):
            controller.audio_processing = self.prefs["audio_processing"]
        self._save_prefs = save_prefs
        self.profiles = profiles or (controller.profile_name,)
        self._devices = devices
        self._closed: asyncio.Future[None] | None = None
        self._notice_cause = ""
        self.setObjectName("main_window")
        self.setWindowTitle(f"Secure Chorus softphone — {controller.account.uri}")
        self.resize(720, 560)
        self._build()
        self._wire()
        self.refresh_recent()
        self.refresh_completion()
        self.show_page("idle")

    # --- construction ------------------------------------------------------------------------------
    def _build(self) -> None:
        c = self.controller
        root = QWidget()
        layout = QVBoxLayout(root)
        head = QHBoxLayout()
        self.account = _label(c.account.display_name or c.account.uri, "account", bold=True, size=12)
        self.account.setToolTip(c.account.uri)
        self.registration = _label("● starting…", "registration")
        head.addWidget(self.account, 1)
        head.addWidget(self.registration)
        layout.addLayout(head)
        self.keys = _label("keys: …", "keys")
        layout.addWidget(self.keys)
        self.notice = _label("", "notice")
        self.notice.setVisible(False)
        layout.addWidget(self.notice)

        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {"idle": self._idle_page(), "incoming": self._incoming_page(),
                                          "call": self._call_page()}
        for page in self.pages.values():
            self.stack.addWidget(page)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(root)

        menu = self.menuBar().addMenu("&Phone")
        for text, shortcut, slot in (("&Settings…", "Ctrl+,", self.open_settings),
                                     ("Fetch &keys now", "Ctrl+R", lambda: c.spawn(c.fetch_keys(force=True))),
                                     ("&Quit", "Ctrl+Q", self.close)):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(slot)
            menu.addAction(action)
            self.addAction(action)

    def _idle_page(self) -> QWidget:
        c = self.controller
        page = QWidget()
        v = QVBoxLayout(page)
        row = QHBoxLayout()
        self.dial = QLineEdit()
        self.dial.setObjectName("dial")
        self.dial.setAccessibleName("number or SIP address to call")
        self.dial.setPlaceholderText("Call… (name, user@domain or sip: URI)")
        self.completion = QStringListModel()
        completer = QCompleter(self.completion, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.dial.setCompleter(completer)
        self.call_button = _button("&Call", "call_button", self._dial)
        self.dial.returnPressed.connect(self._dial)
        row.addWidget(self.dial, 1)
        row.addWidget(self.call_button)
        v.addLayout(row)
        self.tabs = QTabWidget()
        contacts = QWidget()
        cv = QVBoxLayout(contacts)
        self.contact_list = QListWidget()
        self.contact_list.setObjectName("contacts")
        self.contact_list.itemActivated.connect(lambda _item: self._dial_contact())
        cv.addWidget(self.contact_list, 1)
        cb = QHBoxLayout()
        self.add_contact = _button("&Add…", "add_contact", self._add_contact)
        self.edit_contact = _button("&Edit…", "edit_contact", self._edit_contact)
        self.remove_contact = _button("&Remove", "remove_contact", self._remove_contact)
        for b in (self.add_contact, self.edit_contact, self.remove_contact):
            cb.addWidget(b)
        cb.addStretch(1)
        cv.addLayout(cb)
        self.tabs.addTab(contacts, "C&ontacts")
        self.recent = QTableWidget(0, 7)
        self.recent.setObjectName("recent")
        self.recent.setHorizontalHeaderLabels(["Time", "", "Peer", "Verified identity", "Security", "Duration",
                                               "Outcome"])
        self.recent.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.recent.horizontalHeader().setStretchLastSection(True)
        self.recent.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.recent.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.recent.verticalHeader().setVisible(False)
        self.recent.cellActivated.connect(lambda row, _col: self._dial_recent(row))
        self.tabs.addTab(self.recent, "&Recent calls")
        self.messages_view = ConversationsView(self.controller)
        self.tabs.addTab(self.messages_view, "&Messages")
        self.voicemail_view = VoicemailView(self.controller)
        self.tabs.addTab(self.voicemail_view, "&Voicemail")
        self.groups_view = GroupsView(lambda: c.keystore.group_keys() if c.keystore is not None else [])
        self.groups_view.call_requested.connect(self._dial_group)
        self.tabs.addTab(self.groups_view, "&Groups")
        self.voicemail_offer = QWidget()
        self.voicemail_offer.setObjectName("voicemail_offer")
        offer = QHBoxLayout(self.voicemail_offer)
        offer.setContentsMargins(0, 0, 0, 0)
        self.voicemail_offer_text = _label("", "voicemail_offer_text")
        self.leave_voicemail = _button("&Leave a voice message", "leave_voicemail", self._leave_voicemail)
        self.dismiss_voicemail = _button("Dismiss", "dismiss_voicemail", lambda: self.voicemail_offer.hide())
        offer.addWidget(self.voicemail_offer_text, 1)
        offer.addWidget(self.leave_voicemail)
        offer.addWidget(self.dismiss_voicemail)
        self.voicemail_offer.setVisible(False)
        v.addWidget(self.voicemail_offer)
        v.addWidget(self.tabs, 1)
        self.refresh_contacts()
        QWidget.setTabOrder(self.dial, self.call_button)
        QWidget.setTabOrder(self.call_button, self.tabs)
        return page

    def _incoming_page(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        v.addWidget(_label("Incoming call", "incoming_title", bold=True, size=16))
        self.incoming_identity = _label("", "incoming_identity", bold=True, size=14)
        self.incoming_badge = _label("", "incoming_badge", bold=True)
        self.incoming_detail = _label("", "incoming_detail")
        for w in (self.incoming_identity, self.incoming_badge, self.incoming_detail):
            v.addWidget(w)
        row = QHBoxLayout()
        self.accept_button = _button("&Accept", "accept_button", self.controller.accept)
        self.accept_button.setStyleSheet("background: #1b7f3b; color: white; padding: 8px 24px;")
        self.decline_button = _button("&Decline", "decline_button", self.controller.decline)
        self.decline_button.setStyleSheet("background: #b3261e; color: white; padding: 8px 24px;")
        row.addWidget(self.accept_button)
        row.addWidget(self.decline_button)
        row.addStretch(1)
        v.addLayout(row)
        v.addStretch(1)
        QWidget.setTabOrder(self.accept_button, self.decline_button)
        return page

    def _call_page(self) -> QWidget:
        c = self.controller
        page = QWidget()
        v = QVBoxLayout(page)
        # call waiting: a second call rings while this one is up
        self.waiting_banner = QWidget()
        self.waiting_banner.setObjectName("waiting_banner")
        self.waiting_banner.setStyleSheet("#waiting_banner { background: #1f4e79; } QLabel { color: white; }")
        wb = QHBoxLayout(self.waiting_banner)
        self.waiting_text = _label("", "waiting_text", bold=True)
        self.answer_waiting_button = _button("&Answer (hold current)", "answer_waiting_button", c.answer_waiting)
        self.answer_waiting_button.setStyleSheet("background: #1b7f3b; color: white; padding: 6px 16px;")
        self.decline_waiting_button = _button("Decli&ne", "decline_waiting_button", c.decline_waiting)
        self.decline_waiting_button.setStyleSheet("background: #b3261e; color: white; padding: 6px 16px;")
        wb.addWidget(self.waiting_text, 1)
        wb.addWidget(self.answer_waiting_button)
        wb.addWidget(self.decline_waiting_button)
        self.waiting_banner.setVisible(False)
        v.addWidget(self.waiting_banner)
        self.call_state = _label("", "call_state", bold=True, size=14)
        self.badge = _label("", "badge", bold=True)
        self.identity = _label("", "identity", bold=True, size=13)
        self.details = _label("", "details")
        self.stats = _label("", "stats")
        self.timer = _label("00:00", "timer", bold=True, size=14)
        self.group_panel = GroupCallPanel()   # members heard, in group calls only
        for w in (self.call_state, self.badge, self.identity, self.details, self.group_panel):
            v.addWidget(w)
        meters = QGridLayout()
        self.mic_meter, self.spk_meter = QProgressBar(), QProgressBar()
        for row, (name, bar) in enumerate((("Microphone", self.mic_meter), ("Speaker", self.spk_meter))):
            bar.setObjectName(name.lower() + "_level")
            bar.setAccessibleName(name + " level")
            bar.setRange(0, 100)
            bar.setTextVisible(False)
            meters.addWidget(QLabel(name), row, 0)
            meters.addWidget(bar, row, 1)
        v.addLayout(meters)
        stats_row = QHBoxLayout()
        stats_row.addWidget(self.stats, 1)
        stats_row.addWidget(self.timer)
        v.addLayout(stats_row)
        buttons = QHBoxLayout()
        self.mute_button = _button("&Mute", "mute_button", self._mute)
        self.mute_button.setCheckable(True)
        self.hold_button = _button("&Hold", "hold_button", c.toggle_hold)
        self.keypad_button = _button("&Keypad", "keypad_button", self._toggle_keypad)
        self.transfer_button = _button("&Transfer…", "transfer_button", self.open_transfer)
        self.attended_button = _button("Transfer held call to &this one", "attended_button", c.transfer_attended)
        self.attended_button.setVisible(False)
        self.hangup_button = _button("Hang &up", "hangup_button", c.hangup)
        self.hangup_button.setStyleSheet("background: #b3261e; color: white; padding: 8px 24px;")
        for b in (self.mute_button, self.hold_button, self.keypad_button, self.transfer_button, self.attended_button,
                  self.hangup_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        v.addLayout(buttons)
        self.transfer_text = _label("", "transfer_status")
        self.transfer_text.setVisible(False)
        v.addWidget(self.transfer_text)
        # several calls (call waiting, transfer): list them, switch between them, hang up either
        self.calls_box = QWidget()
        self.calls_box.setObjectName("calls_box")
        cb = QVBoxLayout(self.calls_box)
        cb.setContentsMargins(0, 0, 0, 0)
        cb.addWidget(_label("Your calls", bold=True))
        self.calls_list = QListWidget()
        self.calls_list.setObjectName("calls_list")
        self.calls_list.setAccessibleName("calls in progress")
        self.calls_list.setMaximumHeight(90)
        self.calls_list.itemActivated.connect(lambda _item: self._switch_selected())
        cb.addWidget(self.calls_list)
        calls_row = QHBoxLayout()
        self.switch_button = _button("S&witch to this call", "switch_button", self._switch_selected)
        self.hangup_selected_button = _button("Hang up this call", "hangup_selected_button", self._hangup_selected)
        calls_row.addWidget(self.switch_button)
        calls_row.addWidget(self.hangup_selected_button)
        calls_row.addStretch(1)
        cb.addLayout(calls_row)
        self.calls_box.setVisible(False)
        v.addWidget(self.calls_box)
        self.keypad = QWidget()
        self.keypad.setObjectName("keypad")
        grid = QGridLayout(self.keypad)
        for i, digit in enumerate(KEYPAD):
            b = _button(digit, f"dtmf_{'star' if digit == '*' else 'hash' if digit == '#' else digit}",
                        _dtmf_slot(c, digit))
            b.setAutoDefault(False)
            grid.addWidget(b, i // 3, i % 3)
        self.keypad.setVisible(False)
        v.addWidget(self.keypad)
        v.addStretch(1)
        order = (self.mute_button, self.hold_button, self.keypad_button, self.transfer_button, self.attended_button,
                 self.hangup_button)
        for a, b in itertools.pairwise(order):
            QWidget.setTabOrder(a, b)
        return page

    def _wire(self) -> None:
        c = self.controller
        c.registration.connect(self._on_registration)
        c.keys_changed.connect(self._on_keys)
        c.notice.connect(self.show_notice)
        c.state_changed.connect(self._on_state)
        c.incoming.connect(self._on_incoming)
        c.call_updated.connect(self._on_call_updated)
        c.call_ended.connect(lambda _r: self.refresh_recent())
        c.no_answer.connect(self._offer_voicemail)
        c.call_waiting.connect(self._on_call_waiting)
        c.calls_changed.connect(self._on_calls_changed)
        c.transfer_status.connect(self._on_transfer_status)
        c.early_media.connect(self._on_early_media)
        c.messages.changed.connect(lambda _peer: self._message_badges())
        c.messages.group_key.connect(lambda _group: self.groups_view.refresh())   # a GMK was stored
        c.registration.connect(lambda _state, _detail: self.groups_view.refresh())  # keystore opened
        for keys, slot in (("Ctrl+M", self._shortcut_mute), ("Ctrl+H", c.toggle_hold), ("Ctrl+K", self._toggle_keypad),
                           ("Escape", c.hangup)):
            sc = QShortcut(QKeySequence(keys), self)
            sc.activated.connect(slot)
        self.tick = QTimer(self)
        self.tick.setInterval(200)
        self.tick.timeout.connect(self._tick)
        self.tick.start()

    # --- messages and voice messages ---------------------------------------------------------------
    def _message_badges(self) -> None:
        """Unread counts on the Messages and Voicemail tabs."""
        unread, unheard = self.messages_view.unread(), self.voicemail_view.unheard()
        self.tabs.setTabText(self.tabs.indexOf(self.messages_view), f"&Messages ({unread})" if unread else "&Messages")
        self.tabs.setTabText(self.tabs.indexOf(self.voicemail_view),
                             f"&Voicemail ({unheard})" if unheard else "&Voicemail")

    def _offer_voicemail(self, uri: str, why: str = "did not answer") -> None:
        self.voicemail_offer_text.setText(f"{uri} {why}. Leave a voice message (up to "
                                          f"{voice.MAX_SECONDS:g} s, encrypted so that only {uri} can play it)?")
        self.leave_voicemail.setText("&Leave a voice message")
        self.leave_voicemail.setEnabled(True)
        self.voicemail_offer.setVisible(True)
        self.leave_voicemail.setFocus()

    def _leave_voicemail(self) -> None:
        c = self.controller
        if c.recording:                       # second press: stop and send
            c.stop_recording()
            return
        uri = c.voicemail_to
        if uri is None:
            self.voicemail_offer.setVisible(False)
            return
        self.voicemail_offer_text.setText(f"Recording a voice message for {uri}… press Stop and send when done")
        self.leave_voicemail.setText("&Stop and send")

        async def go() -> None:
            ok = await c.leave_voice_message(uri)
            self.leave_voicemail.setText("&Leave a voice message")
            if ok:
                self.voicemail_offer.setVisible(False)
            else:
                self.voicemail_offer_text.setText(f"The voice message for {uri} was not sent (see above); try again?")
        c.spawn(go())

    # --- prefs and devices -------------------------------------------------------------------------
    def save_prefs(self) -> None:
        if self._save_prefs is not None:
            self._save_prefs(self.prefs)

    def devices(self) -> tuple[list[dict], str | None]:
        if self._devices is None:
            return [], None
        return self._devices()

    # --- views -------------------------------------------------------------------------------------
    def show_page(self, name: str) -> None:
        self.stack.setCurrentWidget(self.pages[name])
        focus = {"idle": self.dial, "incoming": self.accept_button, "call": self.hangup_button}[name]
        focus.setFocus()

    def show_notice(self, level: str, text: str, cause: str = "") -> None:
        """The banner under the header; ``cause`` ("start", "call") says when it stops being true."""
        self._notice_cause = cause
        self.notice.setText(text)
        self.notice.setProperty("level", level)
        self.notice.setStyleSheet(f"color: white; background: {NOTICE_COLOURS.get(level, '#444')}; padding: 6px;")
        self.notice.setVisible(True)
        self.statusBar().showMessage(text, 15000)

    def clear_notice(self, cause: str | None = None) -> None:
        """Hide the banner (only if it was shown for ``cause``, when given)."""
        if cause is not None and self._notice_cause != cause:
            return
        self._notice_cause = ""
        self.notice.setText("")
        self.notice.setProperty("level", None)
        self.notice.setVisible(False)
        self.statusBar().clearMessage()

    def _on_registration(self, state: str, detail: str) -> None:
        self.registration.setText(f"● {detail}" if state == "retrying" else f"● {state}")
        self.registration.setToolTip(detail)
        self.registration.setProperty("state", state)
        self.registration.setStyleSheet(f"color: {REG_COLOURS.get(state, '#444')}; font-weight: bold;")
        self._on_keys(self.controller.current_keys())

    def _on_keys(self, status: Any) -> None:
        if status is None:
            self.keys.setText("keys: none (profile without KMS keys)" if self.controller.keystore is None
                              and self.controller.settings is not None else "keys: …")
        else:
            self.keys.setText(status.summary())
        self.keys.setProperty("key_status", status)

    def _on_state(self, state: str) -> None:
        if state == "idle":
            self.show_page("idle")
            self.keypad.setVisible(False)
            self.waiting_banner.setVisible(False)
            self.transfer_text.setVisible(False)
            self.calls_box.setVisible(False)
            self.mute_button.setChecked(False)
            self.group_panel.clear()
            self.refresh_recent()
            QApplication.restoreOverrideCursor()
        elif state in ("calling", "ringing"):
            if state == "calling":
                self.clear_notice("call")  # the last call's outcome is not this call's
                self.voicemail_offer.setVisible(False)
            self.call_state.setText("Calling…" if state == "calling" else "Ringing…")
            self.badge.setText("")
            self.badge.setStyleSheet("")
            self.badge.setProperty("level", None)
            self.identity.setText(self.dial.text())
            self.details.setText("")
            self.stats.setText("")
            self.timer.setText("00:00")
            self.hold_button.setEnabled(False)
            self.mute_button.setEnabled(False)
            self.keypad_button.setEnabled(False)
            self.transfer_button.setEnabled(False)
            self.show_page("call")
        elif state == "in-call":
            solo = self.group_panel.isHidden()  # a group call's status may come first: no hold or DTMF there
            self.hold_button.setEnabled(solo)
            self.mute_button.setEnabled(True)
            self.keypad_button.setEnabled(solo)
            self.transfer_button.setEnabled(True)
            self.show_page("call")
        elif state == "incoming":
            self.clear_notice("call")
            self.show_page("incoming")
            self.raise_()
            self.activateWindow()
            QApplication.alert(self)

    def _on_incoming(self, info: Incoming) -> None:
        verified = info.verified_identity
        who = verified or info.peer or "unknown caller"
        name = self.contacts.name_for(who)
        self.incoming_identity.setText(f"{name} — {who}" if name else who)
        security = (SecurityLevel.SECURE if verified else
                    SecurityLevel.SDES_INTEROP if info.security == SecurityLevel.SDES_INTEROP.label else None)
        self._set_badge(self.incoming_badge, badge(security, verified))
        first = f"Identity verified by ECCSI signature: {verified}" if verified else "Identity NOT verified"
        self.incoming_detail.setText(f"{first}\n{info.codec or '?'} · {info.srtp or '?'} · "
                                     f"key id {info.key_id or '—'}")

    @staticmethod
    def _set_badge(label: QLabel, b: Any) -> None:
        label.setText(b.text)
        label.setProperty("level", b.level)
        label.setStyleSheet(f"color: white; background: {b.colour}; padding: 6px; font-weight: bold;")

    def _on_call_updated(self, st: CallStatus) -> None:
        b = badge(st.security, st.verified_identity, st.peer_assurance)
        self._set_badge(self.badge, b)
        peer = st.verified_identity or st.peer
        name = self.contacts.name_for(peer)
        self.identity.setText((f"{name} — " if name else "") + st.describe_peer())
        keys = st.keys
        self.details.setText(f"{keys.codec if keys else '?'} · {keys.srtp if keys else '?'} · "
                             f"key id {st.key_id or '—'}")
        self.call_state.setText("On hold" if st.held else "Connected")
        self.hold_button.setText("Res&ume" if st.held else "&Hold")
        self._show_group(st)

    def _show_group(self, st: CallStatus) -> None:
        """A group call: group-keyed wording (never ECCSI's "verified"), members heard; no hold or DTMF."""
        if not self.group_panel.show_status(st) or st.group is None:
            return
        self.badge.setText(group_call_title(st.group))
        self.badge.setProperty("level", "group")
        self.badge.setStyleSheet(group_badge_style())
        self.identity.setText(group_peer_text(st.group))
        keys = st.keys
        self.details.setText(f"{keys.codec if keys else '?'} · {keys.srtp if keys else '?'} · one key per sender")
        self.hold_button.setEnabled(False)
        self.keypad_button.setEnabled(False)

    # --- several calls: call waiting, switching, transfer, early media -----------------------------
    def _on_call_waiting(self, info: Incoming | None) -> None:
        if info is None:
            self.waiting_banner.setVisible(False)
            return
        name = self.contacts.name_for(info.verified_identity or info.peer or "")
        self.waiting_text.setText("Call waiting: " + waiting_words(info, name))
        self.waiting_banner.setVisible(True)
        self.raise_()
        QApplication.alert(self)

    def _call_words(self, line: CallLine) -> str:
        st = line.status
        name = self.contacts.name_for(st.verified_identity or st.peer)
        state = "on hold" if line.held else "connected"
        return f"{'▶ ' if line.current else ''}{f'{name} — ' if name else ''}{st.describe_peer()} — {state}"

    def _on_calls_changed(self, lines: tuple[CallLine, ...]) -> None:
        self.calls_list.clear()
        for line in lines:
            self.calls_list.addItem(self._call_words(line))
            self.calls_list.item(self.calls_list.count() - 1).setData(Qt.ItemDataRole.UserRole, line.call_id)
        self.calls_box.setVisible(len(lines) > 1)
        current = next((i for i, line in enumerate(lines) if line.current), -1)
        self.calls_list.setCurrentRow(current)
        self.attended_button.setVisible(self.controller.held_call() is not None and len(lines) > 1)

    def _selected_call(self) -> str | None:
        item = self.calls_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _switch_selected(self) -> None:
        call_id = self._selected_call()
        if call_id is not None:
            self.controller.switch_to(call_id)

    def _hangup_selected(self) -> None:
        call_id = self._selected_call()
        if call_id is not None:
            self.controller.hangup_call(call_id)

    def _on_transfer_status(self, level: str, text: str) -> None:
        self.transfer_text.setText(text)
        self.transfer_text.setProperty("level", level)
        self.transfer_text.setStyleSheet(f"color: {NOTICE_COLOURS.get(level, '#444')}; font-weight: bold;")
        self.transfer_text.setVisible(True)
        if level == "error" or text.startswith("Transferred"):
            self.show_notice(level, text, "call")

    def _on_early_media(self, st: CallStatus) -> None:
        self.call_state.setText("Early media (not yet answered)")
        self._set_badge(self.badge, badge(st.security, st.verified_identity, st.peer_assurance))
        self.identity.setText(st.describe_peer())

    def open_transfer(self) -> None:
        c = self.controller
        if c.call is None:
            return
        dialog = TransferDialog(self, c.call.peer)
        dialog.accepted.connect(lambda: c.transfer(dialog.target.text()))
        dialog.open()
        self.transfer_dialog = dialog

    def _tick(self) -> None:
        c = self.controller
        if c.call is not None and self.stack.currentWidget() is self.pages["call"]:
            st = c.status()
            self.timer.setText(format_duration(st.get("duration_s", 0.0)))
            self.stats.setText(f"loss {100 * st.get('loss', 0.0):.1f}% · jitter {st.get('jitter_ms', 0.0):.1f} ms · "
                               f"tx {st.get('packets_sent', 0)} rx {st.get('packets_received', 0)}")
            if c.mic is not None:
                self.mic_meter.setValue(round(100 * c.mic.fraction()))
            if c.speaker is not None:
                self.spk_meter.setValue(round(100 * c.speaker.fraction()))
            if self.group_panel.isVisible():
                self.group_panel.show_status(c.call.snapshot())   # packet counts between MembersHeard events
        ks = self.keys.property("key_status")
        if ks is not None:
            self.keys.setText(ks.summary())

    # --- actions -----------------------------------------------------------------------------------
    def _dial(self) -> None:
        text = self.dial.text()
        for contact in self.contacts.contacts:  # a contact's name dials its address
            if text.strip() in (contact.name, contact.label()):
                text = contact.uri
        self.controller.dial(text)

    def _dial_contact(self) -> None:
        row = self.contact_list.currentRow()
        if 0 <= row < len(self.contacts.contacts):
            self.dial.setText(self.contacts.contacts[row].uri)
            self._dial()

    def _dial_group(self, uri: str) -> None:
        self.dial.setText(uri)
        self._dial()

    def _dial_recent(self, row: int) -> None:
        item = self.recent.item(row, 2)
        if item is not None:
            self.dial.setText(item.text())
            self._dial()

    def _mute(self) -> None:
        muted = self.controller.toggle_mute()
        self.mute_button.setChecked(muted)
        self.mute_button.setText("Un&mute" if muted else "&Mute")

    def _shortcut_mute(self) -> None:
        if self.controller.call is not None:
            self._mute()

    def _toggle_keypad(self) -> None:
        if self.controller.call is not None:
            self.keypad.setVisible(not self.keypad.isVisible())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # digits typed during a call are DTMF
        text = event.text()
        if self.controller.call is not None and text and text in KEYPAD and \
                self.stack.currentWidget() is self.pages["call"]:
            self.controller.dtmf(text)
            return
        super().keyPressEvent(event)

    def _add_contact(self) -> None:
        self._contact_dialog(None)

    def _edit_contact(self) -> None:
        row = self.contact_list.currentRow()
        if 0 <= row < len(self.contacts.contacts):
            self._contact_dialog(row)

    def _remove_contact(self) -> None:
        row = self.contact_list.currentRow()
        if 0 <= row < len(self.contacts.contacts):
            self.contacts.remove(row)
            self.refresh_contacts()

    def _contact_dialog(self, row: int | None) -> None:
        existing = self.contacts.contacts[row] if row is not None else None
        dialog = ContactDialog(self, existing.name if existing else "",
                               existing.uri if existing else self.dial.text())

        def done() -> None:
            try:
                if row is None:
                    self.contacts.add(dialog.name.text(), dialog.uri.text())
                else:
                    self.contacts.update(row, dialog.name.text(), dialog.uri.text())
            except (GuiDataError, OSError) as exc:
                self.show_notice("error", str(exc))
            self.refresh_contacts()

        dialog.accepted.connect(done)
        dialog.open()
        self.contact_dialog = dialog

    def open_settings(self) -> None:
        dialog = SettingsDialog(self)
        dialog.open()
        self.settings_dialog = dialog

    # --- lists -------------------------------------------------------------------------------------
    def refresh_contacts(self) -> None:
        self.contact_list.clear()
        for contact in self.contacts.contacts:
            self.contact_list.addItem(contact.label())
        self.refresh_completion()

    def refresh_completion(self) -> None:
        words: list[str] = []
        for w in [c.uri for c in self.contacts.contacts] + [c.name for c in self.contacts.contacts] + \
                self.controller.history.recent_peers():
            if w and w not in words:
                words.append(w)
        self.completion.setStringList(words)

    def refresh_recent(self) -> None:
        records: list[CallRecord] = list(reversed(self.controller.history.records))
        self.recent.setRowCount(len(records))
        for i, r in enumerate(records):
            try:
                when = r.when.astimezone().strftime("%d %b %H:%M")
            except ValueError:
                when = r.started
            cells = (when, "→" if r.direction == "outgoing" else "←", r.peer, r.verified_identity or "—",
                     r.security or "—", format_duration(r.duration_s) if r.outcome == "answered" else "",
                     r.outcome + (f": {r.detail}" if r.detail and r.outcome != "answered" else ""))
            for j, text in enumerate(cells):
                self.recent.setItem(i, j, QTableWidgetItem(text))
        self.refresh_completion()

    # --- lifetime ----------------------------------------------------------------------------------
    async def run(self, passphrase_prompt: Callable[[], asyncio.Future[str | None]] | None = None) -> None:
        """Start the phone (asking for the keystore passphrase if needed) and live until the window closes.

        Closing the window (Phone → Quit, Ctrl+Q, the window's close button) hangs up, un-REGISTERs and
        returns; closing it while the phone is still starting abandons the start and stops what it began."""
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        starting = loop.create_task(self.start(passphrase_prompt))
        await asyncio.wait((starting, self._closed), return_when=asyncio.FIRST_COMPLETED)
        await self._closed
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await self.controller.stop()  # a phone the abandoned start had already opened

    async def start(self, passphrase_prompt: Callable[[], asyncio.Future[str | None]] | None = None) -> bool:
        c = self.controller
        passphrase = None
        for _attempt in range(3):
            if c.needs_passphrase():
                passphrase = await (passphrase_prompt or self.ask_passphrase)()
                self.activateWindow()  # focus back from the dialog (no window manager does it under Xvfb)
                self.dial.setFocus()
                if passphrase is None:
                    self.show_notice("error", "keystore locked: no passphrase given — secure calls unavailable",
                                     "start")
                    return False
            ok = await c.start(passphrase)
            if c.settings is not None:
                self.clear_notice("start")  # the keystore opened: an earlier "wrong passphrase" is no longer true
            if ok or passphrase is None or "passphrase" not in self.notice.text().lower():
                return ok
            c._passphrase = None  # wrong passphrase: ask again
        return False

    def ask_passphrase(self) -> asyncio.Future[str | None]:
        """A non-blocking password dialog; resolves to the text or None (cancelled)."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        dialog = QDialog(self)
        dialog.setObjectName("passphrase_dialog")
        dialog.setWindowTitle("Unlock keystore")
        form = QFormLayout(dialog)
        form.addRow(_label(f"Passphrase for the keystore of {self.controller.account.uri}"))
        edit = QLineEdit()
        edit.setObjectName("passphrase")
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("&Passphrase", edit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        def finished(result: int) -> None:
            if not future.done():
                future.set_result(edit.text() if result == QDialog.DialogCode.Accepted else None)

        dialog.finished.connect(finished)
        dialog.open()
        self.passphrase_dialog = dialog
        return future

    def closeEvent(self, event: QCloseEvent) -> None:
        c = self.controller  # closing hangs up any call (stop() closes the phone: BYE, then un-REGISTER)
        event.accept()
        self.tick.stop()
        for dialog in ("passphrase_dialog", "settings_dialog", "contact_dialog", "transfer_dialog"):
            widget = getattr(self, dialog, None)
            if widget is not None and widget.isVisible():
                widget.reject()

        async def finish() -> None:
            try:
                await c.stop()
            finally:
                if self._closed is not None and not self._closed.done():
                    self._closed.set_result(None)

        c.spawn(finish())
