"""What happens to calls, as typed values: one frozen dataclass per event (h11 style).

The phone hands every event to its ``on_event`` callback and to :meth:`Phone.events`; a UI matches
on the class (``match ev: case Ringing(): …``). Each event's :meth:`~CallEvent.to_json` is the
object ``softphone call --json`` prints: ``{"event": kind, "call_id": …, …fields}``. No event ever
holds key material.

    Calling → Ringing → [EarlyMedia on a 183 with SDP] → MediaStarted → Answered → PeerSending (outgoing calls)
       … Held / Resumed / Rekeyed (+ MediaStarted, PeerSending) / Dtmf … Ended
    Incoming (the offer verified, ringing; CallWaiting too when a call is up)
    Rejected (refused before alerting, or declined)
    Failed (the call or a rekey failed; Ended follows when the call was up)
    Transfer (REFER progress: transferor, transferee or target side)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

from softphone.calls.profile import SecurityLevel


class PeerAssurance(StrEnum):
    """What a call proves about the peer; the value is ``peer_assurance`` in status and events.

    MIKEY-SAKKE is one-way: the caller's I_MESSAGE is signed (the callee verifies the caller by
    ECCSI) and the key is encrypted to the callee's identity, but nothing the callee sends is
    signed. So a caller knows only that the keys can be decrypted by the callee's identity, then
    that the callee's phone is sending SRTP authenticated under them, never that it was "verified".
    """

    KEYED_TO = "keyed-to"                  # outgoing: keys encrypted to the callee; nothing heard from it yet
    PEER_SENDING = "peer-sending"          # outgoing: SRTP packets authenticated under those keys arrive
    VERIFIED_BY_ECCSI = "verified-by-eccsi"  # incoming: the caller's ECCSI signature verified before ringing
    GROUP_KEYED = "group-keyed"            # group call: media under the group's GMK, members named by GUK-ID


def _user(uri: str) -> str:
    """``sip:bob@example.org`` → ``bob`` (the whole URI if it has no user part)."""
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else uri


def describe_peer(peer: str, assurance: str | None) -> str:
    """The peer as every UI names it, claiming no more than ``assurance`` proves.

    ``keyed to sip:bob@x — only bob can decrypt`` → ``keyed to sip:bob@x — bob's phone is sending`` for an
    outgoing call; ``sip:alice@x (verified by ECCSI)`` for an incoming one; ``(identity not verified)`` else.
    """
    if assurance == PeerAssurance.KEYED_TO:
        return f"keyed to {peer} — only {_user(peer)} can decrypt"
    if assurance == PeerAssurance.PEER_SENDING:
        return f"keyed to {peer} — {_user(peer)}'s phone is sending"
    if assurance == PeerAssurance.VERIFIED_BY_ECCSI:
        return f"{peer} (verified by ECCSI)"
    if assurance == PeerAssurance.GROUP_KEYED:
        return f"group {peer} — group-keyed (every member holds the group key; members not verified)"
    return f"{peer} (identity not verified)"


@dataclass(frozen=True)
class CallKeys:
    """The negotiated security of a call (public facts only: never the keys)."""

    security: SecurityLevel
    label: str                       # SecurityLevel.label, as every UI names the call
    verified_identity: str | None    # MIKEY-SAKKE: the peer identity the keys belong to (see peer_assurance)
    codec: str
    srtp: str                        # SRTP suite name
    key_id: str | None               # PCK-ID (hex) for MIKEY-SAKKE
    peer_assurance: str | None = None  # a PeerAssurance value (MIKEY-SAKKE), else None


@dataclass(frozen=True)
class MediaCounters:
    """Media statistics of a running call."""

    packets_sent: int
    packets_received: int
    loss: float                      # fraction of expected packets lost, 4 decimals
    jitter_ms: float
    srtp_failures: int               # packets dropped by SRTP authentication/replay checks


@dataclass(frozen=True)
class MemberHeard:
    """One group member this phone receives media from. ``member`` is the URI whose GUK-ID the packets' MKI
    carries (None: no listed member has it) — a consistency check, not authentication: every member knows
    the GMK, so ``assurance`` is always ``group-keyed``, never "verified"."""

    member: str | None
    mki: str                         # GMK-ID ‖ GUK-ID (hex)
    packets: int                     # packets that authenticated under that sender's key
    auth_failures: int
    assurance: str = PeerAssurance.GROUP_KEYED.value


@dataclass(frozen=True)
class GroupStatus:
    """A group call's receive side: who is heard, and what could not be opened."""

    group: str
    gmk_id: str                      # the GMK we send under (hex)
    members: tuple[MemberHeard, ...] = ()
    unknown_mki: int = 0             # packets naming a GMK we do not hold (e.g. after we were removed)
    auth_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "gmk_id": self.gmk_id, "unknown_mki": self.unknown_mki,
                "group_auth_failures": self.auth_failures,
                "members_heard": [{f.name: getattr(m, f.name) for f in fields(m)} for m in self.members]}


