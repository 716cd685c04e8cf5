"""The community's signed revocation list: which identities every phone must refuse (docs/REVOCATION.md).

The KMS signs the list with ECCSI (RFC 6507) as the reserved identity :func:`signer_id` — the octets
``softphone-kms revocation list`` NUL ``<KMS URI>`` — under the community's own KPAK. A phone verifies
it with the KPAK of the KmsCertificate it already trusts; nothing new has to be distributed. The KMS
only ever issues user keys for MIKEY-SAKKE UIDs, which are 32 octets (TS 33.180 F.2.1), so no user
can hold a signing key for this longer identifier.

The document is JSON::

    {"format": "softphone-revocations/1", "kms_uri": "kms.example.org",
     "issued": "2026-12-01T22:00:00.000+00:00", "next_update": "2026-12-01T22:15:00.000+00:00",
     "revoked": ["sip:mallory@example.org"], "signature": "<hex ECCSI signature>"}

signed over the canonical JSON of every other member (sorted keys, no spaces, UTF-8). A phone
keeps the newest list it has verified and refuses one issued before it (no rollback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from crypto import eccsi
from crypto.errors import CryptoError
from kmsinterface.errors import KmsInterfaceError

FORMAT = "softphone-revocations/1"
MAX_DOCUMENT = 1 << 20
CONTENT_TYPE = "application/json"


class RevocationListError(KmsInterfaceError):
    """A revocation list is malformed, for another KMS, or its signature does not verify."""


def signer_id(kms_uri: str) -> bytes:
    """The ECCSI identity the KMS signs its revocation list as (never a 32-octet user UID)."""
    return b"softphone-kms revocation list\x00" + kms_uri.encode()


@dataclass(frozen=True)
class RevocationList:
    kms_uri: str
    issued: datetime
    next_update: datetime
    revoked: tuple[str, ...]

    def _fields(self) -> dict:
        return {"format": FORMAT, "kms_uri": self.kms_uri,
                "issued": self.issued.astimezone(UTC).isoformat(timespec="milliseconds"),
                "next_update": self.next_update.astimezone(UTC).isoformat(timespec="milliseconds"),
                "revoked": sorted(set(self.revoked))}

    def to_json(self) -> dict:
        """The unsigned fields (what a keystore keeps once the signature has been checked)."""
        return self._fields()

    @classmethod
    def from_json(cls, d: dict) -> RevocationList:
        try:
            if d.get("format") != FORMAT:
                raise RevocationListError(f"revocation list format {d.get('format')!r} is not {FORMAT}")
            kms_uri, revoked = d["kms_uri"], d["revoked"]
            if not isinstance(kms_uri, str) or not isinstance(revoked, list) or \
                    not all(isinstance(u, str) and u for u in revoked):
                raise RevocationListError("revocation list: kms_uri must be text and revoked a list of URIs")
            issued, next_update = (datetime.fromisoformat(d[k]) for k in ("issued", "next_update"))
        except (KeyError, TypeError, ValueError):
            raise RevocationListError("revocation list is malformed") from None
        if issued.tzinfo is None or next_update.tzinfo is None:
            raise RevocationListError("revocation list times must carry a time zone")
        return cls(kms_uri, issued, next_update, tuple(revoked))


def _canonical(fields: dict) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_revocation_list(rl: RevocationList, ssk: bytes, pvt: bytes, kpak: bytes) -> bytes:
    """The signed document; ``ssk``/``pvt`` were issued by the KMS for :func:`signer_id` ``(rl.kms_uri)``."""
    fields = rl.to_json()
    signature = eccsi.EccsiSigner(signer_id(rl.kms_uri), ssk, pvt, kpak).sign(_canonical(fields))
    return json.dumps({**fields, "signature": signature.hex()}, indent=1, ensure_ascii=False).encode() + b"\n"


def verify_revocation_list(data: bytes, kpak_for: dict[str, bytes]) -> RevocationList:
    """Parse and verify ``data`` under the KPAK of the KMS it names (``kpak_for``: trusted KMS URI → KPAK)."""
    if len(data) > MAX_DOCUMENT:
        raise RevocationListError("revocation list too large")
    try:
        doc = json.loads(data)
        signature = bytes.fromhex(doc.pop("signature"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RevocationListError("revocation list is not a signed JSON document") from None
    rl = RevocationList.from_json(doc)
    kpak = kpak_for.get(rl.kms_uri)
    if kpak is None:
        raise RevocationListError(f"revocation list of KMS {rl.kms_uri}, which this phone does not trust")
    if _canonical(doc) != _canonical(rl.to_json()):
        raise RevocationListError("revocation list has unexpected or duplicated members")
    try:
        eccsi.verify(_canonical(doc), signature, signer_id(rl.kms_uri), kpak)
    except CryptoError:
        raise RevocationListError(f"revocation list signature of KMS {rl.kms_uri} does not verify") from None
    return rl
