"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617 qop=auth, RFC 8760 SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from .errors import ParseError

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate``/``Proxy-Authenticate: Digest ...`` value."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            raise ParseError(f"unsupported auth scheme {scheme[:20]!r}")
        params = parse_auth_params(rest)
        if "realm" not in params or "nonce" not in params:
            raise ParseError("digest challenge lacks realm or nonce")
        algorithm = params.get("algorithm", "MD5").upper()
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(params["realm"], params["nonce"], algorithm, qop, params.get("opaque"),
                   params.get("stale", "").lower() == "true")

    @property
    def supported(self) -> bool:
        return self.algorithm in _ALGORITHMS and (not self.qop or "auth" in self.qop)


def parse_auth_params(text: str) -> dict[str, str]:
    """``a=b, c="d, e"`` → dict; names lowercased, quotes removed."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ParseError("bad auth parameter")
        name = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ParseError("unterminated quoted auth parameter")
            out[name] = "".join(buf)
            i = j + 1
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            out[name] = text[i:j].strip()
            i = j
    return out


class DigestCredentials:
    """Username and password for one realm (or any realm); the password never leaves this object."""

    def __init__(self, username: str, password: str, realm: str | None = None) -> None:
        self.username = username
        self._password = password
        self.realm = realm
        self._nc: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"DigestCredentials(username={self.username!r}, password=<hidden>)"

    def authorization(self, challenge: Challenge, method: str, uri: str,
                      cnonce: str | None = None) -> str:
        """The ``Authorization`` value answering ``challenge`` for ``method uri`` (RFC 2617 §3.2.2)."""
        if not challenge.supported:
            raise ParseError(f"unsupported digest algorithm {challenge.algorithm}")
        h = _ALGORITHMS[challenge.algorithm]

        def hx(s: str) -> str:
            return h(s.encode()).hexdigest()

        ha1 = hx(f"{self.username}:{challenge.realm}:{self._password}")
        ha2 = hx(f"{method}:{uri}")
        parts = [f'username="{self.username}"', f'realm="{challenge.realm}"',
                 f'nonce="{challenge.nonce}"', f'uri="{uri}"']
        if "auth" in challenge.qop:
            nc = self._nc.get(challenge.nonce, 0) + 1
            self._nc[challenge.nonce] = nc
            cnonce = cnonce or secrets.token_hex(8)
            response = hx(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
            parts += [f'response="{response}"', "qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
        else:
            parts.append(f'response="{hx(f"{ha1}:{challenge.nonce}:{ha2}")}"')
        parts.append(f"algorithm={challenge.algorithm}")
        if challenge.opaque is not None:
            parts.append(f'opaque="{challenge.opaque}"')
        return "Digest " + ", ".join(parts)
