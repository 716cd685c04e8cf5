"""The payloads of a MIKEY-SAKKE I_MESSAGE, one class each, with their octet layouts.

HDR (RFC 3830 §6.1, CS ID map types 0 SRTP-ID / 1 empty (TS 33.180 E.1.2) / 2 GENERIC-ID
(RFC 6043 §6.1.1)), T (RFC 3830 §6.6), RAND (§6.11), IDR (RFC 6043 §6.6), SP (RFC 3830 §6.10),
SAKKE (RFC 6509 §4.2), GENERAL EXTENSION (RFC 3830 §6.15) and SIGN (RFC 3830 §6.5).

Every payload but HDR and SIGN starts with a next-payload octet naming the type of the *following*
payload (0 = last); the chain itself is walked by :mod:`crypto.mikey.message`. ``encode(next_type)``
writes a payload, ``decode(reader)`` returns ``(payload, next_type)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from crypto.mikey.errors import MalformedMessage

# Payload type numbers (RFC 3830 §6.1 table, RFC 6043, RFC 6509).
PT_LAST = 0
PT_KEMAC = 1
PT_PKE = 2
PT_DH = 3
PT_SIGN = 4
PT_T = 5
PT_ID = 6
PT_CERT = 7
PT_CHASH = 8
PT_V = 9
PT_SP = 10
PT_RAND = 11
PT_ERR = 12
PT_IDR = 14
PT_KEY_DATA = 20
PT_GENERAL_EXT = 21
PT_SAKKE = 26

PAYLOAD_NAMES = {
    PT_KEMAC: "KEMAC", PT_PKE: "PKE", PT_DH: "DH", PT_SIGN: "SIGN", PT_T: "T", PT_ID: "ID",
    PT_CERT: "CERT", PT_CHASH: "CHASH", PT_V: "V", PT_SP: "SP", PT_RAND: "RAND", PT_ERR: "ERR",
    PT_IDR: "IDR", PT_KEY_DATA: "KEY DATA", PT_GENERAL_EXT: "GENERAL EXTENSION", PT_SAKKE: "SAKKE",
}

DATA_TYPE_SAKKE = 26        # RFC 6509 §4.1: SAKKE I_MESSAGE
DATA_TYPE_SAKKE_RESP = 27   # non-standard sw_mikey_sakke "response" (HDR only); parsed, never processed
PRF_HMAC_SHA_256 = 1        # RFC 6043 §6.1

MAP_SRTP_ID = 0
MAP_EMPTY = 1
MAP_GENERIC_ID = 2

TS_NTP_UTC = 0
TS_NTP = 1
TS_COUNTER = 2

ROLE_NAMES = {1: "IDRi", 2: "IDRr", 3: "IDRkms", 4: "IDRpsk", 5: "IDRapp", 6: "IDRkmsi", 7: "IDRkmsr",
              8: "IDRuidi", 9: "IDRuidr"}
ROLE_IDRI, ROLE_IDRR, ROLE_KMSI, ROLE_KMSR, ROLE_UIDI, ROLE_UIDR = 1, 2, 6, 7, 8, 9
ID_TYPE_NAI, ID_TYPE_URI, ID_TYPE_BYTES = 0, 1, 2

SAKKE_PARAMS_1 = 1          # RFC 6508 parameter set 1
ID_SCHEME_TEL_URI = 1       # RFC 6509 tel URI with monthly keys
ID_SCHEME_3GPP_UID = 2      # TS 33.180 F.2.1 hashed UID

SIGN_ECCSI = 2              # RFC 6509 §4.3: S type 2

GENEXT_VENDOR = 0
GENEXT_SDP_IDS = 1
GENEXT_SAKKE_TO_SELF = 6    # TS 33.180 E.5
GENEXT_KEY_PARAMETERS = 7   # TS 33.180 E.6


class Reader:
    """Bounds-checked cursor over the message octets; running short is :class:`MalformedMessage`."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise MalformedMessage(f"truncated {what} at offset {self.pos}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


def _u8(v: int, what: str) -> bytes:
    if not 0 <= v <= 0xFF:
        raise MalformedMessage(f"{what} must fit one octet")
    return bytes([v])


def _u16(v: int, what: str) -> bytes:
    if not 0 <= v <= 0xFFFF:
        raise MalformedMessage(f"{what} must fit two octets")
    return v.to_bytes(2, "big")


def _u32(v: int, what: str) -> bytes:
    if not 0 <= v <= 0xFFFFFFFF:
        raise MalformedMessage(f"{what} must fit four octets")
    return v.to_bytes(4, "big")


