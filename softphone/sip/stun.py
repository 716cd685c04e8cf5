"""A minimal STUN codec (RFC 5389) for SIP outbound keep-alives over UDP (RFC 5626 §4.4.2).

Pure: bytes in, bytes out. Enough of STUN to send a Binding request, recognise its response and
read the mapped address (which changes when a NAT rebinds: the flow then counts as failed), plus
MESSAGE-INTEGRITY and FINGERPRINT checks so the RFC 5769 test vectors can be verified.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from .errors import ParseError

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
FINGERPRINT_XOR = 0x5354554E
_HEADER = struct.Struct("!HHI12s")


@dataclass
class StunMessage:
    """``type`` (e.g. 0x0001 Binding request), 12-octet ``transaction_id``, raw attributes in order."""

    type: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attr: int) -> bytes | None:
        return next((v for t, v in self.attributes if t == attr), None)

    def mapped_address(self) -> tuple[str, int] | None:
        """The (XOR-)MAPPED-ADDRESS as ``(address, port)``, None if absent."""
        if (value := self.get(XOR_MAPPED_ADDRESS)) is not None:
            return _address(value, self.transaction_id, xor=True)
        if (value := self.get(MAPPED_ADDRESS)) is not None:
            return _address(value, self.transaction_id, xor=False)
        return None

    def encode(self, *, fingerprint: bool = False) -> bytes:
        body = b"".join(_attr(t, v) for t, v in self.attributes)
        data = _HEADER.pack(self.type, len(body), MAGIC_COOKIE, self.transaction_id) + body
        if fingerprint:
            data = _with_length(data, len(body) + 8)
            crc = (binascii.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
            data += _attr(FINGERPRINT, struct.pack("!I", crc))
        return data


def _attr(attr: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack("!HH", attr, len(value)) + value + b"\x00" * pad


def _with_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


def _address(value: bytes, txid: bytes, *, xor: bool) -> tuple[str, int]:
    if len(value) < 8:
        raise ParseError("short STUN address attribute")
    family, port = struct.unpack("!xBH", value[:4])
    raw = value[4:]
    if xor:
        port ^= MAGIC_COOKIE >> 16
        mask = struct.pack("!I", MAGIC_COOKIE) + txid
        raw = bytes(a ^ b for a, b in zip(raw, mask, strict=False))
    if family == 1 and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw)), port
    if family == 2 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw)), port
    raise ParseError("bad STUN address family")


def address_value(address: str, port: int, txid: bytes) -> bytes:
    """An XOR-MAPPED-ADDRESS attribute value."""
    ip = ipaddress.ip_address(address)
    mask = struct.pack("!I", MAGIC_COOKIE) + txid
    raw = bytes(a ^ b for a, b in zip(ip.packed, mask, strict=False))
    return struct.pack("!xBH", 1 if ip.version == 4 else 2, port ^ (MAGIC_COOKIE >> 16)) + raw


def is_stun(data: bytes) -> bool:
    """Whether a datagram looks like STUN (first two bits zero, magic cookie; RFC 5389 §6)."""
    return len(data) >= 20 and data[0] < 0x40 and data[4:8] == b"\x21\x12\xa4\x42" and len(data) % 4 == 0


def parse(data: bytes) -> StunMessage:
    """Decode one STUN message; raises :class:`ParseError` on bad framing."""
    if not is_stun(data):
        raise ParseError("not a STUN message")
    mtype, length, _, txid = _HEADER.unpack_from(data)
    if length != len(data) - 20:
        raise ParseError("STUN length mismatch")
    attrs: list[tuple[int, bytes]] = []
    pos = 20
    while pos < len(data):
        if pos + 4 > len(data):
            raise ParseError("truncated STUN attribute")
        attr, alen = struct.unpack_from("!HH", data, pos)
        if pos + 4 + alen > len(data):
            raise ParseError("truncated STUN attribute")
        attrs.append((attr, data[pos + 4:pos + 4 + alen]))
        pos += 4 + alen + (-alen % 4)
    return StunMessage(mtype, txid, attrs)


def _offset(data: bytes, attr: int) -> int | None:
    pos = 20
    while pos + 4 <= len(data):
        kind, alen = struct.unpack_from("!HH", data, pos)
        if kind == attr:
            return pos
        pos += 4 + alen + (-alen % 4)
    return None


def check_fingerprint(data: bytes) -> bool:
    """Whether the FINGERPRINT attribute (the last one) is present and correct (RFC 5389 §15.5)."""
    pos = _offset(data, FINGERPRINT)
    if pos is None or pos + 8 != len(data):
        return False
    crc = (binascii.crc32(data[:pos]) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    return struct.unpack_from("!I", data, pos + 4)[0] == crc


def check_integrity(data: bytes, key: bytes) -> bool:
    """Whether MESSAGE-INTEGRITY (HMAC-SHA1 with ``key``) is correct (RFC 5389 §15.4).

    Short-term credentials use the password itself as ``key`` (after SASLprep).
    """
    pos = _offset(data, MESSAGE_INTEGRITY)
    if pos is None:
        return False
    covered = _with_length(data[:pos], pos + 24 - 20)
    mac = hmac.new(key, covered, hashlib.sha1).digest()
    return hmac.compare_digest(mac, data[pos + 4:pos + 24])


def binding_request(transaction_id: bytes) -> bytes:
    """A Binding request with FINGERPRINT, as a keep-alive (RFC 5626 §4.4.2)."""
    if len(transaction_id) != 12:
        raise ValueError("STUN transaction IDs are 12 octets")
    return StunMessage(BINDING_REQUEST, transaction_id).encode(fingerprint=True)


def binding_response(transaction_id: bytes, address: str, port: int) -> bytes:
    """A Binding success response reporting ``address:port`` (what a STUN server sends)."""
    return StunMessage(BINDING_SUCCESS, transaction_id,
                       [(XOR_MAPPED_ADDRESS, address_value(address, port, transaction_id))]).encode(fingerprint=True)
