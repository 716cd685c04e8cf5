"""Header fields: compact forms, multi-value splitting and the Via header (RFC 3261 §7.3, §20)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import ascii_int

_VIA_PROTO = re.compile(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+(\S.*)$", re.I | re.S)
COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "u": "Allow-Events", "b": "Referred-By",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
}
_CANONICAL = {n.lower(): n for n in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Route", "Record-Route",
    "Content-Length", "Content-Type", "Allow", "Supported", "Require", "Proxy-Require",
    "Unsupported", "WWW-Authenticate", "Authorization", "Proxy-Authenticate",
    "Proxy-Authorization", "Expires", "User-Agent", "Server", "Warning", "Accept",
    "Retry-After", "Min-Expires", "Content-Encoding", "Subject", "Event", "Allow-Events",
    "Session-Expires", "Min-SE", "Timestamp", "Date", "Authentication-Info", "Accept-Encoding",
    "Accept-Language", "In-Reply-To", "Priority", "Organization", "Reply-To", "Call-Info",
    "Content-Disposition", "Content-Language", "MIME-Version", "Alert-Info", "Error-Info",
    "Refer-To", "Referred-By", "P-Asserted-Identity", "Path", "Service-Route",
)}
# Headers whose values may be comma-separated lists (RFC 3261 §7.3.1)
LIST_HEADERS = frozenset({
    "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require", "Proxy-Require",
    "Unsupported", "Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding",
    "Allow-Events", "Warning", "Path", "Service-Route", "Call-Info", "Alert-Info", "Error-Info",
})


def canonical(name: str) -> str:
    """Canonical spelling of a header name; compact forms expanded."""
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name)


def split_list(value: str) -> list[str]:
    """Split a header value at top-level commas, respecting quotes and <...>."""
    out, cur, quoted, angle, i = [], [], False, False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\" and i + 1 < len(value):
                cur.append(ch)
                i += 1
                ch = value[i]
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if quoted:
        raise ParseError("unterminated quoted string in header")
    out.append("".join(cur).strip())
    return [v for v in out if v]


class Headers:
    """Ordered multi-map of header fields; names are canonicalised, lookups case-insensitive."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items or []:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, keeping the first position."""
        name = canonical(name)
        for idx, (n, _) in enumerate(self._items):
            if n.lower() == name.lower():
                self._items[idx] = (name, value)
                self._items = self._items[: idx + 1] + [
                    it for it in self._items[idx + 1 :] if it[0].lower() != name.lower()
                ]
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        low = canonical(name).lower()
        self._items = [it for it in self._items if it[0].lower() != low]

    def get(self, name: str, default: str | None = None) -> str | None:
        low = canonical(name).lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers are split at top-level commas."""
        name = canonical(name)
        low = name.lower()
        values = [v for n, v in self._items if n.lower() == low]
        if name in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h


@dataclass
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`` (RFC 3261 §20.42, RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_PROTO.match(text)
        if m is None:
            raise ParseError("bad Via protocol")
        transport, rest = m.group(1), m.group(2)
        sent_by, _, params = rest.strip().partition(";")
        sent_by = sent_by.strip()
        if sent_by.startswith("["):
            end = sent_by.find("]")
            if end < 0:
                raise ParseError("bad Via host")
            host, colon, port_text = sent_by[: end + 1], sent_by[end + 1 : end + 2], sent_by[end + 2 :]
        else:
            host, colon, port_text = sent_by.partition(":")
        if not host or any(c in host for c in " \t<>\""):
            raise ParseError("bad Via host")
        port = None
        if colon and colon != ":":
            raise ParseError("bad Via host")
        if colon:
            port = ascii_int(port_text.strip(" \t"), "Via port", max_digits=5)
            if not 0 < port < 65536:
                raise ParseError("bad Via port")
        pdict: dict[str, str | None] = {}
        for p in params.split(";"):
            if p.strip():
                k, sep, v = p.partition("=")
                pdict[k.strip().lower()] = v.strip() if sep else None
        return cls(transport.upper(), host, port, pdict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        hp = self.host + (f":{self.port}" if self.port else "")
        ps = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {hp}{ps}"
