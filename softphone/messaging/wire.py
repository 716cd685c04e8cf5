"""The SIP MESSAGE body of a secure message: ``multipart/mixed`` with base64 parts (RFC 2046, RFC 3428).

::

    Content-Type: multipart/mixed;boundary=scmsg
    --scmsg
    Content-Type: application/mikey                       the I_MESSAGE carrying the PCK (signed, ECCSI)
    Content-Transfer-Encoding: base64
    --scmsg
    Content-Type: application/vnd.3gpp.mcdata-signalling   protected SDS SIGNALLING PAYLOAD or SDS NOTIFICATION
    Content-Transfer-Encoding: base64
    --scmsg
    Content-Type: application/vnd.3gpp.mcdata-payload      protected DATA PAYLOAD (absent in a notification)
    Content-Transfer-Encoding: base64
    --scmsg--

Parts are base64 so the body is 7-bit text: a store-and-forward (Kamailio msilo) keeps it in a
text/blob column and replays it unchanged. msilo keeps only ``type/subtype`` of the Content-Type, so
a receiver takes the boundary from the body's first line when the header has none.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

BOUNDARY = "scmsg"
CONTENT_TYPE = f"multipart/mixed;boundary={BOUNDARY}"
CT_MIKEY = "application/mikey"
CT_SIGNALLING = "application/vnd.3gpp.mcdata-signalling"
CT_PAYLOAD = "application/vnd.3gpp.mcdata-payload"
MAX_PARTS = 8


class WireError(ValueError):
    """The body is not a secure-message multipart."""


@dataclass(frozen=True, repr=False)
class Envelope:
    imessage: bytes
    signalling: bytes
    payload: bytes | None = None

    def __repr__(self) -> str:
        return (f"Envelope(imessage={len(self.imessage)} octets, signalling={len(self.signalling)}, "
                f"payload={len(self.payload) if self.payload is not None else None})")


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))


def encode(env: Envelope) -> bytes:
    parts = [(CT_MIKEY, env.imessage), (CT_SIGNALLING, env.signalling)]
    if env.payload is not None:
        parts.append((CT_PAYLOAD, env.payload))
    out = []
    for ctype, data in parts:
        out.append(f"--{BOUNDARY}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   f"{_b64(data)}\r\n")
    out.append(f"--{BOUNDARY}--\r\n")
    return "".join(out).encode("ascii")


def _boundary(content_type: str, body: bytes) -> str:
    m = re.search(r';\s*boundary\s*=\s*"?([^";]+)"?', content_type, re.I)
    if m:
        return m.group(1).strip()
    first = body.lstrip(b"\r\n").split(b"\r\n", 1)[0].split(b"\n", 1)[0].strip()
    if first.startswith(b"--") and 2 < len(first) <= 72:
        return first[2:].decode("ascii", "replace")
    raise WireError("multipart body without a boundary")


def decode(content_type: str, body: bytes) -> Envelope:
    """Split the body; refuses anything but exactly one part of each kind (payload optional)."""
    if content_type.split(";", 1)[0].strip().lower() != "multipart/mixed":
        raise WireError(f"content type {content_type.split(';', 1)[0]} is not multipart/mixed")
    delim = b"--" + _boundary(content_type, body).encode("ascii")
    chunks = body.split(delim)
    if len(chunks) < 3 or len(chunks) > MAX_PARTS + 2:
        raise WireError("multipart body has no parts or too many")
    found: dict[str, bytes] = {}
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise WireError("body part without headers")
        headers = {}
        for line in head.decode("ascii", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype in found:
            raise WireError(f"two {ctype} parts")
        raw = data.strip()
        if headers.get("content-transfer-encoding", "binary").lower() == "base64":
            try:
                raw = base64.b64decode(b"".join(raw.split()), validate=True)
            except binascii.Error:
                raise WireError(f"{ctype} part is not valid base64") from None
        found[ctype] = raw
    if CT_MIKEY not in found or CT_SIGNALLING not in found:
        raise WireError("secure message needs an application/mikey and a signalling part")
    return Envelope(found[CT_MIKEY], found[CT_SIGNALLING], found.get(CT_PAYLOAD))