@dataclass(frozen=True)
class CallStatus:
    """A snapshot of one call, as a status line shows it (:meth:`Call.snapshot`)."""

    state: str                       # the INVITE session state, or "held"
    peer: str
    keys: CallKeys | None = None     # None until the offer/answer completed
    media: MediaCounters | None = None  # None until media started
    group: GroupStatus | None = None    # group calls only
    ice: str | None = None           # the ICE path in use: "host" | "srflx" | "relay"; None without ICE

    @property
    def held(self) -> bool:
        return self.state == "held"

    @property
    def security(self) -> SecurityLevel | None:
        return self.keys.security if self.keys else None

    @property
    def verified_identity(self) -> str | None:
        return self.keys.verified_identity if self.keys else None

    @property
    def key_id(self) -> str | None:
        return self.keys.key_id if self.keys else None

    @property
    def peer_assurance(self) -> str | None:
        return self.keys.peer_assurance if self.keys else None

    def describe_peer(self) -> str:
        """The peer in words that claim no more than :attr:`peer_assurance` (:func:`describe_peer`)."""
        return describe_peer(self.verified_identity or self.peer, self.peer_assurance)

    def to_json(self) -> dict[str, Any]:
        """The flat object ``Call.status()`` returns: state, peer, then the key and media fields if known."""
        out: dict[str, Any] = {"state": self.state, "peer": self.peer}
        for part in (self.keys, self.media):
            if part is not None:
                out.update((f.name, getattr(part, f.name)) for f in fields(part))
        if self.ice is not None:
            out["ice"] = self.ice
        if self.group is not None:
            out.update(self.group.to_json())
        return out


@dataclass(frozen=True)
class CallEvent:
    """The base of every call event: ``kind`` names it in JSON, ``call_id`` is the SIP Call-ID."""

    kind: ClassVar[str]
    call_id: str

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "call_id"}

    @property
    def data(self) -> dict[str, Any]:
        """The event's fields as one JSON-safe dict (what :meth:`to_json` prints after kind and call_id)."""
        return self._fields()

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "call_id": self.call_id, **self._fields()}


@dataclass(frozen=True)
class Calling(CallEvent):
    """The INVITE went out."""

    kind: ClassVar[str] = "calling"
    peer: str
    security: str                    # the profile's security label


@dataclass(frozen=True)
class Ringing(CallEvent):
    """The callee is alerting (180/183)."""

    kind: ClassVar[str] = "ringing"


@dataclass(frozen=True)
class Incoming(CallEvent):
    """An incoming offer verified and the phone is ringing (MIKEY-SAKKE checked before alerting)."""

    kind: ClassVar[str] = "incoming"
    peer: str | None                 # the identity SIP asserts (P-Asserted-Identity or From)
    verified_identity: str | None    # the identity ECCSI verified (MIKEY-SAKKE), else None
    security: str                    # the profile's security label
    codec: str | None = None
    srtp: str | None = None
    key_id: str | None = None
    peer_assurance: str | None = None  # "verified-by-eccsi" when verified_identity is set

    def __post_init__(self) -> None:
        if self.peer_assurance is None and self.verified_identity:
            object.__setattr__(self, "peer_assurance", PeerAssurance.VERIFIED_BY_ECCSI.value)


@dataclass(frozen=True)
class CallWaiting(CallEvent):
    """A second call (``call_id``, already :class:`Incoming` and ringing, 180) arrived while ``active``
    is up: answering it with ``accept(..., hold_others=True)`` puts ``active`` on hold first."""

    kind: ClassVar[str] = "call-waiting"
    peer: str | None
    active: str                      # the Call-ID of the call in progress


@dataclass(frozen=True)
class Transfer(CallEvent):
    """Progress of a call transfer (RFC 3515 REFER, RFC 3891 Replaces) as seen by this phone.

    ``role``: ``transferor`` (we sent the REFER: ``status`` is 202 when accepted, then each NOTIFY's
    sipfrag status), ``transferee`` (the peer asked us to call ``target``: ``status`` is that new call's
    outcome) or ``target`` (an INVITE with Replaces took over this call). ``final`` marks the last
    one; ``new_call_id`` is the call that replaces this one, when known. The new call is keyed afresh
    (a new MIKEY-SAKKE I_MESSAGE to the new peer, never the old call's PCK)."""

    kind: ClassVar[str] = "transfer"
    target: str
    role: str
    status: int | None
    final: bool
    new_call_id: str | None = None


@dataclass(frozen=True)
class Rejected(CallEvent):
    """An incoming call was refused: by our own checks before alerting (with ``peer``), or declined."""

    kind: ClassVar[str] = "rejected"
    status: int
    warning: str | None
    peer: str | None = None          # set when our checks refused it

    def _fields(self) -> dict[str, Any]:
        out = super()._fields()
        if self.peer is None:
            del out["peer"]
        return out


