"""SIP messages grouped into calls (by Call-ID), numbered as a ladder, with offer/answer pairs found.

Every message gets a capture-wide number (``#1`` …) the findings refer to. An INVITE transaction
(Call-ID, CSeq, From) has an offer in the INVITE, else in its 2xx (answered in the ACK); the answer is the
first 18x/2xx with SDP, else the ACK.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from softphone.analyze.pcap import Addr
from softphone.analyze.reassembly import SipEvent
from softphone.sip.errors import ParseError
from softphone.sip.message import Message, Request, Response
from softphone.sip.sdp import SessionDescription


@dataclass
class LadderEntry:
    """One message of the ladder."""

    number: int
    time: float
    transport: str
    src: Addr
    dst: Addr
    message: Message
    sdp: SessionDescription | None = None
    sdp_error: str | None = None

    @property
    def label(self) -> str:
        m = self.message
        return m.method if isinstance(m, Request) else f"{m.status} {m.reason}"  # type: ignore[attr-defined]

    @property
    def cseq(self) -> tuple[int, str]:
        try:
            return self.message.cseq
        except ParseError:
            return (0, "")

    @property
    def is_request(self) -> bool:
        return isinstance(self.message, Request)

    @property
    def sender(self) -> str:
        """The party that sent this message: a request is sent by its From, a response by its To."""
        return header_uri(self.message.headers.get("From" if self.is_request else "To"))

    @property
    def receiver(self) -> str:
        return header_uri(self.message.headers.get("To" if self.is_request else "From"))

    @property
    def status(self) -> int | None:
        return self.message.status if isinstance(self.message, Response) else None


@dataclass
class OfferAnswer:
    """One SDP exchange inside an INVITE transaction; ``answer`` may be missing."""

    offer: LadderEntry
    answer: LadderEntry | None


@dataclass
class Dialog:
    """The messages of one Call-ID in capture order."""

    call_id: str
    from_uri: str
    to_uri: str
    entries: list[LadderEntry] = field(default_factory=list)

    def exchanges(self) -> list[OfferAnswer]:
        out: list[OfferAnswer] = []
        # CSeq numbers are per sender: the caller's and the callee's requests are told apart by From
        transactions: dict[tuple[int, str], list[LadderEntry]] = {}
        for e in self.entries:
            num, method = e.cseq
            if method in ("INVITE", "ACK"):
                key = (num, (e.message.headers.get("From") or "").strip())
                transactions.setdefault(key, []).append(e)
        for _num, msgs in sorted(transactions.items(), key=lambda kv: kv[1][0].time):
            invite = next((m for m in msgs if m.label == "INVITE"), None)
            if invite is None:
                continue
            replies = [m for m in msgs if m.status is not None and 100 < m.status < 300 and m.sdp is not None]
            ack = next((m for m in msgs if m.label == "ACK" and m.sdp is not None), None)
            if invite.sdp is not None:
                out.append(OfferAnswer(invite, replies[0] if replies else None))
            elif replies:
                out.append(OfferAnswer(replies[0], ack))
        return out


def header_uri(value: str | None) -> str:
    if not value:
        return ""
    inner = value.split("<", 1)[1].split(">", 1)[0] if "<" in value else value.split(";", 1)[0]
    return inner.strip()


def claimed_sender(message: Message) -> str | None:
    """P-Asserted-Identity, else From: the URI the signalling presents as the sender."""
    value = message.headers.get("P-Asserted-Identity") or message.headers.get("From")
    return header_uri(value) or None


def build_dialogs(events: list[SipEvent]) -> list[Dialog]:
    """The calls in ``events``, in order of their first message."""
    dialogs: dict[str, Dialog] = {}
    for n, ev in enumerate(events, 1):
        msg = ev.message
        entry = LadderEntry(n, ev.time, ev.transport, ev.src, ev.dst, msg)
        if msg.body and msg.content_type in ("application/sdp", ""):
            try:
                entry.sdp = SessionDescription.parse(msg.body)
            except ParseError as exc:
                entry.sdp_error = str(exc)
        call_id = msg.call_id
        dlg = dialogs.get(call_id)
        if dlg is None:
            dlg = Dialog(call_id, header_uri(msg.headers.get("From")), header_uri(msg.headers.get("To")))
            dialogs[call_id] = dlg
        dlg.entries.append(entry)
    return list(dialogs.values())
