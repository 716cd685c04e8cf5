"""Group media in simulated time: four members through an in-process focus core, each hears the other three.

Keys are GroupKeys made here (same GMK and RAND for everyone, own URI differs), as the GMS would deliver
them; the focus is :class:`focus.core.Forwarder` on the simulated network. Exact counters: clean links, so
every packet a member sends reaches every other member.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from focus.core import Forwarder
from lab.audiocheck import compare
from softphone.calls.group import group_resolver, own_sender_key
from softphone.keys.groups import GroupKey
from softphone.media.audio import ArraySink, ArraySource
from softphone.media.clock import VirtualClock
from softphone.media.codecs import OPUS
from softphone.media.group import GroupMediaConfig, GroupMediaSession
from softphone.media.transport import SimNetwork

GROUP = "sip:team@lab.test"
MEMBERS = [f"sip:{n}@lab.test" for n in ("alice", "bob", "carol", "dave")]
GMK1, GMK2, RAND = bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48))
FOCUS_HOST = "192.0.2.100"
T0 = 1_700_000_000.0


def gmk(owner: str, gmk_id: int = 2, key: bytes = GMK2, activation: int = 0, revoked: bool = False) -> GroupKey:
    return GroupKey(GROUP, gmk_id, key, RAND, owner, "sip:gms@lab.test", activation=activation, revoked=revoked,
                    members=tuple(MEMBERS + ["sip:eve@lab.test"]))


class Group:
    """Members and the focus on one simulated network; ``heard[receiver][sender]`` = frames per sender."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.net = SimNetwork(self.clock)
        self.focus = Forwarder()
        self.sessions: dict[str, GroupMediaSession] = {}
        self.heard: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self.played: dict[str, np.ndarray] = {}
        self.sinks: dict[str, ArraySink] = {}

    async def join(self, uri: str, keys: list[GroupKey], audio: np.ndarray) -> GroupMediaSession:
        i = len(self.sessions)
        addr = (f"192.0.2.{10 + i}", 5004)
        leg = self.focus.add_leg(uri, addr)
        leg_addr = (FOCUS_HOST, 7000 + i)
        endpoints = self.net.endpoints

        def forward(data: bytes, src: tuple[str, int], leg: int = leg) -> None:
            for out in self.focus.receive(leg, data, src):
                endpoints[(FOCUS_HOST, 7000 + out.leg - 1)].sendto(out.data, out.dest)
        await self.net.open(leg_addr, forward)
        now = self.clock.wallclock
        config = GroupMediaConfig(addr, leg_addr, OPUS, own_sender_key(keys, GROUP, now()),
                                  group_resolver(lambda: keys, now))
        sink = self.sinks[uri] = ArraySink()
        s = GroupMediaSession(config, ArraySource(audio), sink, clock=self.clock, network=self.net,
                              rng=random.Random(uri),
                              on_sender_frame=lambda who, frame, me=uri: self.heard[me][who].append(frame))
        self.sessions[uri] = s
        self.played[uri] = audio
        await s.start()
        return s

    async def stop(self) -> None:
        for s in self.sessions.values():
            await s.stop()

    def hears(self, receiver: str, sender: str) -> bool:
        frames = self.heard[receiver].get(sender)
        if not frames:
            return False
        return compare(self.played[sender], np.concatenate(frames)).ok()


def clips(speech: np.ndarray, n: int, seconds: float) -> list[np.ndarray]:
    """``n`` different stretches of the speech (each member says something else)."""
    length = int(seconds * 48000)
    return [np.roll(speech, -i * 48000 * 2)[:length] for i in range(n)]


