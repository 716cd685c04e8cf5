"""MIKEY in SDP (RFC 4567): ``a=key-mgmt:mikey <base64>`` at session or media level.

Text helpers only (no SDP model): :func:`key_mgmt_value`/:func:`decode_key_mgmt` convert between the
binary I_MESSAGE and the attribute value; :func:`add_key_mgmt` / :func:`find_key_mgmt` place and find
the attribute in an SDP body (media level wins over session level, RFC 4567 §3.1).
"""

from __future__ import annotations

import base64
import binascii

from crypto.mikey.errors import MalformedMessage

PREFIX = "mikey "
ATTR = "a=key-mgmt:"


def key_mgmt_value(imessage: bytes) -> str:
    """``mikey <base64>`` (standard alphabet, padded, one line)."""
    return PREFIX + base64.b64encode(imessage).decode("ascii")


def decode_key_mgmt(value: str) -> bytes:
    """The binary I_MESSAGE from ``mikey <base64>`` (or bare base64); strict base64."""
    text = value.strip()
    if text.startswith(ATTR):
        text = text[len(ATTR):]
    if text.lower().startswith("mikey"):
        text = text[5:].strip()
    elif " " in text:
        raise MalformedMessage("key-mgmt protocol is not 'mikey'")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("key-mgmt data is not valid base64") from None
    if not data:
        raise MalformedMessage("key-mgmt data is empty")
    return data


def _lines(sdp: str) -> list[str]:
    return sdp.replace("\r\n", "\n").split("\n")


def add_key_mgmt(sdp: str, imessage: bytes, media_index: int | None = 0) -> str:
    """Insert ``a=key-mgmt`` after the ``media_index``-th m-line's first line (``None``: session level).

    Returns the SDP with CRLF line ends.
    """
    lines = [ln for ln in _lines(sdp) if ln]
    attr = ATTR + key_mgmt_value(imessage)
    m_positions = [i for i, ln in enumerate(lines) if ln.startswith("m=")]
    if media_index is None:
        pos = m_positions[0] if m_positions else len(lines)
    else:
        if not 0 <= media_index < len(m_positions):
            raise MalformedMessage(f"SDP has no media section {media_index}")
        nxt = m_positions[media_index + 1] if media_index + 1 < len(m_positions) else len(lines)
        pos = nxt
    lines.insert(pos, attr)
    return "\r\n".join(lines) + "\r\n"


def find_key_mgmt(sdp: str, media_index: int = 0) -> bytes | None:
    """The I_MESSAGE for media section ``media_index`` (media level first, then session level)."""
    session: str | None = None
    media: list[str | None] = []
    for ln in _lines(sdp):
        ln = ln.strip()
        if ln.startswith("m="):
            media.append(None)
        elif ln.startswith(ATTR) and ln[len(ATTR):].startswith("mikey"):
            if media:
                if media[-1] is None:
                    media[-1] = ln
            elif session is None:
                session = ln
    chosen = media[media_index] if media_index < len(media) and media[media_index] else session
    return None if chosen is None else decode_key_mgmt(chosen)
