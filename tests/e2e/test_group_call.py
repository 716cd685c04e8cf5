"""A group call for real: Kamailio over TLS, our focus registered as sip:team@lab.test, four phones plus a
removed member, all keyed from GroupKeys put into their keystores (as the GMS would deliver them).

Every ordered pair of the four hears the other (speech check per sender, decoded separately before the
mix); eve, who holds only the GMK from before she was removed, opens nothing; the focus holds no bytes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from lab.focus import GatedSource, PerSender, lab_focus
from softphone.calls.events import CallEvent
from softphone.calls.group import GroupCall
from softphone.calls.phone import Phone
from softphone.keys.groups import GroupKey
from softphone.media.audio import ArraySink
from softphone.media.group import GroupMediaSession
from tests.conftest import require_tool
from tests.focus.test_core import _values

pytestmark = pytest.mark.slow

MEMBERS = ("alice", "bob", "carol", "dave")
REMOVED = "eve"


@pytest.fixture(scope="module")
def group_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("grouplab"), users=(*MEMBERS, REMOVED, "team")) as running:
        yield running


def give_group_keys(lab: Lab) -> tuple[str, int, int]:
    """GMK 1 to all five (then eve is removed: revoked in the others' stores), GMK 2 to the four."""
    group = lab.uri("team")
    old, new, rand = os.urandom(16), os.urandom(16), os.urandom(16)
    listed = tuple(lab.uri(u) for u in (*MEMBERS, REMOVED))
    now = int(time.time())
    for user in (*MEMBERS, REMOVED):
        me = lab.uri(user)
        revoked = user != REMOVED
        lab.keystores[user].add_group_key(GroupKey(group, 0x1001, old, rand, me, "sip:gms@lab.test",
                                                   activation=now - 3600, revoked=revoked, members=listed))
        if user != REMOVED:
            lab.keystores[user].add_group_key(GroupKey(group, 0x1002, new, rand, me, "sip:gms@lab.test",
                                                       activation=now - 60, members=listed[:4]))
    return group, 0x1001, 0x1002


async def test_four_members_hear_each_other_and_the_removed_member_is_locked_out(group_lab: Lab, speech) -> None:
    _, samples = speech
    group, _, new_id = give_group_keys(group_lab)
    users = (*MEMBERS, REMOVED)
    events: list[CallEvent] = []
    phones = {u: Phone(group_lab.settings(u), on_event=events.append) for u in users}
    clips = {u: np.roll(samples, i * len(samples) // 5) for i, u in enumerate(users)}
    sources = {u: GatedSource(clips[u]) for u in users}
    heard = {u: PerSender() for u in users}
    calls: dict[str, GroupCall] = {}
    async with lab_focus(group_lab) as focus:
        for p in phones.values():
            await p.__aenter__()
        try:
            for p in phones.values():
                await p.register()
            setup_ms = []
            for u in users:
                t0 = time.monotonic()
                call = await phones[u].call(group, sources[u], ArraySink(), timeout=10)
                setup_ms.append((time.monotonic() - t0) * 1000)
                assert isinstance(call, GroupCall) and isinstance(call.media, GroupMediaSession)
                call.media.on_sender_frame = heard[u]
                calls[u] = call
            assert focus.calls_answered == len(users)
            assert calls["alice"].gmk_id == new_id and calls[REMOVED].gmk_id == 0x1001
            for s in sources.values():
                s.open()
            await asyncio.sleep(len(samples) / 48000 + 1.0)
            status = {u: c.status() for u, c in calls.items()}
            counters = focus.counters()
            held = _values(focus.forwarder)
            for c in calls.values():
                await c.hangup()
        finally:
            for p in phones.values():
                await p.__aexit__(None, None, None)

    # every ordered pair of members: speech present, decoded under the sender's own key
    for me in MEMBERS:
        for other in MEMBERS:
            if other != me:
                match = compare(clips[other], heard[me].samples(group_lab.uri(other)))
                assert match.ok(), (me, other, match)
        st = status[me]
        assert {m["member"] for m in st["members_heard"]} == {group_lab.uri(o) for o in MEMBERS if o != me}
        assert all(m["assurance"] == "group-keyed" and m["auth_failures"] == 0 for m in st["members_heard"])
        assert st["peer_assurance"] == "group-keyed" and st["unknown_mki"] > 0  # eve's packets: revoked GMK
    # eve holds only the old GMK: every packet names a GMK she does not have; she decodes nothing
    eve = status[REMOVED]
    assert eve["members_heard"] == [] and eve["unknown_mki"] > 0 and not heard[REMOVED].frames
    # the focus forwarded everything, and holds nothing but counters
    for u in users:
        assert counters[group_lab.uri(u)].packets_in > 0
        assert counters[group_lab.uri(u)].packets_out >= counters[group_lab.uri(u)].packets_in  # 4 others
    assert not [v for v in held if isinstance(v, (bytes, bytearray, memoryview))]
    kinds = {e.kind for e in events}
    assert {"calling", "answered", "media", "members", "ended"} <= kinds
    assert all("verified" not in str(e.to_json().get("members_heard", "")) for e in events)
    print(f"group setup ms: {[round(x) for x in setup_ms]}")