# --- HDR -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SrtpIdEntry:
    """CS ID map type 0 entry (RFC 3830 §6.1.1): CS ID = position (1-based) in the map."""

    policy_no: int
    ssrc: int
    roc: int

    def encode(self) -> bytes:
        return _u8(self.policy_no, "policy_no") + _u32(self.ssrc, "SSRC") + _u32(self.roc, "ROC")

    def fields(self) -> dict[str, Any]:
        return {"policy_no": self.policy_no, "ssrc": f"{self.ssrc:08x}", "roc": self.roc}


@dataclass(frozen=True)
class GenericIdEntry:
    """CS ID map type 2 entry (RFC 6043 §6.1.1); ``spi`` is the SRTP MKI (TS 33.180 E.1.2)."""

    cs_id: int
    prot_type: int = 0
    s_flag: bool = False
    policies: tuple[int, ...] = (0,)
    session_data: bytes = b""
    spi: bytes = b""

    def encode(self) -> bytes:
        if len(self.policies) > 0x7F:
            raise MalformedMessage("too many policies in a GENERIC-ID entry")
        return (
            _u8(self.cs_id, "CS ID") + _u8(self.prot_type, "prot type")
            + bytes([(0x80 if self.s_flag else 0) | len(self.policies)])
            + b"".join(_u8(p, "policy") for p in self.policies)
            + _u16(len(self.session_data), "session data length") + self.session_data
            + _u8(len(self.spi), "SPI length") + self.spi
        )

    @classmethod
    def decode(cls, r: Reader) -> GenericIdEntry:
        cs_id = r.u8("GENERIC-ID CS ID")
        prot = r.u8("GENERIC-ID prot type")
        sp = r.u8("GENERIC-ID S/#P")
        policies = tuple(r.take(sp & 0x7F, "GENERIC-ID policies"))
        session = r.take(r.u16("GENERIC-ID session data length"), "GENERIC-ID session data")
        spi = r.take(r.u8("GENERIC-ID SPI length"), "GENERIC-ID SPI")
        return cls(cs_id, prot, bool(sp & 0x80), policies, session, spi)

    def fields(self) -> dict[str, Any]:
        return {"cs_id": self.cs_id, "prot_type": self.prot_type, "s": self.s_flag,
                "policies": list(self.policies), "session_data": self.session_data.hex(), "spi": self.spi.hex()}


CsEntry = SrtpIdEntry | GenericIdEntry


@dataclass(frozen=True)
class Header:
    """HDR (RFC 3830 §6.1): version, data type, V flag, PRF, CSB ID and the CS ID map."""

    csb_id: int
    map_type: int = MAP_EMPTY
    entries: tuple[CsEntry, ...] = ()
    data_type: int = DATA_TYPE_SAKKE
    version: int = 1
    v_flag: bool = False
    prf: int = PRF_HMAC_SHA_256

    def encode(self, next_type: int) -> bytes:
        if self.map_type == MAP_EMPTY and self.entries:
            raise MalformedMessage("an empty CS ID map (type 1) cannot carry entries")
        want = SrtpIdEntry if self.map_type == MAP_SRTP_ID else GenericIdEntry
        if self.map_type not in (MAP_SRTP_ID, MAP_EMPTY, MAP_GENERIC_ID) or not all(
            isinstance(e, want) for e in self.entries
        ):
            raise MalformedMessage("CS ID map entries do not match the map type")
        return (
            _u8(self.version, "version") + _u8(self.data_type, "data type") + _u8(next_type, "next payload")
            + bytes([(0x80 if self.v_flag else 0) | (self.prf & 0x7F)]) + _u32(self.csb_id, "CSB ID")
            + _u8(len(self.entries), "#CS") + bytes([self.map_type])
            + b"".join(e.encode() for e in self.entries)
        )

    @classmethod
    def decode(cls, r: Reader) -> tuple[Header, int]:
        version = r.u8("HDR")
        if version != 1:
            raise MalformedMessage(f"unsupported MIKEY version {version} (expected 1)")
        data_type = r.u8("HDR data type")
        next_type = r.u8("HDR next payload")
        vprf = r.u8("HDR V/PRF")
        csb_id = r.u32("HDR CSB ID")
        n_cs = r.u8("HDR #CS")
        map_type = r.u8("HDR CS ID map type")
        entries: list[CsEntry] = []
        if map_type == MAP_SRTP_ID:
            for _ in range(n_cs):
                entries.append(SrtpIdEntry(r.u8("SRTP-ID map"), r.u32("SRTP-ID map SSRC"), r.u32("SRTP-ID map ROC")))
        elif map_type == MAP_EMPTY:
            if n_cs:
                raise MalformedMessage(f"empty CS ID map (type 1) announces {n_cs} crypto sessions")
        elif map_type == MAP_GENERIC_ID:
            entries = [GenericIdEntry.decode(r) for _ in range(n_cs)]
        else:
            raise MalformedMessage(f"unknown CS ID map type {map_type}")
        return cls(csb_id, map_type, tuple(entries), data_type, version, bool(vprf & 0x80), vprf & 0x7F), next_type

    def fields(self) -> dict[str, Any]:
        return {"version": self.version, "data_type": self.data_type, "v": self.v_flag, "prf": self.prf,
                "csb_id": f"{self.csb_id:08x}", "cs_count": len(self.entries), "map_type": self.map_type,
                "map": [e.fields() for e in self.entries]}


