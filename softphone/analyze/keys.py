"""Verifying the I_MESSAGEs found in SDP with the tester's KMS XML (the inspector's contract).

Each ``a=key-mgmt:mikey`` is decoded, then verified and opened by the key sets of whichever user is
its responder, judged as of its own timestamp (the age relative to the capture is reported, not
enforced). The result is the inspector's description (:func:`crypto.mikey.inspect.describe`) with
the same error words as ``softphone mikey inspect``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crypto.errors import CryptoError
from crypto.identity import NTP_UNIX_OFFSET
from crypto.mikey.errors import IdentityMismatch, MikeyError
from crypto.mikey.inspect import describe, empty_description
from crypto.mikey.keys import KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.sdp import find_key_mgmt
from crypto.mikey.verify import Responder, VerifiedMessage
from softphone.sip.sdp import SessionDescription


@dataclass
class KeyRing:
    """Key sets by user (each user: one or more key periods); empty: decode only."""

    users: dict[str, list[UserKeys]] = field(default_factory=dict)

    def add(self, keys: list[UserKeys]) -> None:
        for k in keys:
            self.users.setdefault(k.uri, []).append(k)

    @property
    def kms(self) -> list[KmsParams]:
        return list({k[0].kms.kms_uri: k[0].kms for k in self.users.values()}.values())

    def __bool__(self) -> bool:
        return bool(self.users)


@dataclass(repr=False)
class Verdict:
    """One I_MESSAGE: the inspector's description and, if valid, what it established (secret)."""

    description: dict[str, Any]
    verified: VerifiedMessage | None = None


def find_imessage(sdp: SessionDescription) -> bytes | None:
    """The I_MESSAGE of the first audio section (media level, else session level); raises MikeyError."""
    text = sdp.encode().decode("utf-8", "replace")
    index = next((i for i, m in enumerate(sdp.media) if m.media == "audio"), 0)
    return find_key_mgmt(text, index)


def verify(data: bytes, claimed: str | None, ring: KeyRing, capture_time: float) -> Verdict:
    """Decode ``data``; with keys, verify and open it for its responder."""
    now_ntp = int(capture_time) + NTP_UNIX_OFFSET
    try:
        msg = IMessage.parse(data)
    except MikeyError as exc:
        return Verdict(empty_description(str(exc)))
    if not ring:
        return Verdict(describe(msg, now_ntp=now_ntp))
    error: str | None = None
    for keys in ring.users.values():
        responder = Responder(keys, trusted_kms=ring.kms, window_seconds=0, check_replay=False)
        try:
            verified = responder.process(msg, claimed_sender=claimed, now=None)
        except IdentityMismatch as exc:
            if "another receiver" in str(exc):
                error = error or str(exc)
                continue
            error = str(exc)
            break
        except CryptoError as exc:
            error = str(exc)
            break
        return Verdict(describe(msg, verified, now_ntp=now_ntp, show_secrets=True), verified)
    out = describe(msg, now_ntp=now_ntp)
    out.update(valid=False, error=error)
    return Verdict(out)