@pytest.mark.asyncio
async def test_four_members_each_hear_the_other_three(speech: np.ndarray) -> None:
    g = Group()
    audio = clips(speech, 4, 5.0)
    for uri, a in zip(MEMBERS, audio, strict=True):
        await g.join(uri, [gmk(uri, 1, GMK1, revoked=True), gmk(uri)], a)
    g.clock.advance(5.0)
    await g.stop()
    sent = {uri: s.stats().packets_sent for uri, s in g.sessions.items()}
    assert set(sent.values()) == {251}  # 5 s at 50 packets/s, first tick at t = 0
    for me, s in g.sessions.items():
        st = s.group_stats()
        assert st.heard() == {other: sent[other] for other in MEMBERS if other != me}
        assert (st.auth_failures, st.unknown_mki, st.malformed, st.too_many) == (0, 0, 0, 0)
        assert all(len(x.ssrcs) == 1 for x in st.senders.values())
        for other in MEMBERS:
            if other != me:
                assert g.hears(me, other), (me, other)
        assert compare(g.played[MEMBERS[0] if me != MEMBERS[0] else MEMBERS[1]], g.sinks[me].samples()).ok()
    counters = g.focus.counters()
    for uri in MEMBERS:
        assert counters[uri].packets_in == sent[uri]
        assert counters[uri].packets_out == sum(sent.values()) - sent[uri]
    assert len({s.ssrc for s in g.sessions.values()}) == 4


@pytest.mark.asyncio
async def test_late_joiner_decodes_from_its_first_packet_with_the_carried_roc(speech: np.ndarray) -> None:
    g = Group()
    audio = clips(speech, 3, 4.0)
    a = await g.join(MEMBERS[0], [gmk(MEMBERS[0])], audio[0])
    a.roc = 7  # as if alice's stream had wrapped seven times already
    b = await g.join(MEMBERS[1], [gmk(MEMBERS[1])], audio[1])
    g.clock.advance(2.01)
    before = a.stats().packets_sent
    late = await g.join(MEMBERS[2], [gmk(MEMBERS[2])], audio[2])
    g.clock.advance(2.0)
    await g.stop()
    st = late.group_stats()
    assert st.auth_failures == 0 and st.unknown_mki == 0
    assert st.heard()[MEMBERS[0]] == a.stats().packets_sent - before
    assert st.heard()[MEMBERS[1]] == b.stats().packets_sent - before
    assert b.group_stats().heard()[MEMBERS[2]] == late.stats().packets_sent


@pytest.mark.asyncio
async def test_removed_or_stale_member_cannot_decrypt(speech: np.ndarray) -> None:
    """After a rekey the remaining members send under GMK 2; eve holds only GMK 1 (unknown MKI, no audio);
    mallory holds a wrong GMK under the right GMK-ID (every packet fails authentication)."""
    g = Group()
    audio = clips(speech, 4, 3.0)
    for uri, x in zip(MEMBERS[:2], audio[:2], strict=True):
        await g.join(uri, [gmk(uri, 1, GMK1, revoked=True), gmk(uri, activation=int(T0) - 10)], x)
    eve = await g.join("sip:eve@lab.test", [gmk("sip:eve@lab.test", 1, GMK1)], audio[2])
    mallory = await g.join("sip:mallory@lab.test", [gmk("sip:mallory@lab.test", 2, bytes(16))], audio[3])
    g.clock.advance(3.0)
    await g.stop()
    sent = {uri: s.stats().packets_sent for uri, s in g.sessions.items()}
    st = eve.group_stats()
    assert st.unknown_mki == sent[MEMBERS[0]] + sent[MEMBERS[1]] + sent["sip:mallory@lab.test"]
    assert st.heard() == {} and not g.heard["sip:eve@lab.test"]
    assert not np.any(g.sinks["sip:eve@lab.test"].samples())
    st = mallory.group_stats()
    assert st.auth_failures == sent[MEMBERS[0]] + sent[MEMBERS[1]]
    assert st.heard() == {} and not np.any(g.sinks["sip:mallory@lab.test"].samples())
    for uri in MEMBERS[:2]:  # and the members do not take eve's (revoked GMK) or mallory's packets either
        ms = g.sessions[uri].group_stats()
        assert ms.unknown_mki == sent["sip:eve@lab.test"]
        assert ms.auth_failures == sent["sip:mallory@lab.test"]
        assert set(ms.heard()) == set(MEMBERS[:2]) - {uri}
