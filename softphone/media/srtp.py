"""SRTP/SRTCP protection through pylibsrtp (RFC 3711; AEAD_AES_128_GCM per RFC 7714).

Keys are handed in (from MIKEY or SDES). pylibsrtp exposes no MKI, so for the AEAD suites the MKI is
appended after the tag (SRTCP: after E‖index) and checked and stripped on receive, which is where
libsrtp's ``srtp_protect_aead`` puts it (specs/SDP-SRTP.md §2–3). AES-CM suites put the MKI before the
tag, which cannot be done from outside libsrtp, so they are refused with an MKI.

Unprotect failures never raise into the audio path: :meth:`SrtpReceiver.unprotect` returns ``None``
and counts the reason in :attr:`SrtpReceiver.failures`.
"""

from __future__ import annotations

import enum
from collections import Counter

import pylibsrtp

from softphone.media.errors import MediaError


class SrtpError(MediaError, ValueError):
    """Bad SRTP parameters (key/salt lengths, MKI with an unsupported suite)."""


class SrtpSuite(enum.Enum):
    """Supported crypto suites: (pylibsrtp profile, key octets, salt octets, AEAD?)."""

    AEAD_AES_128_GCM = (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12, True)
    AES_CM_128_HMAC_SHA1_80 = (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14, False)

    @property
    def profile(self) -> int:
        return self.value[0]

    @property
    def key_len(self) -> int:
        return self.value[1]

    @property
    def salt_len(self) -> int:
        return self.value[2]

    @property
    def aead(self) -> bool:
        return self.value[3]

    @classmethod
    def from_name(cls, name: str) -> SrtpSuite:
        """The suite for an SDES/SDP name such as ``AEAD_AES_128_GCM``."""
        try:
            return cls[name]
        except KeyError:
            raise SrtpError(f"unsupported SRTP crypto suite {name!r}") from None


class FailureReason(enum.StrEnum):
    """Why an incoming SRTP/SRTCP packet was dropped."""

    AUTH = "auth_failed"
    REPLAY = "replay"
    MKI = "mki_mismatch"
    MALFORMED = "malformed"


def _reason(exc: pylibsrtp.Error) -> FailureReason:
    text = str(exc)
    if "replay" in text or "too old" in text:
        return FailureReason.REPLAY
    if "authentication" in text or "cipher" in text:
        return FailureReason.AUTH
    return FailureReason.MALFORMED


def _check(suite: SrtpSuite, key: bytes, salt: bytes, mki: bytes | None) -> None:
    if len(key) != suite.key_len or len(salt) != suite.salt_len:
        raise SrtpError(
            f"{suite.name} needs a {suite.key_len}-octet key and {suite.salt_len}-octet salt, "
            f"got {len(key)} and {len(salt)}"
        )
    if mki is not None:
        if not suite.aead:
            raise SrtpError(f"MKI is only supported with AEAD suites, not {suite.name}")
        if not 1 <= len(mki) <= 128:
            raise SrtpError(f"MKI must be 1..128 octets, got {len(mki)}")


class SrtpSender:
    """Outbound SRTP/SRTCP for one direction (any local SSRC)."""

    def __init__(self, suite: SrtpSuite, key: bytes, salt: bytes, mki: bytes | None = None) -> None:
        _check(suite, key, salt, mki)
        self.suite = suite
        self._mki = mki or b""
        policy = pylibsrtp.Policy(key=bytes(key + salt), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                  srtp_profile=suite.profile)
        self._session = pylibsrtp.Session(policy)

    def __repr__(self) -> str:
        return f"SrtpSender(suite={self.suite.name}, mki={'yes' if self._mki else 'no'})"

    def protect(self, rtp: bytes) -> bytes:
        """RTP → SRTP (RFC 3711 §3.3 / RFC 7714 §8)."""
        return self._session.protect(rtp) + self._mki

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """Compound RTCP → SRTCP (RFC 3711 §3.4 / RFC 7714 §9)."""
        return self._session.protect_rtcp(rtcp) + self._mki


class SrtpReceiver:
    """Inbound SRTP/SRTCP for one direction (any remote SSRC); replay-protected, failures counted."""

    def __init__(self, suite: SrtpSuite, key: bytes, salt: bytes, mki: bytes | None = None) -> None:
        _check(suite, key, salt, mki)
        self.suite = suite
        self._mki = mki or b""
        policy = pylibsrtp.Policy(key=bytes(key + salt), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=suite.profile)
        self._session = pylibsrtp.Session(policy)
        self.failures: Counter[str] = Counter()
        self.rtcp_failures: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"SrtpReceiver(suite={self.suite.name}, mki={'yes' if self._mki else 'no'})"

    def _strip_mki(self, data: bytes, counter: Counter[str]) -> bytes | None:
        if not self._mki:
            return data
        n = len(self._mki)
        if len(data) <= n or data[-n:] != self._mki:
            counter[FailureReason.MKI.value] += 1
            return None
        return data[:-n]

    def unprotect(self, srtp: bytes) -> bytes | None:
        """SRTP → RTP, or ``None`` (counted in :attr:`failures`) for forged, replayed or malformed input."""
        data = self._strip_mki(srtp, self.failures)
        if data is None:
            return None
        if len(data) < 12 + 4:
            self.failures[FailureReason.MALFORMED.value] += 1
            return None
        try:
            return self._session.unprotect(data)
        except pylibsrtp.Error as exc:
            self.failures[_reason(exc).value] += 1
            return None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes | None:
        """SRTCP → RTCP, or ``None`` (counted in :attr:`rtcp_failures`)."""
        data = self._strip_mki(srtcp, self.rtcp_failures)
        if data is None:
            return None
        if len(data) < 8 + 4 + 4:
            self.rtcp_failures[FailureReason.MALFORMED.value] += 1
            return None
        try:
            return self._session.unprotect_rtcp(data)
        except pylibsrtp.Error as exc:
            self.rtcp_failures[_reason(exc).value] += 1
            return None
