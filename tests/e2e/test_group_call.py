"""A group call for real: Kamailio over TLS, our focus registered as sip:team@lab.test, four phones plus a
removed member, all keyed from GroupKeys put into their keystores (as the GMS would deliver them).

Every ordered pair of the four hears the other (speech check per sender, decoded separately before the
mix); eve, who holds only the GMK from before she was removed, opens nothing; the focus holds no bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.deployment import Lab
from lab.focus import NEW_GMK_ID, give_group_keys, run_group_call
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

MEMBERS = ("alice", "bob", "carol", "dave")
REMOVED = "eve"


@pytest.fixture(scope="module")
def group_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("grouplab"), users=(*MEMBERS, REMOVED, "team")) as running:
        yield running


async def test_four_members_hear_each_other_and_the_removed_member_is_locked_out(group_lab: Lab, speech) -> None:
    _, samples = speech
    group = give_group_keys(group_lab, MEMBERS, (REMOVED,))
    run = await run_group_call(group_lab, group, (*MEMBERS, REMOVED), samples)
    assert run.answered == 5
    pairs = run.pairs_ok(group_lab, MEMBERS)
    assert len(pairs) == 12 and all(pairs.values()), pairs
    for me in MEMBERS:
        st = run.status[me]
        assert st["gmk_id"] == f"{NEW_GMK_ID:08x}" and st["peer_assurance"] == "group-keyed"
        assert {m["member"] for m in st["members_heard"]} == {group_lab.uri(o) for o in MEMBERS if o != me}
        assert all(m["assurance"] == "group-keyed" and m["auth_failures"] == 0 for m in st["members_heard"])
        assert st["unknown_mki"] > 0  # eve's packets: under the revoked GMK
    assert run.locked_out(REMOVED)  # every packet names a GMK eve does not hold; she decodes nothing
    for u in (*MEMBERS, REMOVED):
        c = run.counters[group_lab.uri(u)]
        assert c.packets_in > 0 and c.packets_out > 0
    assert run.held_bytes == 0
    kinds = {e.kind for e in run.events}
    assert {"calling", "answered", "media", "members", "ended"} <= kinds
    assert not any("verified" in str(e.to_json().get("members_heard", "")) for e in run.events)
