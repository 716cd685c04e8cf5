"""The Messages and Voicemail tabs: conversations with unread badges, a thread with sent/delivered/read
ticks, compose and send; voice messages with Play. Widgets carry object names for tests (``conversations``,
``thread``, ``thread_peer``, ``message_to``, ``compose``, ``send_message``, ``voicemails``,
``play_voicemail``, ``refusals``)."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from softphone.gui.controller import PhoneController
from softphone.gui.messages import describe
from softphone.gui.model import GuiDataError, normalise_uri
from softphone.media.audio import AudioError
from softphone.messaging import voice

PEER_ROLE = Qt.ItemDataRole.UserRole


def _named(widget: QWidget, name: str) -> QWidget:
    widget.setObjectName(name)
    widget.setAccessibleName(name.replace("_", " "))
    return widget


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%d %b %H:%M")


class ConversationsView(QWidget):
    """Conversations on the left (``peer  ● N unread``), the selected thread and compose box on the right."""

    def __init__(self, controller: PhoneController) -> None:
        super().__init__()
        self.controller = controller
        self.center = controller.messages
        self.conversations = QListWidget()
        _named(self.conversations, "conversations")
        self.messages_thread = QListWidget()
        _named(self.messages_thread, "thread")
        self.messages_thread.setWordWrap(True)
        self.thread_peer = QLabel("Choose a conversation, or type an address below to start one")
        _named(self.thread_peer, "thread_peer")
        self.thread_peer.setWordWrap(True)
        self.to = QLineEdit()
        _named(self.to, "message_to")
        self.to.setPlaceholderText("To: name@domain or sip: URI")
        self.compose = QLineEdit()
        _named(self.compose, "compose")
        self.compose.setPlaceholderText("Write a secure message… (Enter sends)")
        self.send = QPushButton("Se&nd")
        _named(self.send, "send_message")
        self.refusals = QLabel("")
        _named(self.refusals, "refusals")
        self.refusals.setWordWrap(True)
        self.refusals.setStyleSheet("color: #b3261e;")
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.thread_peer)
        rv.addWidget(self.messages_thread, 1)
        rv.addWidget(self.to)
        row = QHBoxLayout()
        row.addWidget(self.compose, 1)
        row.addWidget(self.send)
        rv.addLayout(row)
        split = QSplitter()
        split.addWidget(self.conversations)
        split.addWidget(right)
        split.setStretchFactor(1, 2)
        v = QVBoxLayout(self)
        v.addWidget(split, 1)
        v.addWidget(self.refusals)
        self.conversations.currentItemChanged.connect(lambda cur, _prev: self._select(cur))
        self.send.clicked.connect(self._send)
        self.compose.returnPressed.connect(self._send)
        self.center.changed.connect(self.refresh)

    @property
    def peer(self) -> str | None:
        item = self.conversations.currentItem()
        return item.data(PEER_ROLE) if item is not None else None

    def unread(self) -> int:
        return sum(c.unread for c in self.center.conversations())

    def refresh(self, changed: str = "") -> None:
        current = self.peer
        self.conversations.blockSignals(True)
        self.conversations.clear()
        for conv in self.center.conversations():
            badge = f"   ● {conv.unread} unread" if conv.unread else ""
            item = QListWidgetItem(f"{conv.peer}{badge}\n{_when(conv.time)}  {conv.last[:40]}")
            item.setData(PEER_ROLE, conv.peer)
            self.conversations.addItem(item)
            if conv.peer == current:
                self.conversations.setCurrentItem(item)
        self.conversations.blockSignals(False)
        if current is not None:
            self._show_thread(current)
            if changed == current and self.isVisible():   # a new message in the open thread is read at once
                self.controller.spawn(self.center.mark_read(current))
        self.refusals.setText(self.center.refusal_summary())

    def _select(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        peer = item.data(PEER_ROLE)
        self.to.setText(peer)
        self._show_thread(peer)
        self.controller.spawn(self.center.mark_read(peer))

    def _show_thread(self, peer: str) -> None:
        self.thread_peer.setText(f"{peer} — messages from this address are shown only when verified by its ECCSI "
                                 "signature; yours are encrypted so that only it can read them")
        self.messages_thread.clear()
        for m in self.center.thread_of(peer):
            self.messages_thread.addItem(f"{_when(m.time)}  {describe(m)}")
        self.messages_thread.scrollToBottom()

    def _send(self) -> None:
        text = self.compose.text().strip()
        if not text:
            return
        try:
            peer = normalise_uri(self.to.text().strip() or (self.peer or ""), self.controller.domain)
        except GuiDataError as exc:
            self.controller.notice.emit("error", f"Message not sent: {exc}", "")
            return
        self.compose.clear()

        async def go() -> None:
            msg = await self.center.send_text(peer, text)
            if msg is None:
                self.compose.setText(text)   # not sent: keep what was typed
                return
            self.refresh(peer)
            for i in range(self.conversations.count()):
                if self.conversations.item(i).data(PEER_ROLE) == peer:
                    self.conversations.setCurrentRow(i)
        self.controller.spawn(go())


class VoicemailView(QWidget):
    """Voice messages received and sent, newest first; Play sends one to the speaker."""

    def __init__(self, controller: PhoneController) -> None:
        super().__init__()
        self.controller = controller
        self.center = controller.messages
        self.list = QListWidget()
        _named(self.list, "voicemails")
        self.play = QPushButton("&Play")
        _named(self.play, "play_voicemail")
        self.state = QLabel("")
        _named(self.state, "voicemail_state")
        v = QVBoxLayout(self)
        v.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.addWidget(self.play)
        row.addWidget(self.state, 1)
        v.addLayout(row)
        self.play.clicked.connect(self._play)
        self.list.itemActivated.connect(lambda _item: self._play())
        self.center.changed.connect(lambda _peer: self.refresh())

    def unheard(self) -> int:
        return sum(1 for m in self.center.voicemails() if m.direction == "in" and m.status == "unread")

    def refresh(self) -> None:
        current = self.list.currentItem().data(PEER_ROLE) if self.list.currentItem() else None
        self.list.clear()
        for m in reversed(self.center.voicemails()):
            arrow = "← from" if m.direction == "in" else "→ to"
            new = "   ● new" if m.direction == "in" and m.status == "unread" else ""
            length = m.text.removeprefix(voice.LABEL_PREFIX + ", ")
            item = QListWidgetItem(f"{arrow} {m.peer}  {_when(m.time)}  {length}{new}")
            item.setData(PEER_ROLE, m.id)
            self.list.addItem(item)
            if m.id == current:
                self.list.setCurrentItem(item)

    def _play(self) -> None:
        item = self.list.currentItem() or (self.list.item(0) if self.list.count() else None)
        if item is None:
            self.state.setText("no voice messages")
            return
        message_id = item.data(PEER_ROLE)

        async def go() -> None:
            try:
                source, sink = self.controller.audio_factory()
            except (AudioError, OSError) as exc:   # an audio device problem: in words, the window stays
                self.controller.notice.emit("error", f"audio: {exc}", "")
                return
            source.close()
            self.play.setEnabled(False)
            self.state.setText("playing…")
            try:
                seconds = await self.center.play(message_id, sink)
            finally:
                self.play.setEnabled(True)
            self.state.setText(f"played {seconds:.1f} s" if seconds else "")
        self.controller.spawn(go())
