"""TS 33.180 E.6 key parameters carried in GENERAL EXTENSION type 7.

Current form (Streamwide ≥ 1.1.14, Alea): an MCData protected payload (TS 33.180 §8.5.4)
``msg type(1) ‖ date-time(5) ‖ payload ID(4) ‖ seq(1) ‖ alg(1) ‖ IV(16) ‖ DPPK-ID(4) ‖ IEI(1) ‖
len(2) ‖ AES-128-GCM(ciphertext ‖ tag)``, key = DPCK (FC 0x53), AAD = the first 32 octets minus the
IEI/length. Legacy form (≤ 1.1.13, SmartMS, IWF): the key parameters in clear, first octet = key
type + 1. Plaintext: ``key type(1) ‖ status(4) ‖ activation(5) ‖ expiry(5) ‖ text(LV-E) [‖ groups(LV-E)]``.
Receivers must not rely on it; it is decoded for the inspector and produced for peers that expect it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.kdf import dpck
from crypto.mikey.errors import MalformedMessage, MikeyError
from crypto.mikey.payloads import Reader

MSG_TYPE_STREAMWIDE = 0x43
ALG_AES_128_GCM = 1
_HEADER_LEN = 35


@dataclass(frozen=True)
class KeyParameters:
    """Decoded key parameters (E.6)."""

    key_type: int
    status: int
    activation_time: int
    expiry_time: int
    text: str
    group_ids: bytes = b""

    def encode(self) -> bytes:
        text = self.text.encode("utf-8")
        out = (bytes([self.key_type]) + self.status.to_bytes(4, "big") + self.activation_time.to_bytes(5, "big")
               + self.expiry_time.to_bytes(5, "big") + len(text).to_bytes(2, "big") + text)
        return out + (len(self.group_ids).to_bytes(2, "big") + self.group_ids if self.group_ids else b"")

    @classmethod
    def decode(cls, data: bytes, legacy: bool = False) -> KeyParameters:
        r = Reader(data)
        kt = r.u8("key parameters key type") - (1 if legacy else 0)
        status = r.u32("key parameters status")
        act = int.from_bytes(r.take(5, "key parameters activation time"), "big")
        exp = int.from_bytes(r.take(5, "key parameters expiry time"), "big")
        raw_text = r.take(r.u16("key parameters text length"), "key parameters text")
        groups = r.take(r.u16("key parameters group IDs length"), "key parameters group IDs") if r.remaining else b""
        if legacy and not any(data[r.pos:]):
            r.take(r.remaining, "padding")  # SmartMS/wolfSSL legacy form pads with zero octets
        if r.remaining:
            raise MalformedMessage("trailing octets in key parameters")
        try:
            text = raw_text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("key parameters text is not UTF-8") from None
        return cls(kt, status, act, exp, text, groups)

    def fields(self) -> dict:
        return {"key_type": self.key_type, "status": f"{self.status:08x}", "activation_time": self.activation_time,
                "expiry_time": self.expiry_time, "text": self.text, "group_ids": self.group_ids.hex()}


@dataclass(frozen=True)
class ProtectedKeyParameters:
    """GENERAL EXTENSION type 7 decoded: ``form`` is "protected" or "legacy"."""

    form: str
    msg_type: int = 0
    date_time: int = 0
    dppk_id: int = 0
    iv: bytes = b""
    ciphertext: bytes = b""
    clear: KeyParameters | None = None

    @classmethod
    def decode(cls, data: bytes) -> ProtectedKeyParameters:
        if data[:1] in (b"\x01", b"\x02", b"\x03"):
            return cls("legacy", clear=KeyParameters.decode(data, legacy=True))
        r = Reader(data)
        msg_type = r.u8("key parameters message type")
        date_time = int.from_bytes(r.take(5, "key parameters date-time"), "big")
        r.take(5, "key parameters payload ID/sequence")
        alg = r.u8("key parameters algorithm")
        if alg != ALG_AES_128_GCM:
            raise MalformedMessage(f"key parameters algorithm {alg} is not AES-128-GCM")
        iv = r.take(16, "key parameters IV")
        dppk_id = r.u32("key parameters DPPK-ID")
        r.u8("key parameters IEI")
        ct = r.take(r.u16("key parameters payload length"), "key parameters payload")
        if r.remaining or len(ct) < 16:
            raise MalformedMessage("key parameters payload length mismatch")
        return cls("protected", msg_type, date_time, dppk_id, iv, ct)

    def decrypt(self, dppk: bytes, data: bytes) -> KeyParameters:
        """Decrypt with DPCK from the SAKKE key (``data`` = the extension octets, for the AAD)."""
        if self.clear is not None:
            return self.clear
        aad = data[:12] + self.iv + self.dppk_id.to_bytes(4, "big")
        try:
            plain = AESGCM(dpck(dppk, self.dppk_id)).decrypt(self.iv, self.ciphertext, aad)
        except InvalidTag:
            raise MikeyError("key parameters do not decrypt under the transported key (GCM tag mismatch)") from None
        return KeyParameters.decode(plain)


def protect_key_parameters(params: KeyParameters, dppk: bytes, dppk_id: int, iv: bytes | None = None) -> bytes:
    """Streamwide-style protected payload (msg type 0x43, date-time 1) for GENERAL EXTENSION 7."""
    iv = secrets.token_bytes(16) if iv is None else iv
    head = bytes([MSG_TYPE_STREAMWIDE]) + (1).to_bytes(5, "big") + bytes(5) + bytes([ALG_AES_128_GCM])
    aad = head + iv + dppk_id.to_bytes(4, "big")
    ct = AESGCM(dpck(dppk, dppk_id)).encrypt(iv, params.encode(), aad)
    return aad + b"\x00" + len(ct).to_bytes(2, "big") + ct
