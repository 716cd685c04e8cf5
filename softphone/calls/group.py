"""Group calls at the call layer: which URIs are groups, and the keys group media sends and opens with.

A call to a URI for which the keystore holds group keys (GMKs, :mod:`softphone.keys.groups`) is a group
call: it goes to the group's focus, the SDP carries no ``a=key-mgmt`` (the key is the GMK the GMS gave every
member beforehand), we send with the per-sender key of the *active* GMK and open each other member's
packets with the key its MKI names. Naming who is heard from the MKI's GUK-ID is a consistency check, not
authentication — every member knows the GMK — so it is shown as "group-keyed", never "verified".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable

from softphone.calls.call import Call, EventSink, _Shared
from softphone.calls.errors import CallError
from softphone.calls.events import CallStatus, GroupStatus, MediaStarted, MemberHeard, MembersHeard, PeerAssurance
from softphone.calls.negotiation import Negotiated, _Described, _session, audio_media
from softphone.calls.profile import Profile, SecurityLevel
from softphone.keys.groups import GroupKey, UnknownGroupKey, active_key, key_for_mki
from softphone.media.audio import AudioSink, AudioSource
from softphone.media.dsp import DspSettings
from softphone.media.errors import MediaError
from softphone.media.group import GroupMediaConfig, GroupMediaSession, Resolver, SenderKey
from softphone.media.session import SrtpKeys
from softphone.media.srtp import SrtpSuite
from softphone.media.transport import DatagramTap, Network
from softphone.sip.session import InviteSession

GROUP_KEYED = "group-keyed"


def own_sender_key(keys: Iterable[GroupKey], group_uri: str, now: float) -> SenderKey:
    """Our key for a call to ``group_uri`` now (:class:`~softphone.keys.groups.NoActiveGroupKey` if none)."""
    key = active_key(keys, group_uri, now)
    master = key.own_srtp()
    return SenderKey(master.master_key, master.master_salt, master.mki, key.own_uri)


def group_resolver(keys: Callable[[], Iterable[GroupKey]], now: Callable[[], float]) -> Resolver:
    """``mki`` → the sender's key from whichever of our GMKs the MKI names (None: no usable GMK)."""
    def resolve(mki: bytes) -> SenderKey | None:
        try:
            key, sender = key_for_mki(keys(), mki, now())
        except UnknownGroupKey:
            return None
        master = key.sender_srtp(sender)
        return SenderKey(master.master_key, master.master_salt, master.mki, key.member_for(sender))
    return resolve


# --- the call ------------------------------------------------------------------------------------------

MEMBERS_POLL_S = 0.1


def group_offer(host: str, port: int, profile: Profile) -> bytes:
    """The SDP offer of a group call: ``RTP/SAVP`` audio, no ``a=key-mgmt``, no ``a=crypto`` (the key is
    the GMK every member already holds), no telephone-event (DTMF means nothing to a group)."""
    media = audio_media(port, profile, dtmf_pt=None)
    return _session(host, secrets.randbits(31), 1, media).encode()


def group_answer(body: bytes, profile: Profile, own: SenderKey, gmk_id: int) -> Negotiated:
    """Check the focus's answer (RTP/SAVP audio, a codec we offered) and say how it is keyed."""
    got = _Described.read(body, profile, "answer", "SRTP is mandatory")
    # Negotiated needs SrtpKeys; a group call's media keys come from the GMK per sender (GroupMediaSession)
    placeholder = SrtpKeys(SrtpSuite.AEAD_AES_128_GCM, own.master_key, own.master_salt, own.master_key,
                           own.master_salt, own.mki, None)
    return got.negotiated(placeholder, SecurityLevel.SECURE, None, f"{gmk_id:08x}", PeerAssurance.GROUP_KEYED)


class GroupCall(Call):
    """A call to a group URI through its focus: :class:`GroupMediaSession` media, members heard as events.

    Hold, resume and rekey (re-offers) are not offered in group calls: a new GMK comes from the GMS, and
    a member who wants to stop talking mutes."""

    def __init__(self, session: InviteSession, host: str, port: int, source: AudioSource, sink: AudioSink,
                 emit: EventSink, *, group_uri: str, keys: list[GroupKey], own: SenderKey, gmk_id: int,
                 now: Callable[[], float] = time.time, trace: bool = False, dsp: DspSettings | None = None,
                 network: Network | None = None, tap: DatagramTap | None = None) -> None:
        super().__init__(session, host, port, source, sink, emit, trace=trace, dsp=dsp, network=network,
                         tap=tap)
        self.group_uri = group_uri
        self.own = own
        self.gmk_id = gmk_id
        self._keys = keys  # a snapshot taken when the call was placed: read from the media thread
        self._now = now
        self._members_task: asyncio.Task[None] | None = None
        self._heard: frozenset[str] = frozenset()

    @property
    def peer(self) -> str:
        return self.group_uri

    async def start_media(self, negotiated: Negotiated, *, rebind: bool = False) -> None:
        self.negotiated = negotiated
        cfg = GroupMediaConfig((self.host, self.port), negotiated.remote_addr, negotiated.codec, self.own,
                               group_resolver(lambda: self._keys, self._now))
        media = GroupMediaSession(cfg, _Shared(self._source), _Shared(self._sink), network=self.network,
                                  tap=self.tap)
        try:
            await media.start()
        except MediaError as exc:
            raise CallError(str(exc)) from None
        self.media = media
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_session())
        self._members_task = asyncio.get_running_loop().create_task(self._watch_members(media))
        self._emit_status(MediaStarted)

    async def _watch_members(self, media: GroupMediaSession) -> None:
        while self.media is media and not self.is_ended:
            heard = frozenset(m.member or m.mki for m in self.group_status().members if m.packets)
            if heard != self._heard:
                self._heard = heard
                self._emit_status(MembersHeard)
            await asyncio.sleep(MEMBERS_POLL_S)

    async def _finish(self, reason: str) -> None:
        if self._members_task is not None:
            self._members_task.cancel()
        await super()._finish(reason)

    def group_status(self) -> GroupStatus:
        media = self.media
        if not isinstance(media, GroupMediaSession):
            return GroupStatus(self.group_uri, f"{self.gmk_id:08x}")
        st = media.group_stats()
        members = tuple(MemberHeard(s.member, s.mki, s.packets, s.auth_failures)
                        for s in sorted(st.senders.values(), key=lambda s: (s.member or "", s.mki)))
        return GroupStatus(self.group_uri, f"{self.gmk_id:08x}", members, st.unknown_mki, st.auth_failures)

    def snapshot(self) -> CallStatus:
        base = super().snapshot()
        return CallStatus(base.state, base.peer, base.keys, base.media, self.group_status())