# --- T, RAND, IDR ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Timestamp:
    """T (RFC 3830 §6.6): NTP-UTC / NTP (64-bit seconds.fraction) or a 32-bit COUNTER."""

    TYPE: ClassVar[int] = PT_T
    value: int
    ts_type: int = TS_NTP_UTC

    @staticmethod
    def _size(ts_type: int) -> int:
        if ts_type in (TS_NTP_UTC, TS_NTP):
            return 8
        if ts_type == TS_COUNTER:
            return 4
        raise MalformedMessage(f"unknown timestamp type {ts_type}")

    @classmethod
    def from_ntp(cls, seconds: int, fraction: int = 0) -> Timestamp:
        return cls((seconds << 32) | fraction, TS_NTP_UTC)

    @property
    def seconds(self) -> int:
        """NTP seconds (for the NTP types)."""
        return self.value >> 32 if self.ts_type != TS_COUNTER else self.value

    def encode(self, next_type: int) -> bytes:
        size = self._size(self.ts_type)
        if not 0 <= self.value < 1 << (8 * size):
            raise MalformedMessage("timestamp value out of range")
        return bytes([next_type, self.ts_type]) + self.value.to_bytes(size, "big")

    @classmethod
    def decode(cls, r: Reader) -> tuple[Timestamp, int]:
        next_type = r.u8("T payload")
        ts_type = r.u8("T payload")
        value = int.from_bytes(r.take(cls._size(ts_type), "T value"), "big")
        return cls(value, ts_type), next_type

    def fields(self) -> dict[str, Any]:
        return {"ts_type": self.ts_type, "value": f"{self.value:016x}"}


@dataclass(frozen=True)
class Rand:
    """RAND (RFC 3830 §6.11): octets used verbatim in the KDF label."""

    TYPE: ClassVar[int] = PT_RAND
    data: bytes

    def encode(self, next_type: int) -> bytes:
        if not 1 <= len(self.data) <= 0xFF:
            raise MalformedMessage("RAND must be 1..255 octets")
        return bytes([next_type, len(self.data)]) + self.data

    @classmethod
    def decode(cls, r: Reader) -> tuple[Rand, int]:
        next_type = r.u8("RAND payload")
        length = r.u8("RAND payload")
        if length == 0:
            raise MalformedMessage("RAND payload is empty")
        return cls(r.take(length, "RAND")), next_type

    def fields(self) -> dict[str, Any]:
        return {"rand": self.data.hex()}


@dataclass(frozen=True)
class Idr:
    """IDR (RFC 6043 §6.6): an identity with its role (initiator/responder URI or UID, KMS URIs)."""

    TYPE: ClassVar[int] = PT_IDR
    role: int
    data: bytes
    id_type: int = ID_TYPE_URI

    def encode(self, next_type: int) -> bytes:
        return bytes([next_type]) + _u8(self.role, "ID role") + _u8(self.id_type, "ID type") + _u16(
            len(self.data), "ID length") + self.data

    @classmethod
    def decode(cls, r: Reader) -> tuple[Idr, int]:
        next_type = r.u8("IDR payload")
        role = r.u8("IDR role")
        id_type = r.u8("IDR ID type")
        data = r.take(r.u16("IDR length"), "IDR data")
        return cls(role, data, id_type), next_type

    def text(self) -> str:
        """The identity as text when printable (URIs; a NUL terminator is dropped), else hex."""
        raw = self.data[:-1] if self.data.endswith(b"\x00") else self.data
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self.data.hex()
        return s if s and s.isprintable() else self.data.hex()

    def fields(self) -> dict[str, Any]:
        return {"role": ROLE_NAMES.get(self.role, str(self.role)), "id_type": self.id_type, "id": self.text()}


