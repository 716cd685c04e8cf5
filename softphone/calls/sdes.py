"""SDES: SRTP keys in SDP ``a=crypto`` attributes (RFC 4568; AEAD suites from RFC 7714).

Used only by the interop profile, for phones that do not speak MIKEY. The key in each side's
``a=crypto`` line is the key *that side sends with*; the answerer picks one offered line (same
tag, same suite) and supplies its own key. Sans-IO: strings in, objects out.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from softphone.calls.errors import CallError

# suite name -> (master key octets, master salt octets)
SUITES: dict[str, tuple[int, int]] = {
    "AEAD_AES_128_GCM": (16, 12),
    "AEAD_AES_256_GCM": (32, 12),
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
}

_TAG = re.compile(r"^[0-9]{1,9}$")
_LIFETIME = re.compile(r"^(?:2\^[0-9]{1,2}|[0-9]{1,20})$")
_MKI = re.compile(r"^([0-9]{1,20}):([0-9]{1,3})$")


class SdesError(CallError, ValueError):
    """An ``a=crypto`` value is malformed or unusable. The message never contains key material."""


@dataclass(frozen=True)
class CryptoAttribute:
    """One ``a=crypto`` line. ``master_key``/``master_salt`` are secrets: not shown by repr."""

    tag: int
    suite: str
    master_key: bytes = field(repr=False)
    master_salt: bytes = field(repr=False)
    lifetime: str | None = None
    mki_value: int | None = None
    mki_length: int | None = None
    session_params: tuple[str, ...] = ()

    @property
    def key_and_salt(self) -> bytes:
        """``key ‖ salt``, the form libsrtp/pylibsrtp take."""
        return self.master_key + self.master_salt

    @property
    def mki(self) -> bytes | None:
        if self.mki_value is None or self.mki_length is None:
            return None
        return self.mki_value.to_bytes(self.mki_length, "big")

    def to_sdp_value(self) -> str:
        """The attribute value (what follows ``a=crypto:``)."""
        key_params = "inline:" + base64.b64encode(self.key_and_salt).decode("ascii")
        if self.lifetime is not None:
            key_params += f"|{self.lifetime}"
        if self.mki_value is not None:
            key_params += f"|{self.mki_value}:{self.mki_length}"
        parts = [str(self.tag), self.suite, key_params, *self.session_params]
        return " ".join(parts)


def generate(tag: int, suite: str, *, mki: tuple[int, int] | None = None) -> CryptoAttribute:
    """A fresh attribute with a random master key and salt for ``suite``."""
    if suite not in SUITES:
        raise SdesError(f"unsupported SRTP crypto suite {suite}")
    key_len, salt_len = SUITES[suite]
    return CryptoAttribute(
        tag=tag,
        suite=suite,
        master_key=os.urandom(key_len),
        master_salt=os.urandom(salt_len),
        mki_value=mki[0] if mki else None,
        mki_length=mki[1] if mki else None,
    )


def parse(value: str) -> CryptoAttribute:
    """Parse an ``a=crypto`` value: ``<tag> <suite> inline:<b64>[|lifetime][|MKI:len] [params]``."""
    fields = value.split()
    if len(fields) < 3:
        raise SdesError("a=crypto needs a tag, a crypto suite and key parameters")
    tag_text, suite, key_params, *session_params = fields
    if not _TAG.match(tag_text):
        raise SdesError("a=crypto tag must be 1 to 9 digits")
    if suite not in SUITES:
        raise SdesError(f"unsupported SRTP crypto suite {suite}")
    if ";" in key_params:
        raise SdesError("a=crypto with several key parameters is not supported")
    if not key_params.startswith("inline:"):
        raise SdesError("a=crypto key method must be inline")
    pieces = key_params[len("inline:") :].split("|")
    if len(pieces) > 3:
        raise SdesError("a=crypto key parameter has too many '|' fields")
    try:
        material = base64.b64decode(pieces[0], validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("a=crypto key is not valid base64") from None
    key_len, salt_len = SUITES[suite]
    if len(material) != key_len + salt_len:
        raise SdesError(f"a=crypto key for {suite} must be {key_len + salt_len} octets, got {len(material)}")
    lifetime = mki_value = mki_length = None
    for extra in pieces[1:]:
        mki_match = _MKI.match(extra)
        if mki_match and mki_value is None:
            mki_value, mki_length = int(mki_match.group(1)), int(mki_match.group(2))
            if not 1 <= mki_length <= 128 or mki_value >= 1 << (8 * mki_length):
                raise SdesError("a=crypto MKI value does not fit its length")
        elif _LIFETIME.match(extra) and lifetime is None and mki_value is None:
            lifetime = extra
        else:
            raise SdesError("a=crypto key parameter has a malformed lifetime or MKI")
    return CryptoAttribute(
        tag=int(tag_text),
        suite=suite,
        master_key=material[:key_len],
        master_salt=material[key_len:],
        lifetime=lifetime,
        mki_value=mki_value,
        mki_length=mki_length,
        session_params=tuple(session_params),
    )


def make_offer(suites: tuple[str, ...] | list[str]) -> list[CryptoAttribute]:
    """One attribute per suite, in preference order, tags 1..n."""
    return [generate(i + 1, suite) for i, suite in enumerate(suites)]


def answer(offered_values: list[str],
           acceptable: tuple[str, ...] | list[str]) -> tuple[CryptoAttribute, CryptoAttribute]:
    """Pick the first offered line whose suite we accept (offerer's preference order) and whose
    parameters we support; return ``(offered, ours)`` where ``ours`` carries a fresh key under the
    same tag and suite. Raises :class:`SdesError` when nothing usable was offered."""
    reasons = []
    for value in offered_values:
        try:
            offered = parse(value)
        except SdesError as exc:
            reasons.append(str(exc))
            continue
        if offered.suite not in acceptable:
            reasons.append(f"suite {offered.suite} not acceptable")
            continue
        if offered.session_params:
            reasons.append("session parameters not supported")
            continue
        return offered, generate(offered.tag, offered.suite)
    detail = "; ".join(reasons) if reasons else "no a=crypto offered"
    raise SdesError(f"no acceptable SRTP crypto suite offered ({detail})")


def select_answered(offer: list[CryptoAttribute], answered_value: str) -> tuple[CryptoAttribute, CryptoAttribute]:
    """Offerer side: match the answer's line to our offered line (same tag and suite).
    Returns ``(ours, theirs)``."""
    theirs = parse(answered_value)
    for ours in offer:
        if ours.tag == theirs.tag:
            if ours.suite != theirs.suite:
                raise SdesError(f"answer changed the suite of tag {theirs.tag}")
            return ours, theirs
    raise SdesError(f"answer selected tag {theirs.tag}, which was not offered")
