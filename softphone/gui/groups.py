"""Group calls in the window: the Groups tab (one row per group the keystore holds keys for) and the
group part of the call panel (who is heard, packets we cannot open).

The words follow ``softphone groups list``: a group is *keyed* while one of its GMKs is active (the one we
send with), *pending* until its first GMK's activation, *expired* or *revoked* after. A group call names
each member heard by the GUK-ID in its packets' MKI — a consistency check, not authentication: every
member holds the GMK — so it is shown as "group-keyed", never as verified.

The row texts and call-panel texts are pure functions (unit-tested without a display); the two widgets
only lay them out. No key material is ever shown: GMK-IDs and GUK-IDs are identifiers, not keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from softphone.calls.events import CallStatus, GroupStatus
from softphone.keys.groups import GroupKey, NoActiveGroupKey, active_key

#: how often the tab re-reads the keystore besides the pushes (a pending key becomes active, one expires)
REFRESH_MS = 30_000
GROUP_COLOUR = "#1f4e79"
NO_GROUPS = ("No groups yet. Group keys arrive from your group management server (GMS) while the app "
             "is running; a group appears here once its key is verified.")


# --- words (pure) -------------------------------------------------------------------------------------
def _when(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d %b %Y %H:%M UTC")


@dataclass(frozen=True)
class GroupRow:
    """One group as the tab shows it: ``state`` is "keyed", "pending", "expired" or "revoked"."""

    uri: str
    state: str
    text: str          # the key state in words
    members: int       # members listed with the key we would use (0: unknown)
    gms: str

    @property
    def callable(self) -> bool:
        return self.state == "keyed"


def group_rows(keys: Iterable[GroupKey], now: float) -> list[GroupRow]:
    """One :class:`GroupRow` per group URI among ``keys`` (:meth:`Keystore.group_keys`), sorted by URI."""
    held = list(keys)
    rows = []
    for uri in sorted({k.group_uri for k in held}):
        mine = [k for k in held if k.group_uri == uri]
        try:
            active: GroupKey | None = active_key(mine, uri, now)
        except NoActiveGroupKey:
            active = None
        pending = sorted((k for k in mine if not k.revoked and k.activation > now
                          and (k.expiry == 0 or k.expiry > now)), key=lambda k: k.activation)
        if active is not None:
            until = f"valid until {_when(active.expiry)}" if active.expiry else "valid, no expiry"
            text, state, shown = f"keyed — GMK {active.gmk_id:08x} {until}", "keyed", active
            if pending:
                text += f"; next key from {_when(pending[0].activation)}"
        elif pending:
            shown = pending[0]
            text, state = f"key pending from {_when(shown.activation)} (sent by {shown.gms_uri})", "pending"
        elif all(k.revoked for k in mine):
            shown, text, state = mine[-1], "revoked — this phone may no longer take part", "revoked"
        else:
            shown = max(mine, key=lambda k: k.expiry)
            text, state = f"expired {_when(shown.expiry)} — waiting for a new key from the GMS", "expired"
        rows.append(GroupRow(uri, state, text, len(shown.members), shown.gms_uri))
    return rows


def group_call_title(st: GroupStatus) -> str:
    """The call panel's badge for a group call (instead of the ECCSI wording of a 1:1 call)."""
    return f"Group call — group-keyed (GMK {st.gmk_id})"


def member_lines(st: GroupStatus) -> list[str]:
    """Who is heard, one line each: ``sip:bob@x — group-keyed, 250 packets``."""
    out = []
    for m in st.members:
        if not m.packets:
            continue
        who = m.member or f"unlisted sender (key {m.mki})"
        line = f"{who} — {m.assurance}, {m.packets} packet{'s' if m.packets != 1 else ''}"
        if m.auth_failures:
            line += f", {m.auth_failures} failed the group key check"
        out.append(line)
    return out


def unknown_key_text(st: GroupStatus) -> str:
    """Packets naming a GMK we do not hold, in words ("" when none)."""
    n = st.unknown_mki
    if n <= 0:
        return ""
    return f"{n} packet{'s' if n != 1 else ''} under a group key this phone does not hold"


def group_peer_text(st: GroupStatus) -> str:
    return (f"{st.group} — every member holds the group key; who is heard is named by their key, "
            "not proven by a signature")


# --- widgets ------------------------------------------------------------------------------------------
def _named(widget: QWidget, name: str) -> None:
    widget.setObjectName(name)
    widget.setAccessibleName(name.replace("_", " "))


