"""Opening captured SRTP with the keys the analyser derived: the suite and MKI placement found by trial.

A MIKEY-SAKKE key (TS 33.180 §7.4) is used with AEAD_AES_128_GCM and the key ID as a 4-octet MKI
after the tag (where libsrtp puts it); vendors also send AES_CM_128_HMAC_SHA1_80 (MKI before the tag,
which is not authenticated and is cut out before unprotecting) or no MKI. The first packet that
authenticates under one of these fixes the layout for the rest of the stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pylibsrtp

from crypto.kdf import SALT_CONST, mikey_label, mikey_prf
from softphone.media.srtp import SrtpSuite

AES_CM_TAG = 10


class Layout(enum.Enum):
    """Suite and MKI placement of one stream."""

    GCM_MKI = ("AEAD_AES_128_GCM", True)
    GCM = ("AEAD_AES_128_GCM", False)
    AES_CM_MKI = ("AES_CM_128_HMAC_SHA1_80", True)
    AES_CM = ("AES_CM_128_HMAC_SHA1_80", False)

    @property
    def suite(self) -> SrtpSuite:
        return SrtpSuite[self.value[0]]

    @property
    def mki(self) -> bool:
        return self.value[1]


class Outcome(enum.Enum):
    OK = "ok"
    AUTH = "auth_failed"
    REPLAY = "replay"


@dataclass(repr=False)
class StreamKey:
    """One sender's SRTP master key from one keying event; ``salts`` per salt length (12 GCM, 14 AES-CM)."""

    key: bytes
    salts: dict[int, bytes]
    mki: bytes
    key_id: str
    offer_number: int
    start: float       # time of the offer that brought it
    effective: float   # time of the answer: from then on the sender must use it
    layouts: tuple[Layout, ...] | None = None  # fixed by the keying (SDES names its suite), else by trial
    _sessions: dict[Layout, pylibsrtp.Session] = field(default_factory=dict)

    def session(self, layout: Layout) -> pylibsrtp.Session:
        s = self._sessions.get(layout)
        if s is None:
            suite = layout.suite
            policy = pylibsrtp.Policy(key=self.key + self.salts[suite.salt_len],
                                      ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=suite.profile)
            s = self._sessions[layout] = pylibsrtp.Session(policy)
        return s

    def unprotect(self, layout: Layout, data: bytes) -> tuple[Outcome, bytes | None]:
        if layout.mki:
            n = len(self.mki)
            if layout.suite.aead:
                if data[-n:] != self.mki:
                    return Outcome.AUTH, None
                data = data[:-n]
            else:
                if data[-AES_CM_TAG - n:-AES_CM_TAG] != self.mki:
                    return Outcome.AUTH, None
                data = data[:-AES_CM_TAG - n] + data[-AES_CM_TAG:]
        if len(data) < 12 + 4:
            return Outcome.AUTH, None
        try:
            return Outcome.OK, self.session(layout).unprotect(data)
        except pylibsrtp.Error as exc:
            text = str(exc)
            return (Outcome.REPLAY if "replay" in text or "too old" in text else Outcome.AUTH), None


def mikey_stream_key(tgk: bytes, cs_id: int, csb_id: int, rand: bytes, master_key: bytes, master_salt: bytes,
                     mki: bytes, key_id: str, offer_number: int, start: float, effective: float) -> StreamKey:
    """The key of CS ``cs_id``; the 14-octet salt for AES-CM is the same PRF output, two octets longer."""
    salt14 = mikey_prf(tgk, mikey_label(SALT_CONST, cs_id, csb_id, rand), 14)
    return StreamKey(master_key, {12: master_salt, 14: salt14}, mki, key_id, offer_number, start, effective)


def sdes_stream_key(suite: str, master_key: bytes, master_salt: bytes, mki: bytes | None, tag: int,
                    offer_number: int, start: float, effective: float) -> StreamKey:
    """The key of one ``a=crypto`` line (RFC 4568): its suite, and an MKI only if the line has one."""
    layout = next(x for x in Layout if x.value == (suite, mki is not None))
    return StreamKey(master_key, {len(master_salt): master_salt}, mki or b"", f"sdes tag {tag}", offer_number,
                     start, effective, (layout,))


def layout_for(suite: str, mki: bool) -> Layout | None:
    return next((x for x in Layout if x.value == (suite, mki)), None)


@dataclass
class Opened:
    outcome: Outcome
    rtp: bytes | None = None
    key: StreamKey | None = None


def open_packet(data: bytes, keys: list[StreamKey], current: StreamKey,
                layouts: list[Layout]) -> tuple[Opened, Layout | None]:
    """Try ``current`` first, then the other keys (newest first), under each candidate layout."""
    order = [current] + [k for k in reversed(keys) if k is not current]
    for key in order:
        for layout in [x for x in layouts if key.layouts is None or x in key.layouts]:
            outcome, rtp = key.unprotect(layout, data)
            if outcome is Outcome.OK:
                return Opened(Outcome.OK, rtp, key), layout
            if outcome is Outcome.REPLAY:
                return Opened(Outcome.REPLAY, None, key), layout
    return Opened(Outcome.AUTH), None
