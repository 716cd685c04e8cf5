"""SDP offer/answer for one secure audio stream (RFC 3264) keyed by MIKEY-SAKKE or SDES.

Sans-IO: profiles, key material and SDP bytes in, :class:`Negotiated` (what the media session
needs) out. MIKEY-SAKKE (RFC 6509, TS 33.180 §7.4, SDP-SRTP.md §1 and §5): the offer carries a PCK
I_MESSAGE in ``a=key-mgmt:mikey``; the answer carries no MIKEY response; the initiator sends
with the CS ID 0 keys and receives with CS ID 1, MKI = the PCK-ID. SDES (RFC 4568, RFC 7714):
each side's ``a=crypto`` key protects what that side sends. Every refusal is a
:class:`NegotiationError` with the SIP status (488) and a Warning text that names the reason and
never contains key material.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from crypto.errors import CryptoError
from crypto.identity import ntp_seconds
from crypto.kdf import SrtpMaster
from crypto.mikey import errors as mikey_errors
from crypto.mikey.build import Initiator
from crypto.mikey.sdp import add_key_mgmt, find_key_mgmt
from crypto.mikey.verify import Responder, VerifiedMessage
from softphone.calls import sdes
from softphone.calls.errors import CallError
from softphone.calls.events import PeerAssurance
from softphone.calls.profile import Keying, Profile, SecurityLevel
from softphone.media.codecs import CodecSpec
from softphone.media.session import SrtpKeys
from softphone.media.srtp import SrtpSuite
from softphone.sip.errors import ParseError
from softphone.sip.grammar import is_ascii_digits
from softphone.sip.ice import IceDescription, add_ice, read_ice
from softphone.sip.sdp import DIRECTIONS, Attributes, Media, SessionDescription, connection_line, reverse_direction

TELEPHONE_EVENT_PT = 101
# profile codec name -> (our payload type, rtpmap encoding, codec name used by the media engine, channels)
CODEC_TABLE: dict[str, tuple[int, str, str, int]] = {
    "opus/48000/2": (111, "opus/48000/2", "opus", 2),
    "PCMU/8000": (0, "PCMU/8000", "PCMU", 1),
    "PCMA/8000": (8, "PCMA/8000", "PCMA", 1),
}
_STATIC = {"0": "pcmu/8000", "8": "pcma/8000"}
SECURE_PROTOS = ("RTP/SAVP", "RTP/SAVPF")


class NegotiationError(CallError):
    """The offer or answer is unusable: ``status`` is the SIP response to send (488), ``warning`` says why."""

    def __init__(self, warning: str, status: int = 488) -> None:
        super().__init__(warning)
        self.warning = warning
        self.status = status


def mikey_reason(exc: CryptoError) -> str:
    """A short Warning text for a refused I_MESSAGE (named reason first, then the detail)."""
    names = {
        mikey_errors.SignatureRejected: "bad signature",
        mikey_errors.IdentityMismatch: "unknown identity",
        mikey_errors.ExpiredKeyPeriod: "expired key period",
        mikey_errors.StaleTimestamp: "expired timestamp",
        mikey_errors.ReplayedMessage: "replay",
        mikey_errors.KeyUnwrapFailed: "key unwrap failed",
        mikey_errors.MalformedMessage: "malformed I_MESSAGE",
        mikey_errors.UnsupportedMessage: "unsupported I_MESSAGE",
    }
    name = next((v for k, v in names.items() if isinstance(exc, k)), "invalid I_MESSAGE")
    return f"MIKEY-SAKKE {name}: {exc}"


@dataclass(frozen=True)
class Negotiated:
    """The agreed audio stream: where to send, codec, SRTP keys (secret), and who the peer is."""

    remote_addr: tuple[str, int]
    codec: CodecSpec
    dtmf_payload_type: int | None
    srtp: SrtpKeys = field(repr=False)
    direction: str
    security: SecurityLevel          # SECURE (MIKEY-SAKKE) or SDES_INTEROP
    peer_identity: str | None        # MIKEY-SAKKE: who the keys belong to (how sure: peer_assurance), else None
    key_id: str | None               # PCK-ID (hex) for MIKEY-SAKKE
    peer_assurance: PeerAssurance | None = None  # KEYED_TO (we offered) or VERIFIED_BY_ECCSI (we verified)
    ice: IceDescription | None = field(default=None, repr=False)  # the peer's ICE attributes (RFC 8839), if any

    @property
    def suite(self) -> str:
        return self.srtp.suite.name

    @property
    def security_label(self) -> str:
        """How every UI names the call: only MIKEY-SAKKE calls are Secure Chorus."""
        return self.security.label


def _audio(sdp: SessionDescription) -> Media:
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return m
    raise NegotiationError("no active audio stream in the SDP")


def _remote_addr(sdp: SessionDescription, media: Media) -> tuple[str, int]:
    addr = sdp.connection_address(media)
    if not addr:
        raise NegotiationError("SDP has no connection address for audio")
    return addr, media.port


def _max_average_bitrate(params: str | None) -> int | None:
    """Opus ``maxaveragebitrate`` from an ``a=fmtp`` parameter list (RFC 7587 §6.1: 6000-510000 bit/s); a
    malformed or out-of-range value is ignored, as an unknown parameter would be."""
    for param in (params or "").split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "maxaveragebitrate":
            value = value.strip()
            if is_ascii_digits(value) and len(value) <= 6 and 6000 <= int(value) <= 510000:
                return int(value)
    return None


def _pick_codec(media: Media, profile: Profile) -> tuple[CodecSpec, int | None]:
    """The first offered format (offerer's order) that the profile allows, and telephone-event's PT."""
    allowed = {"/".join(CODEC_TABLE[c][1].lower().split("/")[:2]): c for c in profile.codecs}
    rtpmap = media.rtpmap()
    codec: CodecSpec | None = None
    dtmf: int | None = None
    for pt in media.formats:
        enc = rtpmap.get(pt, _STATIC.get(pt, "")).lower()
        name_clock = "/".join(enc.split("/")[:2])
        if name_clock == "telephone-event/8000" and profile.telephone_event and is_ascii_digits(pt) and len(pt) <= 3:
            dtmf = int(pt) if dtmf is None else dtmf
        elif codec is None and name_clock in allowed and is_ascii_digits(pt) and len(pt) <= 3:
            _, _, name, channels = CODEC_TABLE[allowed[name_clock]]
            clock = 48000 if name == "opus" else 8000
            cap = _max_average_bitrate(media.fmtp(pt)) if name == "opus" else None
            codec = CodecSpec(int(pt), name, clock, channels, max_bitrate=cap)
    if codec is None:
        raise NegotiationError("no common audio codec (we offer " + ", ".join(profile.codecs) + ")")
    return codec, dtmf


def audio_media(port: int, profile: Profile, *, direction: str = "sendrecv",
                codec: CodecSpec | None = None, dtmf_pt: int | None = TELEPHONE_EVENT_PT) -> Media:
    """``m=audio <port> RTP/SAVP …`` with every profile codec (or just ``codec`` in an answer)."""
    attrs = Attributes()
    formats: list[str] = []
    if codec is not None:
        enc = f"{codec.name}/{codec.clock_rate}" + (f"/{codec.channels}" if codec.channels > 1 else "")
        formats.append(str(codec.payload_type))
        attrs.add("rtpmap", f"{codec.payload_type} {enc}")
        if codec.name == "opus":
            attrs.add("fmtp", f"{codec.payload_type} useinbandfec=1")
    else:
        for name in profile.codecs:
            pt, enc, _, _ = CODEC_TABLE[name]
            formats.append(str(pt))
            attrs.add("rtpmap", f"{pt} {enc}")
            if enc.startswith("opus"):
                attrs.add("fmtp", f"{pt} useinbandfec=1")
    if profile.telephone_event and dtmf_pt is not None:
        formats.append(str(dtmf_pt))
        attrs.add("rtpmap", f"{dtmf_pt} telephone-event/8000")
        attrs.add("fmtp", f"{dtmf_pt} 0-16")
    attrs.add("ptime", str(profile.ptime_ms))
    attrs.add("rtcp-mux")
    attrs.add(direction)
    return Media("audio", port, "RTP/SAVP", formats, attributes=attrs)


def _session(host: str, session_id: int, version: int, media: Media) -> SessionDescription:
    sdp = SessionDescription(origin_user="-", session_id=session_id, session_version=version, address=host,
                             name="securechorus", connection=connection_line(host))
    sdp.media.append(media)
    return sdp


def _described(host: str, session_id: int, version: int, media: Media, ice: LocalIce | None) -> SessionDescription:
    """The SDP for ``media``, with our ICE attributes and their default candidate in ``c=``/``m=`` when
    ``ice`` is given (RFC 8839 §4.2.1.1) beside whatever keying the caller adds."""
    if ice is None:
        return _session(host, session_id, version, media)
    add_ice(media, ice.description)
    media.port = ice.default[1]
    media.attributes.remove("rtcp")
    if ice.rtcp is not None:
        media.attributes.add("rtcp", f"{ice.rtcp[1]} {connection_line(ice.rtcp[0])}")
    return _session(ice.default[0], session_id, version, media)


def parse_sdp(body: bytes) -> SessionDescription:
    try:
        return SessionDescription.parse(body)
    except ParseError as exc:
        raise NegotiationError(f"malformed SDP: {exc}") from None


def _mikey_keys(tx: SrtpMaster, rx: SrtpMaster) -> SrtpKeys:
    """SRTP keys from the two MIKEY-SAKKE PCK-derived masters (MKI = PCK-ID in both directions)."""
    return SrtpKeys(SrtpSuite.AEAD_AES_128_GCM, tx.master_key, tx.master_salt, rx.master_key, rx.master_salt,
                    send_mki=tx.mki, recv_mki=rx.mki)


@dataclass(frozen=True)
class _Described:
    """What an offer or answer says about the audio stream, checked against the profile."""

    sdp: SessionDescription
    media: Media
    codec: CodecSpec
    dtmf: int | None
    remote: tuple[str, int]
    direction: str                   # ours: the reverse of the direction the peer wrote
    ice: IceDescription | None = None

    @classmethod
    def read(cls, body: bytes, profile: Profile, what: str, srtp_mandatory: str) -> _Described:
        """Parse ``body`` (an ``what`` = "offer"/"answer"): active audio over SRTP with a codec we allow."""
        sdp = parse_sdp(body)
        media = _audio(sdp)
        if media.proto not in SECURE_PROTOS:
            raise NegotiationError(f"{what} uses {media.proto}: {srtp_mandatory}")
        codec, dtmf = _pick_codec(media, profile)
        try:
            ice = read_ice(sdp, media)
        except ParseError as exc:
            raise NegotiationError(f"bad ICE attributes in the {what}: {exc}") from None
        return cls(sdp, media, codec, dtmf, _remote_addr(sdp, media), reverse_direction(media.direction), ice)

    def negotiated(self, keys: SrtpKeys, security: SecurityLevel, peer_identity: str | None,
                   key_id: str | None, assurance: PeerAssurance | None = None) -> Negotiated:
        return Negotiated(self.remote, self.codec, self.dtmf, keys, self.direction, security, peer_identity, key_id,
                          assurance, self.ice)


@dataclass(frozen=True)
class LocalIce:
    """Our gathered ICE attributes and the default candidate's address, for the offer or answer."""

    description: IceDescription
    default: tuple[str, int]
    rtcp: tuple[str, int] | None = None  # the RTCP component's default (a=rtcp, RFC 3605) when not muxed


@dataclass
class Offerer:
    """The offering side of one call: builds (re-)offers and applies the answer.

    MIKEY-SAKKE: each :meth:`offer` with ``rekey=True`` (the first one always) makes a new PCK
    I_MESSAGE for ``peer_uri``; offers without rekey (hold/resume) repeat the current one, so the
    keys stay the same.
    """

    profile: Profile
    host: str
    port: int
    peer_uri: str
    initiator: Initiator | None = None
    session_id: int = field(default_factory=lambda: secrets.randbits(31))
    version: int = 0
    _imessage: bytes | None = field(default=None, repr=False)
    _srtp: dict[int, SrtpMaster] | None = field(default=None, repr=False)
    _key_id: int | None = None
    _crypto: list[sdes.CryptoAttribute] = field(default_factory=list, repr=False)
    ice: LocalIce | None = None

    def offer(self, direction: str = "sendrecv", rekey: bool = False) -> bytes:
        """The SDP offer (RFC 3264 §5); a new I_MESSAGE / SDES keys when first made or ``rekey``."""
        if direction not in DIRECTIONS:
            raise ValueError(f"bad direction {direction!r}")
        self.version += 1
        media = audio_media(self.port, self.profile, direction=direction)
        if self.profile.keying is Keying.MIKEY_SAKKE:
            if self._imessage is None or rekey:
                if self.initiator is None:
                    raise NegotiationError("MIKEY-SAKKE needs our key set", 500)
                built = self.initiator.build(self.peer_uri, ntp_time=ntp_seconds())
                self._imessage, self._srtp, self._key_id = built.data, built.srtp, built.key_id
            sdp = _described(self.host, self.session_id, self.version, media, self.ice).encode().decode("ascii")
            level = None if self.profile.key_mgmt_level == "session" else 0
            return add_key_mgmt(sdp, self._imessage, level).encode("ascii")
        if not self._crypto or rekey:
            self._crypto = sdes.make_offer(self.profile.srtp_suites)
        for attr in self._crypto:
            media.attributes.add("crypto", attr.to_sdp_value())
        return _described(self.host, self.session_id, self.version, media, self.ice).encode()

    def apply_answer(self, body: bytes) -> Negotiated:
        """Check the answer (RTP/SAVP, a codec we offered, the SDES line) and derive the keys."""
        got = _Described.read(body, self.profile, "answer", "SRTP is mandatory")
        if self.profile.keying is Keying.MIKEY_SAKKE:
            assert self._srtp is not None and self._key_id is not None
            # nothing from the callee is signed: the keys are only encrypted to its identity
            return got.negotiated(_mikey_keys(self._srtp[0], self._srtp[1]), SecurityLevel.SECURE, self.peer_uri,
                                  f"{self._key_id:08x}", PeerAssurance.KEYED_TO)
        lines = got.media.attributes.get_all("crypto")
        if len(lines) != 1:
            raise NegotiationError("SDES answer must carry exactly one a=crypto line")
        try:
            ours, theirs = sdes.select_answered(self._crypto, lines[0])
        except sdes.SdesError as exc:
            raise NegotiationError(f"SDES: {exc}") from None
        keys = SrtpKeys(SrtpSuite.from_name(ours.suite), ours.master_key, ours.master_salt,
                        theirs.master_key, theirs.master_salt)
        return got.negotiated(keys, SecurityLevel.SDES_INTEROP, None, None)


@dataclass
class Answerer:
    """The answering side: verifies the offer's keys *before* the phone alerts, then answers."""

    profile: Profile
    host: str
    port: int
    responder: Responder | None = None
    session_id: int = field(default_factory=lambda: secrets.randbits(31))
    version: int = 0
    current: Negotiated | None = None
    verified: VerifiedMessage | None = field(default=None, repr=False)
    _answer_crypto: sdes.CryptoAttribute | None = field(default=None, repr=False)
    _offered_crypto: tuple[int, bytes] | None = field(default=None, repr=False)
    ice: LocalIce | None = None  # set when the offer carried ICE and we do ICE too

    def process_offer(self, body: bytes, claimed_sender: str | None) -> Negotiated:
        """Check an (re-)offer and derive keys. A re-offer repeating the current I_MESSAGE keeps the keys;
        a new I_MESSAGE is verified in full and rekeys. Raises :class:`NegotiationError` (488)."""
        got = _Described.read(body, self.profile, "offer", f"SRTP is mandatory in profile {self.profile.name}")
        if self.profile.keying is Keying.MIKEY_SAKKE:
            negotiated = self._mikey(got, claimed_sender)
        else:
            negotiated = self._sdes(got)
        self.current = negotiated
        return negotiated

    def carries_new_key(self, body: bytes) -> bool:
        """True when the (re-)offer ``body`` carries a MIKEY-SAKKE I_MESSAGE this call has not verified yet
        (a rekey: it needs the full ECCSI/SAKKE check); False for SDES and for a repeated I_MESSAGE."""
        if self.profile.keying is not Keying.MIKEY_SAKKE:
            return False
        got = _Described.read(body, self.profile, "offer", f"SRTP is mandatory in profile {self.profile.name}")
        try:
            data = find_key_mgmt(got.sdp.encode().decode("utf-8"), got.sdp.media.index(got.media))
        except CryptoError as exc:
            raise NegotiationError(mikey_reason(exc)) from None
        if data is None:
            raise NegotiationError("MIKEY-SAKKE is mandatory: the offer has no a=key-mgmt:mikey")
        return self.verified is None or data != self.verified.imessage.raw

    def answer_for(self, body: bytes) -> bytes:
        """Our MIKEY-SAKKE SDP answer to the offer ``body`` before its I_MESSAGE is verified (the answer
        carries no MIKEY response, so it does not depend on the keys); the state stays as it was."""
        got = _Described.read(body, self.profile, "offer", f"SRTP is mandatory in profile {self.profile.name}")
        self.version += 1
        media = audio_media(self.port, self.profile, direction=got.direction, codec=got.codec, dtmf_pt=got.dtmf)
        ice = self.ice if got.ice is not None else None
        return _described(self.host, self.session_id, self.version, media, ice).encode()

    def _mikey(self, got: _Described, claimed: str | None) -> Negotiated:
        if self.responder is None:
            raise NegotiationError("MIKEY-SAKKE: no key set for this phone", 500)
        index = got.sdp.media.index(got.media)
        try:
            data = find_key_mgmt(got.sdp.encode().decode("utf-8"), index)
        except CryptoError as exc:
            raise NegotiationError(mikey_reason(exc)) from None
        if data is None:
            raise NegotiationError("MIKEY-SAKKE is mandatory: the offer has no a=key-mgmt:mikey")
        if self.verified is not None and data == self.verified.imessage.raw and self.current is not None:
            verified = self.verified  # hold/resume re-offer: same I_MESSAGE, same keys
        else:
            try:
                verified = self.responder.process(data, now=ntp_seconds(), claimed_sender=claimed)
            except CryptoError as exc:
                raise NegotiationError(mikey_reason(exc)) from None
            if 0 not in verified.srtp or 1 not in verified.srtp:
                raise NegotiationError("MIKEY-SAKKE: I_MESSAGE does not carry a private-call key (PCK)")
        self.verified = verified
        return got.negotiated(_mikey_keys(verified.srtp[1], verified.srtp[0]), SecurityLevel.SECURE,
                              verified.sender_uri, f"{verified.key_id:08x}", PeerAssurance.VERIFIED_BY_ECCSI)

    def _sdes(self, got: _Described) -> Negotiated:
        try:
            offered, ours = sdes.answer(got.media.attributes.get_all("crypto"), self.profile.srtp_suites)
        except sdes.SdesError as exc:
            raise NegotiationError(f"SDES: {exc}") from None
        if (self.current is not None and self._answer_crypto is not None
                and self._offered_crypto == (offered.tag, offered.key_and_salt)):
            ours = self._answer_crypto  # same offered key: keep ours too
        self._answer_crypto = ours
        self._offered_crypto = (offered.tag, offered.key_and_salt)
        keys = SrtpKeys(SrtpSuite.from_name(ours.suite), ours.master_key, ours.master_salt,
                        offered.master_key, offered.master_salt)
        return got.negotiated(keys, SecurityLevel.SDES_INTEROP, None, None)

    def answer(self) -> bytes:
        """Our SDP answer for the last accepted offer."""
        if self.current is None:
            raise NegotiationError("no offer accepted yet", 500)
        self.version += 1
        neg = self.current
        media = audio_media(self.port, self.profile, direction=neg.direction, codec=neg.codec,
                            dtmf_pt=neg.dtmf_payload_type)
        if neg.security is SecurityLevel.SDES_INTEROP and self._answer_crypto is not None:
            media.attributes.add("crypto", self._answer_crypto.to_sdp_value())
        ice = self.ice if neg.ice is not None else None  # ICE only when the offer had it (RFC 8839 §4.2.2)
        return _described(self.host, self.session_id, self.version, media, ice).encode()