# --- SP ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecurityPolicy:
    """SP (RFC 3830 §6.10): SRTP policy parameters as (type, value) pairs, in wire order."""

    TYPE: ClassVar[int] = PT_SP
    policy_no: int
    params: tuple[tuple[int, bytes], ...]
    prot_type: int = 0

    def encode(self, next_type: int) -> bytes:
        body = b"".join(_u8(t, "SP param type") + _u8(len(v), "SP param length") + v for t, v in self.params)
        return bytes([next_type]) + _u8(self.policy_no, "policy_no") + _u8(self.prot_type, "prot type") + _u16(
            len(body), "SP length") + body

    @classmethod
    def decode(cls, r: Reader) -> tuple[SecurityPolicy, int]:
        next_type = r.u8("SP payload")
        policy_no = r.u8("SP policy_no")
        prot = r.u8("SP prot type")
        body = Reader(r.take(r.u16("SP length"), "SP parameters"))
        params = []
        while body.remaining:
            ptype = body.u8("SP parameter")
            params.append((ptype, body.take(body.u8("SP parameter length"), "SP parameter value")))
        return cls(policy_no, tuple(params), prot), next_type

    def as_dict(self) -> dict[int, int]:
        return {t: int.from_bytes(v, "big") for t, v in self.params}

    def fields(self) -> dict[str, Any]:
        return {"policy_no": self.policy_no, "prot_type": self.prot_type,
                "params": {str(t): v.hex() for t, v in self.params}}


# --- SAKKE, GENERAL EXTENSION, SIGN ---------------------------------------------------------

@dataclass(frozen=True)
class SakkePayload:
    """SAKKE (RFC 6509 §4.2): parameter set, identifier scheme and the SED."""

    TYPE: ClassVar[int] = PT_SAKKE
    sed: bytes
    params: int = SAKKE_PARAMS_1
    id_scheme: int = ID_SCHEME_3GPP_UID

    def encode(self, next_type: int) -> bytes:
        return bytes([next_type]) + _u8(self.params, "SAKKE params") + _u8(self.id_scheme, "ID scheme") + _u16(
            len(self.sed), "SAKKE data length") + self.sed

    @classmethod
    def decode(cls, r: Reader) -> tuple[SakkePayload, int]:
        next_type = r.u8("SAKKE payload")
        params = r.u8("SAKKE params")
        scheme = r.u8("SAKKE ID scheme")
        sed = r.take(r.u16("SAKKE data length"), "SAKKE data")
        return cls(sed, params, scheme), next_type

    def fields(self) -> dict[str, Any]:
        return {"params": self.params, "id_scheme": self.id_scheme, "sed_length": len(self.sed),
                "sed": self.sed.hex()}


@dataclass(frozen=True)
class GeneralExtension:
    """GENERAL EXTENSION (RFC 3830 §6.15): type and data kept as bytes."""

    TYPE: ClassVar[int] = PT_GENERAL_EXT
    ext_type: int
    data: bytes

    def encode(self, next_type: int) -> bytes:
        return bytes([next_type]) + _u8(self.ext_type, "extension type") + _u16(
            len(self.data), "extension length") + self.data

    @classmethod
    def decode(cls, r: Reader) -> tuple[GeneralExtension, int]:
        next_type = r.u8("GENERAL EXTENSION payload")
        ext_type = r.u8("GENERAL EXTENSION type")
        data = r.take(r.u16("GENERAL EXTENSION length"), "GENERAL EXTENSION data")
        return cls(ext_type, data), next_type

    def fields(self) -> dict[str, Any]:
        return {"ext_type": self.ext_type, "length": len(self.data), "data": self.data.hex()}


@dataclass(frozen=True)
class Sign:
    """SIGN (RFC 3830 §6.5): 4-bit S type, 12-bit length, signature. Always last; no next payload."""

    TYPE: ClassVar[int] = PT_SIGN
    signature: bytes
    s_type: int = SIGN_ECCSI

    def header(self) -> bytes:
        if not 0 <= self.s_type <= 0xF or len(self.signature) > 0xFFF:
            raise MalformedMessage("SIGN type or length out of range")
        return bytes([(self.s_type << 4) | (len(self.signature) >> 8), len(self.signature) & 0xFF])

    def encode(self, next_type: int = PT_LAST) -> bytes:
        return self.header() + self.signature

    @classmethod
    def decode(cls, r: Reader) -> tuple[Sign, int]:
        first = r.u8("SIGN payload")
        length = ((first & 0x0F) << 8) | r.u8("SIGN payload")
        return cls(r.take(length, "SIGN signature"), first >> 4), PT_LAST

    def fields(self) -> dict[str, Any]:
        return {"s_type": self.s_type, "length": len(self.signature), "signature": self.signature.hex()}


Payload = Timestamp | Rand | Idr | SecurityPolicy | SakkePayload | GeneralExtension | Sign

DECODERS: dict[int, Any] = {
    PT_T: Timestamp, PT_RAND: Rand, PT_IDR: Idr, PT_SP: SecurityPolicy, PT_SAKKE: SakkePayload,
    PT_GENERAL_EXT: GeneralExtension, PT_SIGN: Sign,
}


def payload_name(p: Header | Payload) -> str:
    return "HDR" if isinstance(p, Header) else PAYLOAD_NAMES[p.TYPE]
