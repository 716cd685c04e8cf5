"""ICE attributes in SDP (RFC 8839), pure code: ``a=ice-ufrag``, ``a=ice-pwd``, ``a=ice-options``,
``a=candidate``, ``a=end-of-candidates``, ``a=ice-lite`` and ``a=rtcp-mux`` (RFC 5761) on one media section.

They sit beside ``a=key-mgmt`` (the MIKEY-SAKKE I_MESSAGE) in the same SDP: ICE only chooses where the
SRTP packets go, the keys come from MIKEY as without ICE. The agent itself (aioice) is in
:mod:`softphone.media.ice`; this module only reads and writes the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParseError
from .grammar import is_ascii_digits
from .sdp import Media, SessionDescription

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
MAX_CANDIDATES = 32  # per media section; more is a hostile or broken peer
_ICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")


@dataclass(frozen=True)
class Candidate:
    """One ``a=candidate`` (RFC 8839 §5.1); ``transport`` lower case ("udp"/"tcp")."""

    foundation: str
    component: int
    transport: str
    priority: int
    host: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    tcptype: str | None = None

    def to_sdp(self) -> str:
        parts = [self.foundation, str(self.component), self.transport, str(self.priority), self.host,
                 str(self.port), "typ", self.type]
        if self.related_address is not None and self.related_port is not None:
            parts += ["raddr", self.related_address, "rport", str(self.related_port)]
        if self.tcptype is not None:
            parts += ["tcptype", self.tcptype]
        return " ".join(parts)

    @classmethod
    def parse(cls, value: str) -> Candidate:
        """Parse the value of ``a=candidate``; unknown extension pairs are ignored (RFC 8839 §5.1)."""
        bits = value.split()
        if len(bits) < 8 or bits[6] != "typ":
            raise ParseError("malformed ICE candidate")
        foundation, component, transport, priority, host, port, _, typ = bits[:8]
        if not (1 <= len(foundation) <= 32 and set(foundation) <= _ICE_CHARS):
            raise ParseError("malformed ICE candidate foundation")
        for name, num, hi in (("component", component, 256), ("priority", priority, 2**31 - 1),
                              ("port", port, 65535)):
            if not is_ascii_digits(num) or len(num) > 10 or not 0 <= int(num) <= hi:
                raise ParseError(f"malformed ICE candidate {name}")
        if int(component) < 1:
            raise ParseError("malformed ICE candidate component")
        if typ not in CANDIDATE_TYPES:
            raise ParseError("unknown ICE candidate type")
        if not host or len(host) > 255:
            raise ParseError("malformed ICE candidate address")
        rest = bits[8:]
        if len(rest) % 2:
            raise ParseError("malformed ICE candidate extension")
        ext = dict(zip(rest[::2], rest[1::2], strict=True))
        rport = ext.get("rport")
        if rport is not None and not (is_ascii_digits(rport) and len(rport) <= 5 and int(rport) <= 65535):
            raise ParseError("malformed ICE candidate rport")
        return cls(foundation, int(component), transport.lower(), int(priority), host, int(port), typ,
                   ext.get("raddr"), int(rport) if rport is not None else None, ext.get("tcptype"))


@dataclass(frozen=True)
class IceDescription:
    """The ICE view of one media section (session-level ufrag/pwd/options/lite are inherited, §5.4)."""

    ufrag: str
    pwd: str
    candidates: tuple[Candidate, ...] = ()
    options: tuple[str, ...] = ()
    lite: bool = False
    end_of_candidates: bool = False
    rtcp_mux: bool = False

    def __repr__(self) -> str:  # the password authenticates connectivity checks: keep it out of logs
        return (f"IceDescription(ufrag={self.ufrag!r}, candidates={len(self.candidates)}, "
                f"lite={self.lite}, rtcp_mux={self.rtcp_mux})")


def _check_token(name: str, value: str, lo: int) -> str:
    if not (lo <= len(value) <= 256 and set(value) <= _ICE_CHARS):
        raise ParseError(f"malformed {name}")
    return value


def add_ice(media: Media, ice: IceDescription) -> None:
    """Write ``ice`` onto ``media`` (media level, replacing any ICE attributes already there)."""
    attrs = media.attributes
    for name in ("ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "candidate", "end-of-candidates", "rtcp-mux"):
        attrs.remove(name)
    attrs.add("ice-ufrag", ice.ufrag)
    attrs.add("ice-pwd", ice.pwd)
    if ice.options:
        attrs.add("ice-options", " ".join(ice.options))
    if ice.lite:
        attrs.add("ice-lite")
    for cand in ice.candidates:
        attrs.add("candidate", cand.to_sdp())
    if ice.end_of_candidates:
        attrs.add("end-of-candidates")
    if ice.rtcp_mux:
        attrs.add("rtcp-mux")


def read_ice(sdp: SessionDescription, media: Media) -> IceDescription | None:
    """The ICE description of ``media``, or None when the offer/answer carries no ICE (no ufrag/pwd).

    ParseError when ICE is present but malformed (the call layer answers 488)."""
    def get(name: str) -> str | None:
        value = media.attributes.get(name)
        return value if value is not None else sdp.attributes.get(name)

    ufrag, pwd = get("ice-ufrag"), get("ice-pwd")
    if ufrag is None and pwd is None:
        return None
    if ufrag is None or pwd is None:
        raise ParseError("ICE needs both ice-ufrag and ice-pwd")
    _check_token("ice-ufrag", ufrag, 4)
    _check_token("ice-pwd", pwd, 22)
    values = media.attributes.get_all("candidate")
    if len(values) > MAX_CANDIDATES:
        raise ParseError("too many ICE candidates")
    candidates = tuple(Candidate.parse(v) for v in values)
    options = tuple((get("ice-options") or "").split())
    lite = media.attributes.has("ice-lite") or sdp.attributes.has("ice-lite")
    return IceDescription(ufrag, pwd, candidates, options, lite,
                          media.attributes.has("end-of-candidates") or sdp.attributes.has("end-of-candidates"),
                          media.attributes.has("rtcp-mux"))


def default_candidate(ice: IceDescription, component: int = 1) -> Candidate | None:
    """The candidate whose address should go in ``c=``/``m=`` (RFC 8839 §4.2.1.1: relay, else srflx, else
    host; highest priority within a type)."""
    rank = {"relay": 0, "srflx": 1, "prflx": 2, "host": 3}
    ours = [c for c in ice.candidates if c.component == component and c.transport == "udp"]
    if not ours:
        return None
    return min(ours, key=lambda c: (rank[c.type], -c.priority))
