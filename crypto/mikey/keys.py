"""Key types, purpose tags, CS IDs and the key material the builder/verifier take (TS 33.180).

A key ID is 32 bits: the top 4 bits are the purpose tag (§7.4 / MIKEY-SAKKE.md §7.4), the low 28
bits random. :class:`KmsParams` and :class:`UserKeys` are plain values (no I/O): whoever loads KMS
XML or a keystore turns it into these.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import IntEnum

from crypto.identity import mikey_sakke_uid
from crypto.mikey.errors import UnsupportedMessage


class KeyType(IntEnum):
    """Purpose tags of TS 33.180 (key ID top nibble; also the key parameters' key type)."""

    GMK = 0
    PCK = 1
    CSK = 2
    SPK = 3
    MKFC = 4
    MSCCK = 5
    MUSIK = 6


KEY_TYPE_NAMES = {KeyType.MUSIK: "MuSiK"}

# TS 33.180 Table E.1.3-1 (MIKEY-SAKKE.md §8.2): the crypto sessions each key type keys.
CS_IDS: dict[KeyType, tuple[int, ...]] = {
    KeyType.PCK: (0, 1, 2, 3),
    KeyType.GMK: (4, 5),
    KeyType.CSK: (6, 8),
    KeyType.SPK: (6, 8),
    KeyType.MUSIK: (7, 9),
}

CS_PCK_INITIATOR = 0   # MCPTT private call, media sent by the initiator
CS_PCK_RESPONDER = 1   # MCPTT private call, media sent by the receiver


def key_type_name(kt: KeyType) -> str:
    return KEY_TYPE_NAMES.get(kt, kt.name)


def key_type_of(key_id: int) -> KeyType:
    """Purpose tag of a key ID; tags 7..15 are undefined and refused."""
    tag = (key_id >> 28) & 0xF
    try:
        return KeyType(tag)
    except ValueError:
        raise UnsupportedMessage(f"key ID purpose tag {tag} is undefined in TS 33.180") from None


def new_key_id(key_type: KeyType) -> int:
    """A fresh key ID: purpose tag ‖ 28 random bits."""
    return (int(key_type) << 28) | secrets.randbits(28)


IDENTIFIER_UID = "uid"          # TS 33.180 F.2.1: ECCSI/SAKKE identifier = the 32 UID octets
IDENTIFIER_UID_HEX = "uid-hex"  # Airbus KMS (MIKEY-SAKKE.md §10 quirk #9): the 64-char lowercase hex text


@dataclass(frozen=True)
class KmsParams:
    """What a user needs from a KMS certificate (TS 33.180 D.3.2): URI, key period, Z, KPAK."""

    kms_uri: str
    user_key_period: int
    user_key_offset: int
    z: bytes      # SAKKE public key (PubEncKey), 257 octets
    kpak: bytes   # ECCSI public key (PubAuthKey), 65 octets
    identifier_form: str = IDENTIFIER_UID

    def uid(self, uri: str, period_no: int) -> bytes:
        return mikey_sakke_uid(uri, self.kms_uri, self.user_key_period, self.user_key_offset, period_no)

    def crypto_id(self, uid: bytes) -> bytes:
        """The identifier ECCSI and SAKKE use for ``uid`` under this KMS's convention."""
        return uid.hex().encode("ascii") if self.identifier_form == IDENTIFIER_UID_HEX else uid


@dataclass(frozen=True, repr=False)
class UserKeys:
    """One user's key set for one key period: SSK/PVT (to sign) and/or RSK (to receive). Secret."""

    uri: str
    kms: KmsParams
    key_period_no: int
    ssk: bytes = b""
    pvt: bytes = b""
    rsk: bytes = b""

    @property
    def uid(self) -> bytes:
        return self.kms.uid(self.uri, self.key_period_no)

    @property
    def crypto_id(self) -> bytes:
        return self.kms.crypto_id(self.uid)

    def __repr__(self) -> str:
        return (f"UserKeys(uri={self.uri!r}, kms={self.kms.kms_uri!r}, key_period_no={self.key_period_no}, "
                "<secrets redacted>)")
