"""SIP URIs and name-addr / addr-spec values (RFC 3261 §19.1, §20.10, §25.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import ascii_int

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$")


def _split_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name:
            raise ParseError("empty URI parameter name")
        params[name.lower()] = value.strip() if sep else None
    return params


def _join_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    """A ``sip:``/``sips:`` URI; other schemes (``tel:``) keep their text in ``user``."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or not scheme or not _TOKEN.match(scheme):
            raise ParseError(f"bad URI {text[:60]!r}")
        if scheme not in ("sip", "sips"):
            if not rest:
                raise ParseError(f"bad URI {text[:60]!r}")
            return cls(scheme=scheme, user=rest)
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart = rest
        hostport, _, params = hostpart.partition(";")
        user = password = None
        if at:
            user, colon, pw = userinfo.partition(":")
            password = pw if colon else None
            if not user:
                raise ParseError("empty user part in SIP URI")
        if hostport.startswith("["):
            end = hostport.find("]")
            if end < 0:
                raise ParseError("unterminated IPv6 reference in SIP URI")
            host, portpart = hostport[: end + 1], hostport[end + 1 :]
            if portpart and not portpart.startswith(":"):
                raise ParseError("bad host:port in SIP URI")
            port_text, has_port = portpart[1:], bool(portpart)
        else:
            host, colon, port_text = hostport.partition(":")
            has_port = bool(colon)
        if not host or not _HOST.match(host):
            raise ParseError(f"bad host in SIP URI {text[:60]!r}")
        port = None
        if has_port:
            port = ascii_int(port_text, "port in SIP URI", max_digits=5)
            if not 0 < port < 65536:
                raise ParseError("bad port in SIP URI")
        return cls(scheme, user, password, host.lower(), port, _split_params(params), headers or None)

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user}"
        out = self.scheme + ":"
        if self.user is not None:
            out += self.user + (f":{self.password}" if self.password is not None else "") + "@"
        out += self.host + (f":{self.port}" if self.port else "") + _join_params(self.params)
        return out + (f"?{self.headers}" if self.headers else "")

    @property
    def transport(self) -> str:
        """Transport named by the URI: ``tls`` for sips:, else the ``transport`` param or ``udp``."""
        if self.scheme == "sips":
            return "tls"
        return (self.params.get("transport") or "udp").lower()

    def aor(self) -> str:
        """Address of record: scheme, user and host without port or parameters."""
        return f"{self.scheme}:{self.user}@{self.host}" if self.user else f"{self.scheme}:{self.host}"


@dataclass
class NameAddr:
    """``"Display" <uri>;params`` or ``uri;params`` (From, To, Contact, Route ...)."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if text == "*":
            return cls(SipUri(host="*"), wildcard=True)
        display = None
        if "<" in text:
            lt = text.index("<")
            head = text[:lt].strip()
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated <uri> in name-addr")
            if head.startswith('"'):
                if len(head) < 2 or not head.endswith('"'):
                    raise ParseError("bad quoted display name")
                display = _unquote(head)
            elif head:
                display = head
            uri = SipUri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise ParseError("junk after name-addr")
            return cls(uri, display, _split_params(rest))
        # addr-spec: parameters after the URI belong to the header (RFC 3261 §20)
        uri_text, _, params = text.partition(";")
        return cls(SipUri.parse(uri_text), None, _split_params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        disp = f'"{_quote(self.display)}" ' if self.display else ""
        return f"{disp}<{self.uri}>{_join_params(self.params)}"


def _unquote(text: str) -> str:
    inner = text[1:-1]
    out, i = [], 0
    while i < len(inner):
        if inner[i] == "\\" and i + 1 < len(inner):
            i += 1
        out.append(inner[i])
        i += 1
    return "".join(out)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
