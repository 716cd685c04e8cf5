"""Dialogs (RFC 3261 §12): identity, route set, CSeq spaces and in-dialog request construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ParseError
from .message import Request, Response
from .uri import NameAddr, SipUri


@dataclass
class Dialog:
    """State shared by both ends of a call once a To tag is known."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str          # our From/To name-addr without tag
    remote_uri: str
    remote_target: SipUri
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 1
    remote_seq: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, invite: Request, resp: Response) -> Dialog:
        """The dialog a UAC creates from a 2xx/1xx with To tag (§12.1.2): route set reversed."""
        contact = resp.contact
        if contact is None:
            raise ParseError("dialog-creating response lacks Contact")
        frm, to = invite.from_, resp.to
        if not to.tag or not frm.tag:
            raise ParseError("dialog-creating response lacks a To tag")
        return cls(invite.call_id, frm.tag, to.tag, _untagged(frm), _untagged(to), contact.uri,
                   list(reversed(resp.headers.get_all("Record-Route"))), invite.cseq[0], None)

    @classmethod
    def from_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """The dialog a UAS creates when answering (§12.1.1): route set in Record-Route order."""
        contact = invite.contact
        if contact is None:
            raise ParseError("INVITE lacks Contact")
        frm = invite.from_
        if not frm.tag:
            raise ParseError("INVITE lacks a From tag")
        return cls(invite.call_id, local_tag, frm.tag, _untagged(invite.to), _untagged(frm),
                   contact.uri, list(invite.headers.get_all("Record-Route")), 0, invite.cseq[0])

    def new_request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                    cseq: int | None = None) -> Request:
        """An in-dialog request (§12.2.1.1) without Via; ACK reuses the INVITE's CSeq number."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        req = Request(method=method, uri=self.remote_target)
        for route in self.route_set:
            req.headers.add("Route", route)
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        req.headers.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{cseq} {method}")
        if content_type and body:
            req.headers.add("Content-Type", content_type)
        req.body = body
        return req

    def next_hop(self) -> SipUri:
        """Where in-dialog requests go: the first loose route, else the remote target (§12.2.1.1)."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return self.remote_target

    def check_remote_cseq(self, req: Request) -> bool:
        """False for an out-of-order in-dialog request (§12.2.2 → 500)."""
        num = req.cseq[0]
        if self.remote_seq is not None and num <= self.remote_seq and req.method != "ACK":
            return False
        if req.method != "ACK":
            self.remote_seq = num
        return True


def _untagged(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return str(NameAddr(addr.uri, addr.display, params))