class GroupsView(QWidget):
    """The Groups tab: a table of groups (URI, key state, members) and a Call button.

    ``keys`` reads the keystore's GMKs (empty before the phone started); :meth:`refresh` re-reads it —
    the window calls it when a group key arrives (``MessageCenter.group_key``) and after registration,
    and a timer every :data:`REFRESH_MS` catches keys becoming active or expiring. ``call_requested``
    carries the group URI to dial."""

    call_requested = Signal(str)

    def __init__(self, keys: Callable[[], list[GroupKey]], now: Callable[[], float] | None = None) -> None:
        super().__init__()
        _named(self, "groups")
        self._keys = keys
        self._now = now or (lambda: datetime.now(UTC).timestamp())
        self.rows: list[GroupRow] = []
        v = QVBoxLayout(self)
        self.empty = QLabel(NO_GROUPS)
        _named(self.empty, "groups_empty")
        self.empty.setWordWrap(True)
        v.addWidget(self.empty)
        self.table = QTableWidget(0, 3)
        _named(self.table, "group_list")
        self.table.setHorizontalHeaderLabels(["Group", "Key", "Members"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.cellActivated.connect(lambda row, _col: self._call(row))
        self.table.itemSelectionChanged.connect(self._selection)
        v.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.call_button = QPushButton("Call grou&p")
        _named(self.call_button, "group_call_button")
        self.call_button.clicked.connect(lambda _checked=False: self._call(self.table.currentRow()))
        row.addWidget(self.call_button)
        row.addStretch(1)
        v.addLayout(row)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        self.rows = group_rows(self._keys(), self._now())
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            for j, text in enumerate((r.uri, r.text, str(r.members) if r.members else "—")):
                item = QTableWidgetItem(text)
                item.setToolTip(f"keys from {r.gms}" if j == 1 else text)
                self.table.setItem(i, j, item)
        self.empty.setVisible(not self.rows)
        self.table.setVisible(bool(self.rows))
        index = next((i for i, r in enumerate(self.rows) if r.uri == selected), 0 if self.rows else -1)
        if index >= 0:
            self.table.selectRow(index)
        self._selection()

    def selected(self) -> str | None:
        row = self.table.currentRow()
        return self.rows[row].uri if 0 <= row < len(self.rows) else None

    def _selection(self) -> None:
        row = self.table.currentRow()
        self.call_button.setEnabled(0 <= row < len(self.rows) and self.rows[row].callable)

    def _call(self, row: int) -> None:
        if 0 <= row < len(self.rows) and self.rows[row].callable:
            self.call_requested.emit(self.rows[row].uri)


class GroupCallPanel(QWidget):
    """The call panel's group part: members heard (group-keyed) and packets under keys we do not hold.
    Hidden outside group calls."""

    def __init__(self) -> None:
        super().__init__()
        _named(self, "group_panel")
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Members heard")
        title.setStyleSheet("font-weight: bold;")
        v.addWidget(title)
        self.members = QListWidget()
        _named(self.members, "members_heard")
        self.members.setMaximumHeight(110)
        v.addWidget(self.members)
        self.nobody = QLabel("nobody heard yet")
        _named(self.nobody, "members_none")
        v.addWidget(self.nobody)
        self.unknown = QLabel("")
        _named(self.unknown, "unknown_keys")
        self.unknown.setWordWrap(True)
        self.unknown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.unknown.setStyleSheet("color: #8a5a00;")
        v.addWidget(self.unknown)
        self.setVisible(False)

    def show_status(self, st: CallStatus) -> bool:
        """Show ``st``'s group part; False (and hidden) when it is not a group call."""
        group = st.group
        if group is None:
            self.clear()
            return False
        lines = member_lines(group)
        if [self.members.item(i).text() for i in range(self.members.count())] != lines:
            self.members.clear()
            self.members.addItems(lines)
        self.nobody.setVisible(not lines)
        text = unknown_key_text(group)
        self.unknown.setText(text)
        self.unknown.setVisible(bool(text))
        self.setVisible(True)
        return True

    def clear(self) -> None:
        self.members.clear()
        self.unknown.setText("")
        self.setVisible(False)

    def member_texts(self) -> list[str]:
        return [self.members.item(i).text() for i in range(self.members.count())]


def group_badge_style() -> str:
    return f"color: white; background: {GROUP_COLOUR}; padding: 6px; font-weight: bold;"
