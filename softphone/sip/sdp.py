"""A small sans-IO SDP model (RFC 4566) with offer/answer helpers (RFC 3264).

The call layer fills it: session- and media-level attributes (``a=key-mgmt``, ``a=crypto``,
``a=rtpmap``/``a=fmtp``, direction attributes) are kept in order as (name, value) pairs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import ascii_int, is_ascii_digits

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
MAX_SDP_SIZE = 32768


@dataclass
class Attributes:
    """Ordered ``a=`` lines; ``value`` is None for property attributes like ``a=sendonly``."""

    items: list[tuple[str, str | None]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        return next((v for n, v in self.items if n == name), None)

    def get_all(self, name: str) -> list[str]:
        return [v or "" for n, v in self.items if n == name]

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.items)

    def add(self, name: str, value: str | None = None) -> None:
        self.items.append((name, value))

    def remove(self, name: str) -> None:
        self.items = [(n, v) for n, v in self.items if n != name]

    @property
    def direction(self) -> str | None:
        return next((n for n, _ in self.items if n in DIRECTIONS), None)

    def set_direction(self, direction: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown SDP direction {direction!r}")
        self.items = [(n, v) for n, v in self.items if n not in DIRECTIONS] + [(direction, None)]

    def lines(self) -> list[str]:
        return [f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.items]


@dataclass
class Media:
    """One ``m=`` section: media, port, protocol, formats, optional ``c=``, ``b=`` and attributes."""

    media: str = "audio"
    port: int = 0
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    connection: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: Attributes = field(default_factory=Attributes)

    def rtpmap(self) -> dict[str, str]:
        """Payload type → ``encoding/clock[/channels]`` from ``a=rtpmap``."""
        out: dict[str, str] = {}
        for value in self.attributes.get_all("rtpmap"):
            pt, _, enc = value.partition(" ")
            out[pt] = enc.strip()
        return out

    def fmtp(self, pt: str) -> str | None:
        for value in self.attributes.get_all("fmtp"):
            fpt, _, params = value.partition(" ")
            if fpt == pt:
                return params.strip()
        return None

    @property
    def direction(self) -> str:
        return self.attributes.direction or "sendrecv"


@dataclass
class SessionDescription:
    """An SDP session: ``v/o/s/c/t`` lines, session attributes and media sections."""

    origin_user: str = "-"
    session_id: int = 0
    session_version: int = 0
    address: str = "127.0.0.1"
    name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    bandwidths: list[str] = field(default_factory=list)
    attributes: Attributes = field(default_factory=Attributes)
    media: list[Media] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # i=, u=, e=, p=, z= ... kept verbatim

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; ParseError on grammar errors (RFC 4566 §5)."""
        if isinstance(data, bytes):
            if len(data) > MAX_SDP_SIZE:
                raise ParseError("SDP body too large")
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ParseError("SDP is not UTF-8") from None
        sdp = cls()
        seen_v = seen_o = False
        current: Media | None = None
        for raw in data.replace("\r\n", "\n").split("\n"):
            line = raw.rstrip("\r")
            if not line:
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise ParseError("malformed SDP line")
            kind, value = line[0], line[2:]
            if not seen_v:
                if kind != "v" or value.strip() != "0":
                    raise ParseError("SDP must start with v=0")
                seen_v = True
                continue
            if kind == "o":
                parts = _fields(value)
                if len(parts) != 6 or not is_ascii_digits(parts[1]) or not is_ascii_digits(parts[2]):
                    raise ParseError("bad SDP o= line")
                sdp.origin_user = parts[0]
                sdp.session_id = ascii_int(parts[1], "SDP o= session id", max_digits=20)
                sdp.session_version = ascii_int(parts[2], "SDP o= version", max_digits=20)
                sdp.address = parts[5]
                seen_o = True
            elif kind == "s":
                sdp.name = value
            elif kind == "t":
                sdp.timing = value
            elif kind == "m":
                parts = _fields(value)
                if len(parts) < 4 and not (len(parts) == 3 and parts[1] == "0"):
                    raise ParseError("bad SDP m= line")
                port_text = parts[1].split("/")[0]
                port = ascii_int(port_text, "SDP media port", max_digits=5)
                if port > 65535:
                    raise ParseError("bad SDP media port")
                current = Media(parts[0], port, parts[2], parts[3:])
                sdp.media.append(current)
            elif kind == "c":
                if len(_fields(value)) != 3:
                    raise ParseError("bad SDP c= line")
                if current is None:
                    sdp.connection = value
                else:
                    current.connection = value
            elif kind == "b":
                (current.bandwidths if current else sdp.bandwidths).append(value)
            elif kind == "a":
                name, sep, aval = value.partition(":")
                if not name:
                    raise ParseError("empty SDP attribute name")
                (current.attributes if current else sdp.attributes).add(name, aval if sep else None)
            elif current is None:
                sdp.extra.append(line)
        if not seen_v or not seen_o:
            raise ParseError("SDP lacks v= or o=")
        return sdp

    def encode(self) -> bytes:
        """Serialise with CRLF line ends."""
        lines = ["v=0",
                 f"o={self.origin_user} {self.session_id} {self.session_version} "
                 f"IN {_ipver(self.address)} {self.address}",
                 f"s={self.name}"]
        lines += self.extra
        if self.connection:
            lines.append(f"c={self.connection}")
        lines += [f"b={b}" for b in self.bandwidths]
        lines.append(f"t={self.timing}")
        lines += self.attributes.lines()
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}".rstrip())
            if m.connection:
                lines.append(f"c={m.connection}")
            lines += [f"b={b}" for b in m.bandwidths]
            lines += m.attributes.lines()
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def connection_address(self, media: Media) -> str | None:
        """The address RTP goes to for ``media`` (media-level ``c=`` overrides session-level)."""
        conn = media.connection or self.connection
        return conn.split()[2].split("/")[0] if conn else None

    def copy(self) -> SessionDescription:
        return copy.deepcopy(self)


def _ipver(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def connection_line(address: str) -> str:
    """``IN IP4 addr`` / ``IN IP6 addr`` for a ``c=`` line."""
    return f"IN {_ipver(address)} {address}"


def reverse_direction(direction: str) -> str:
    """The answerer's direction for an offered one (RFC 3264 §6.1)."""
    return _REVERSE[direction]


def with_direction(sdp: SessionDescription, direction: str) -> SessionDescription:
    """A copy with every media section set to ``direction`` and the o= version bumped (hold/resume, RFC 3264 §8.4)."""
    out = sdp.copy()
    out.session_version += 1
    for m in out.media:
        m.attributes.set_direction(direction)
    return out


def answer_formats(offer: Media, supported: dict[str, str]) -> list[str]:
    """Offered payload types we support, in the offerer's order.

    ``supported`` maps lowercase ``encoding/clock`` (e.g. ``pcmu/8000``) to anything; static
    payload types 0 (PCMU) and 8 (PCMA) match without an rtpmap (RFC 3551).
    """
    static = {"0": "pcmu/8000", "8": "pcma/8000", "9": "g722/8000"}
    rtpmap = offer.rtpmap()
    out = []
    for pt in offer.formats:
        enc = rtpmap.get(pt, static.get(pt, "")).lower()
        name_clock = "/".join(enc.split("/")[:2])
        if name_clock and name_clock in supported:
            out.append(pt)
    return out


def _fields(value: str) -> list[str]:
    """The space-separated fields of an SDP line (RFC 4566 §5: one SP; other whitespace is not a separator)."""
    return [f for f in value.split(" ") if f]
