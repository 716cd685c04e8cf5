"""MCData protected payloads (TS 33.180 §8.5, TS 24.282 §15): the end-to-end part of a secure message.

A protected payload is::

    message type (1, 0x40 bit set) ‖ date and time (5, Unix seconds) ‖ payload ID (4) ‖
    payload sequence number (1) ‖ payload algorithm (1, 1 = AEAD_AES_128_GCM) ‖ IV (16) ‖
    DPPK-ID (4) ‖ IEI 0x78 ‖ length (2) ‖ AEAD ciphertext ‖ tag (16)

with AAD = the first 32 octets and key = DPCK (TS 33.180 F.1.5, :func:`crypto.kdf.dpck`) of the
DPPK (the PCK for one-to-one messages), DPPK-ID = the PCK-ID. The plaintext is one of the TS 24.282
payloads below, in their plain form:

* SDS SIGNALLING PAYLOAD (type 1): type ‖ date-time(5) ‖ conversation ID(16) ‖ message ID(16) ‖
  [0x21 InReplyTo ‖ message ID(16)] ‖ [0x8n disposition request, n = 1 delivered, 2 read, 3 both]
* DATA PAYLOAD (type 3): type ‖ number of payloads(1) ‖ n × (0x78 ‖ length(2) ‖ content type(1) ‖ data)
* SDS NOTIFICATION (type 5): type ‖ date-time(5) ‖ conversation ID(16) ‖ message ID(16) ‖
  disposition(1: 1 delivered, 2 read)

Every failure is a :class:`McDataError` subclass; none carries plaintext or key material. Pure: no I/O.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import CryptoError
from crypto.kdf import dpck

PROTECTED = 0x40
ALG_AES_128_GCM = 1
IV_LEN = 16
TAG_LEN = 16
AAD_LEN = 32
IEI_PAYLOAD = 0x78
IEI_IN_REPLY_TO = 0x21
IEI_DISPOSITION_REQUEST = 0x80
MAX_PAYLOAD = 0xFFFF - TAG_LEN  # one Payload IE's 2-octet length


class McDataError(CryptoError):
    """A protected payload could not be opened or parsed."""


class MalformedPayload(McDataError, ValueError):
    """Truncated, bad length, unknown message type or algorithm."""


class PayloadAuthFailed(McDataError):
    """The AEAD tag does not verify: tampered, or protected under another key."""


class KeyIdMismatch(McDataError):
    """The payload names a DPPK-ID other than the key it was offered with."""


class MessageType(IntEnum):
    """TS 24.282 Table 15.2.2-1 (plain values; the protected form sets 0x40)."""

    SDS_SIGNALLING = 1
    DATA = 3
    SDS_NOTIFICATION = 5


class ContentType(IntEnum):
    """TS 24.282 Table 15.2.13-2 (the ones we send)."""

    TEXT = 1
    BINARY = 2


class Disposition(IntEnum):
    DELIVERED = 1
    READ = 2


@dataclass(frozen=True, repr=False)
class ProtectedPayload:
    """The outer structure; ``ciphertext`` includes the 16-octet tag."""

    message_type: int
    date_time: int
    payload_id: int
    seq: int
    algorithm: int
    iv: bytes
    dppk_id: int
    ciphertext: bytes

    def header(self) -> bytes:
        return (bytes([self.message_type]) + self.date_time.to_bytes(5, "big") + self.payload_id.to_bytes(4, "big")
                + bytes([self.seq, self.algorithm]) + self.iv + self.dppk_id.to_bytes(4, "big"))

    def encode(self) -> bytes:
        return self.header() + bytes([IEI_PAYLOAD]) + len(self.ciphertext).to_bytes(2, "big") + self.ciphertext

    @classmethod
    def decode(cls, data: bytes) -> ProtectedPayload:
        data = bytes(data)
        if len(data) < AAD_LEN + 3 + TAG_LEN:
            raise MalformedPayload(f"protected payload is {len(data)} octets (at least {AAD_LEN + 3 + TAG_LEN})")
        mtype = data[0]
        if not mtype & PROTECTED:
            raise MalformedPayload(f"message type {mtype} is not a protected type")
        if data[32] != IEI_PAYLOAD:
            raise MalformedPayload(f"expected the payload IE 0x78, found 0x{data[32]:02x}")
        n = int.from_bytes(data[33:35], "big")
        if len(data) != 35 + n or n < TAG_LEN:
            raise MalformedPayload("payload IE length does not match the data")
        if data[11] != ALG_AES_128_GCM:
            raise MalformedPayload(f"payload algorithm {data[11]} is not supported (1 = AEAD_AES_128_GCM)")
        return cls(mtype, int.from_bytes(data[1:6], "big"), int.from_bytes(data[6:10], "big"), data[10],
                   data[11], data[12:28], int.from_bytes(data[28:32], "big"), data[35:])

    def __repr__(self) -> str:
        return (f"ProtectedPayload(type=0x{self.message_type:02x}, payload_id={self.payload_id:08x}, seq={self.seq}, "
                f"dppk_id={self.dppk_id:08x}, {len(self.ciphertext)} octets)")


def protect(plain: bytes, *, message_type: int, dppk: bytes, dppk_id: int, date_time: int, payload_id: int,
            seq: int = 0, iv: bytes | None = None) -> bytes:
    """Encrypt ``plain`` (a plain TS 24.282 payload) to a protected payload (fresh random IV)."""
    if len(plain) > MAX_PAYLOAD:
        raise MalformedPayload(f"payload is {len(plain)} octets (at most {MAX_PAYLOAD})")
    if not 0 <= message_type < PROTECTED:
        raise MalformedPayload("message type must be a plain type (< 64)")
    iv = os.urandom(IV_LEN) if iv is None else bytes(iv)
    if len(iv) != IV_LEN:
        raise MalformedPayload(f"IV must be {IV_LEN} octets")
    shell = ProtectedPayload(message_type | PROTECTED, date_time, payload_id, seq, ALG_AES_128_GCM, iv, dppk_id, b"")
    aad = shell.header()
    ct = AESGCM(dpck(dppk, dppk_id)).encrypt(iv, plain, aad)
    return ProtectedPayload(shell.message_type, date_time, payload_id, seq, ALG_AES_128_GCM, iv, dppk_id,
                            ct).encode()


def unprotect(data: bytes | ProtectedPayload, *, dppk: bytes, dppk_id: int) -> tuple[ProtectedPayload, bytes]:
    """Verify and decrypt; returns the outer structure and the plain payload."""
    pp = data if isinstance(data, ProtectedPayload) else ProtectedPayload.decode(data)
    if pp.dppk_id != dppk_id:
        raise KeyIdMismatch(f"payload is protected under DPPK-ID {pp.dppk_id:08x}, the message carries {dppk_id:08x}")
    try:
        plain = AESGCM(dpck(dppk, dppk_id)).decrypt(pp.iv, pp.ciphertext, pp.header())
    except InvalidTag:
        raise PayloadAuthFailed("protected payload does not authenticate (tampered, or another key)") from None
    if not plain or plain[0] != pp.message_type & ~PROTECTED & 0x3F:
        raise MalformedPayload("inner message type does not match the protected message type")
    return pp, plain


# --- plain TS 24.282 payloads ---------------------------------------------------------------------------------
def _need(data: bytes, n: int, what: str) -> None:
    if len(data) < n:
        raise MalformedPayload(f"{what} is truncated")


@dataclass(frozen=True)
class SdsSignalling:
    date_time: int
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    in_reply_to: uuid.UUID | None = None
    disposition_request: int = 0  # bit 0 delivered, bit 1 read

    def encode(self) -> bytes:
        out = (bytes([MessageType.SDS_SIGNALLING]) + self.date_time.to_bytes(5, "big") + self.conversation_id.bytes
               + self.message_id.bytes)
        if self.in_reply_to is not None:
            out += bytes([IEI_IN_REPLY_TO]) + self.in_reply_to.bytes
        if self.disposition_request:
            out += bytes([IEI_DISPOSITION_REQUEST | (self.disposition_request & 0x0F)])
        return out

    @classmethod
    def decode(cls, data: bytes) -> SdsSignalling:
        _need(data, 38, "SDS signalling payload")
        if data[0] != MessageType.SDS_SIGNALLING:
            raise MalformedPayload("not an SDS signalling payload")
        dt = int.from_bytes(data[1:6], "big")
        conv, mid = uuid.UUID(bytes=data[6:22]), uuid.UUID(bytes=data[22:38])
        rest, reply, disp = data[38:], None, 0
        while rest:
            if rest[0] == IEI_IN_REPLY_TO:
                _need(rest, 17, "InReplyTo")
                reply, rest = uuid.UUID(bytes=rest[1:17]), rest[17:]
            elif rest[0] & 0xF0 == IEI_DISPOSITION_REQUEST:
                disp, rest = rest[0] & 0x0F, rest[1:]
            else:
                raise MalformedPayload(f"unknown IE 0x{rest[0]:02x} in the SDS signalling payload")
        return cls(dt, conv, mid, reply, disp)


@dataclass(frozen=True, repr=False)
class DataItem:
    content_type: int
    data: bytes

    def __repr__(self) -> str:
        return f"DataItem(content_type={self.content_type}, {len(self.data)} octets)"


@dataclass(frozen=True, repr=False)
class DataPayload:
    items: tuple[DataItem, ...] = field(default_factory=tuple)

    def encode(self) -> bytes:
        if not 1 <= len(self.items) <= 255:
            raise MalformedPayload("a data payload holds 1..255 payloads")
        out = bytearray([MessageType.DATA, len(self.items)])
        for item in self.items:
            n = 1 + len(item.data)
            if n > 0xFFFF:
                raise MalformedPayload(f"one payload is {len(item.data)} octets (at most 65534)")
            out += bytes([IEI_PAYLOAD]) + n.to_bytes(2, "big") + bytes([item.content_type]) + item.data
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> DataPayload:
        _need(data, 2, "data payload")
        if data[0] != MessageType.DATA:
            raise MalformedPayload("not a data payload")
        count, pos, items = data[1], 2, []
        for _ in range(count):
            _need(data, pos + 4, "payload IE")
            if data[pos] != IEI_PAYLOAD:
                raise MalformedPayload(f"expected payload IE 0x78, found 0x{data[pos]:02x}")
            (n,) = struct.unpack(">H", data[pos + 1:pos + 3])
            if n < 1 or pos + 3 + n > len(data):
                raise MalformedPayload("payload IE length does not match the data")
            items.append(DataItem(data[pos + 3], data[pos + 4:pos + 3 + n]))
            pos += 3 + n
        if pos != len(data) or not items:
            raise MalformedPayload("data payload has trailing octets or no payload")
        return cls(tuple(items))


@dataclass(frozen=True)
class SdsNotification:
    date_time: int
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    disposition: Disposition

    def encode(self) -> bytes:
        return (bytes([MessageType.SDS_NOTIFICATION]) + self.date_time.to_bytes(5, "big")
                + self.conversation_id.bytes + self.message_id.bytes + bytes([self.disposition]))

    @classmethod
    def decode(cls, data: bytes) -> SdsNotification:
        if len(data) != 39 or data[0] != MessageType.SDS_NOTIFICATION:
            raise MalformedPayload("not an SDS notification")
        try:
            disp = Disposition(data[38])
        except ValueError:
            raise MalformedPayload(f"unknown disposition {data[38]}") from None
        return cls(int.from_bytes(data[1:6], "big"), uuid.UUID(bytes=data[6:22]), uuid.UUID(bytes=data[22:38]), disp)