@dataclass(frozen=True)
class Failed(CallEvent):
    """The call failed: a SIP final response (``status``, ``warning``), or a local reason only."""

    kind: ClassVar[str] = "failed"
    reason: str
    status: int | None = None        # the SIP status when the peer or a proxy refused the call
    warning: str | None = None

    def _fields(self) -> dict[str, Any]:
        if self.status is None:
            return {"reason": self.reason}
        return {"status": self.status, "reason": self.reason, "warning": self.warning}


@dataclass(frozen=True)
class StatusEvent(CallEvent):
    """An event that carries the call's status right after it happened."""

    status: CallStatus

    def _fields(self) -> dict[str, Any]:
        return self.status.to_json()


@dataclass(frozen=True)
class Answered(StatusEvent):
    """The call is up (200 OK sent or received, media running)."""

    kind: ClassVar[str] = "answered"


@dataclass(frozen=True)
class EarlyMedia(StatusEvent):
    """A 183 Session Progress carried the callee's SDP: media runs before the answer (announcements,
    ringback from the far end), keyed like the call itself (our I_MESSAGE, or the SDES exchange)."""

    kind: ClassVar[str] = "early-media"


@dataclass(frozen=True)
class MediaStarted(StatusEvent):
    """SRTP media (re)started, with new keys after a rekey."""

    kind: ClassVar[str] = "media"


@dataclass(frozen=True)
class Held(StatusEvent):
    """The call is on hold (either side)."""

    kind: ClassVar[str] = "held"


@dataclass(frozen=True)
class Resumed(StatusEvent):
    """The call is off hold."""

    kind: ClassVar[str] = "resumed"


@dataclass(frozen=True)
class PeerSending(StatusEvent):
    """The first SRTP packet authenticated under an outgoing call's keys arrived: the callee's phone is
    sending (``peer_assurance`` becomes ``peer-sending``; still no signature from the callee)."""

    kind: ClassVar[str] = "peer-sending"


@dataclass(frozen=True)
class Rekeyed(StatusEvent):
    """A re-INVITE carried new keys (a new I_MESSAGE / SDES keys) and media uses them now."""

    kind: ClassVar[str] = "rekeyed"


@dataclass(frozen=True)
class MembersHeard(StatusEvent):
    """A group call's set of members heard changed (``members_heard`` in the status, each "group-keyed")."""

    kind: ClassVar[str] = "members"


@dataclass(frozen=True)
class Ended(CallEvent):
    """The call is over; ``status`` is its last snapshot (with the final counters)."""

    kind: ClassVar[str] = "ended"
    reason: str                      # "local hangup", "remote hangup" or ""
    status: CallStatus

    def _fields(self) -> dict[str, Any]:
        return {"reason": self.reason, **self.status.to_json()}


@dataclass(frozen=True)
class IceChanged(CallEvent):
    """The call's ICE agent changed state: ``state`` is ``checking``, ``connected`` or ``failed``; once
    connected ``path`` says how media flows (``host``, ``srflx`` or ``relay``) and the candidate types."""

    kind: ClassVar[str] = "ice"
    state: str
    controlling: bool
    path: str | None = None
    local_type: str | None = None
    remote_type: str | None = None


def ice_path(local_type: str | None, remote_type: str | None) -> str | None:
    """How media flows over a nominated pair: through a relay if either end is relayed, else srflx if a NAT
    mapping is involved (srflx/prflx), else host."""
    types = {local_type, remote_type}
    if None in types:
        return None
    if "relay" in types:
        return "relay"
    if types & {"srflx", "prflx"}:
        return "srflx"
    return "host"


@dataclass(frozen=True)
class Dtmf(CallEvent):
    """An RFC 4733 DTMF digit arrived."""

    kind: ClassVar[str] = "dtmf"
    digit: str


EVENT_TYPES: tuple[type[CallEvent], ...] = (Calling, Ringing, Incoming, CallWaiting, Rejected, Failed, Answered,
                                            MediaStarted, EarlyMedia, PeerSending, Held, Resumed, Rekeyed,
                                            MembersHeard, Ended, Dtmf, Transfer,
                                            IceChanged)


@dataclass(frozen=True)
class RegistrationChanged(CallEvent):
    """The registration's state changed (``call_id`` is empty): ``state`` is ``registered``,
    ``registering``, ``retrying`` or ``unregistered``; ``text`` e.g. ``retrying in 12 s (503 …)``;
    ``expires_in``/``retry_in`` in seconds when known, ``reason`` of the last failure."""

    kind: ClassVar[str] = "registration"
    state: str
    text: str
    expires_in: int | None = None
    retry_in: int | None = None
    reason: str | None = None
    target: str | None = None
