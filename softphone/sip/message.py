"""SIP messages: parse and serialise (RFC 3261 §7, §25), and Content-Length framing on streams (§18.3).

Sans-IO: bytes in, :class:`Request`/:class:`Response` out; every grammar error is a
:class:`~softphone.sip.errors.ParseError` carrying the status a server should answer with.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import ascii_int, is_ascii_digits
from .headers import Headers, Via
from .uri import NameAddr, SipUri

MAX_MESSAGE_SIZE = 32768  # a MIKEY-SAKKE INVITE is ~2-3 kB; nothing legitimate needs more
MAX_HEADERS = 256
_METHOD = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_HNAME = _METHOD
REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    603: "Decline",
}
MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


@dataclass
class Message(abc.ABC):
    """Common part of requests and responses."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # -- typed accessors -------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        vias = self.headers.get_all("Via")
        if not vias:
            raise ParseError("missing Via")
        return Via.parse(vias[0])

    @property
    def contact(self) -> NameAddr | None:
        values = self.headers.get_all("Contact")
        return NameAddr.parse(values[0]) if values else None

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @abc.abstractmethod
    def start_line(self) -> str:
        """``METHOD uri SIP/2.0`` or ``SIP/2.0 code reason``."""

    def encode(self) -> bytes:
        """Serialise with a correct Content-Length (always written, as streams need it)."""
        lines = [self.start_line()]
        for name, value in self.headers:
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class Request(Message):
    method: str = "OPTIONS"
    uri: SipUri = field(default_factory=SipUri)

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass
class Response(Message):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


def parse_cseq(value: str) -> tuple[int, str]:
    """``CSeq: 1 INVITE`` → (1, "INVITE"); the number must fit 31 bits (§8.1.1.5)."""
    parts = value.split()
    if len(parts) != 2 or not is_ascii_digits(parts[0]) or not _METHOD.match(parts[1]):
        raise ParseError("bad CSeq")
    num = ascii_int(parts[0], "CSeq", max_digits=11)
    if num >= 2**31:
        raise ParseError("CSeq number out of range")
    return num, parts[1]


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for raw in head.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line[:1] in (" ", "\t"):
            if not lines:
                raise ParseError("continuation line before first header")
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse_head(head: bytes) -> tuple[Message, int | None]:
    """Parse start line and headers; return the message and its Content-Length (None if absent)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("message head is not UTF-8") from None
    if "\x00" in text:
        raise ParseError("NUL in message head")
    lines = _unfold(text)
    if not lines or not lines[0]:
        raise ParseError("empty start line")
    start, header_lines = lines[0], [ln for ln in lines[1:] if ln]
    if len(header_lines) > MAX_HEADERS:
        raise ParseError("too many header fields", 413)
    msg: Message
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0] != "SIP/2.0":
            raise ParseError("unsupported SIP version", 505)
        status = ascii_int(parts[1], "status line", max_digits=3) if len(parts) >= 2 and len(parts[1]) == 3 else 0
        if not 100 <= status <= 699:
            raise ParseError("bad status line")
        msg = Response(status=status, reason=parts[2].strip() if len(parts) > 2 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not _METHOD.match(parts[0]):
            raise ParseError("bad request line")
        if parts[2] != "SIP/2.0":
            raise ParseError("unsupported SIP version", 505)
        try:
            uri = SipUri.parse(parts[1])
        except ParseError:
            raise ParseError("bad Request-URI") from None
        msg = Request(method=parts[0], uri=uri)
    for line in header_lines:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _HNAME.match(name):
            raise ParseError("malformed header line")
        msg.headers.add(name, value.strip())
    length = None
    cl = msg.headers.get("Content-Length")
    if cl is not None:
        length = ascii_int(cl, "Content-Length", max_digits=9)
    _validate(msg)
    return msg, length


def _validate(msg: Message) -> None:
    """Mandatory headers and their grammar (RFC 3261 §8.1.1, §16.3)."""
    for name in MANDATORY:
        if msg.headers.get(name) is None:
            raise ParseError(f"missing {name} header")
    if len(msg.headers.get_all("CSeq")) != 1 or len(msg.headers.get_all("Call-ID")) != 1:
        raise ParseError("duplicate CSeq or Call-ID")
    num, method = msg.cseq
    if isinstance(msg, Request) and method != msg.method and not (
        msg.method == "ACK" and method == "ACK"
    ):
        raise ParseError("CSeq method does not match the request method")
    for via in msg.headers.get_all("Via"):
        Via.parse(via)
    msg.from_, msg.to  # noqa: B018 - parse both for their grammar
    if isinstance(msg, Request):
        mf = msg.headers.get("Max-Forwards")
        hops = None if mf is None else ascii_int(mf, "Max-Forwards")
        if hops is not None and hops > 255:
            raise ParseError("bad Max-Forwards")
        if hops == 0 and msg.method not in ("OPTIONS", "REGISTER"):
            raise ParseError("Max-Forwards is zero", 483)


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Parse one datagram (RFC 3261 §18.3): the body is cut to Content-Length; a short body is an error."""
    if len(data) > max_size:
        raise ParseError("message too large", 413)
    data = data.lstrip(b"\r\n")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise ParseError("no blank line after the headers")
    msg, length = parse_head(head)
    if length is not None:
        if len(body) < length:
            raise ParseError("body shorter than Content-Length")
        body = body[:length]
    msg.body = body
    return msg


class StreamFramer:
    """Split a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    ``feed`` returns complete messages; a grammar error raises ParseError and the connection
    should be closed (the stream cannot be resynchronised). Buffers are bounded by ``max_size``.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        self._pending: tuple[Message, int] | None = None
        self._skip = 0
        self.rejected: list[tuple[bytes, ParseError]] = []  # well-framed messages that did not parse

    @property
    def pending(self) -> bool:
        """Whether part of a message is buffered (so CRLFs now are inside it, not a keep-alive)."""
        return bool(self._buf) or self._pending is not None

    def feed(self, data: bytes) -> list[Message]:
        """Complete messages in order; a message whose head is malformed but whose Content-Length
        still frames it is skipped and recorded in ``rejected`` (the stream stays usable)."""
        self._buf += data
        out: list[Message] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buf))
                del self._buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return out
            if self._pending is None:
                while self._buf[:2] == b"\r\n":  # keep-alive CRLFs (RFC 5626 §3.5.1)
                    del self._buf[:2]
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > self._max:
                        raise ParseError("header section too large", 413)
                    return out
                head = bytes(self._buf[:end])
                try:
                    msg, length = parse_head(head)
                except ParseError as exc:
                    length = _framing_length(head)  # raises when the stream cannot be resynchronised
                    if end + 4 + length > self._max:
                        raise ParseError("message too large", 413) from None
                    self.rejected.append((head, exc))
                    del self._buf[: end + 4]
                    self._skip = length
                    continue
                if length is None:
                    raise ParseError("missing Content-Length on a stream transport")
                if end + 4 + length > self._max:
                    raise ParseError("message too large", 413)
                del self._buf[: end + 4]
                self._pending = (msg, length)
            msg, length = self._pending
            if len(self._buf) < length:
                return out
            msg.body = bytes(self._buf[:length])
            del self._buf[:length]
            self._pending = None
            out.append(msg)


def _framing_length(head: bytes) -> int:
    """The one ASCII Content-Length of a head that failed to parse, or ParseError (cannot frame)."""
    found: list[str] = []
    for line in head.decode("utf-8", "replace").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in ("content-length", "l"):
            found.append(value.strip(" \t"))
    if len(found) != 1:
        raise ParseError("cannot frame the stream: no single Content-Length")
    return ascii_int(found[0], "Content-Length", max_digits=9)


def make_response(req: Request, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, body: bytes = b"",
                  extra: list[tuple[str, str]] | None = None) -> Response:
    """A response copying Via, From, To, Call-ID and CSeq from ``req`` (RFC 3261 §8.2.6.2)."""
    resp = Response(status=status, reason=reason or REASONS.get(status, "Unknown"))
    for via in req.headers.get_all("Via"):
        resp.headers.add("Via", via)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = req.headers.get(name)
        if value is not None:
            resp.headers.add(name, value)
    if to_tag is not None and status != 100:
        try:
            to = req.to
        except ParseError:
            to = None
        if to is not None and to.tag is None:
            to.params["tag"] = to_tag
            resp.headers.set("To", str(to))
    for name, value in extra or []:
        resp.headers.add(name, value)
    resp.body = body
    return resp
