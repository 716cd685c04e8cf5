"""A group call for real: Kamailio over TLS, our focus registered as sip:team@lab.test, four phones plus a
removed member, all keyed from GroupKeys put into their keystores (as the GMS would deliver them).

Every ordered pair of the four hears the other (speech check per sender, decoded separately before the
mix); eve, who holds only the GMK from before she was removed, opens nothing; the focus holds no bytes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.audiocheck import compare
from lab.deployment import Lab
from lab.focus import NEW_GMK_ID, GatedSource, PerSender, give_group_keys, lab_focus, run_group_call
from softphone.calls.group import GroupCall
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, read_wav
from tests.conftest import require_tool

pytestmark = pytest.mark.slow

MEMBERS = ("alice", "bob", "carol", "dave")
REMOVED = "eve"
REPO = Path(__file__).resolve().parents[2]


def _softphone(*args: str) -> list[str]:
    return [sys.executable, "-m", "softphone", *args]


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


async def test_cli_calls_the_group_uri(group_lab: Lab, speech, tmp_path: Path) -> None:
    """``softphone call sip:team@lab.test --json``: a group call (members event, group-keyed), and what alice
    records is bob's speech, mixed in from the focus."""
    wav, samples = speech
    group = give_group_keys(group_lab, ("alice", "bob"))
    alice_cfg = group_lab.account_file("alice", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bob = Phone(group_lab.settings("bob"))
    heard_by_bob = PerSender()
    async with lab_focus(group_lab), bob:
        await bob.register()
        bob_source = GatedSource(samples)  # bob starts talking once alice is heard
        call = await bob.call(group, bob_source, ArraySink(), timeout=10)
        assert isinstance(call, GroupCall) and call.media is not None
        call.media.on_sender_frame = heard_by_bob  # type: ignore[attr-defined]
        proc = await asyncio.create_subprocess_exec(
            *_softphone("call", group, "--config", str(alice_cfg), "--json", "--play", str(wav),
                        "--record", str(tmp_path / "alice.wav"), "--duration", str(len(samples) / 48000 + 1.5)),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while not heard_by_bob.frames and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            bob_source.open()
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await call.hangup()
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line) for line in out.decode().splitlines()]
    answered = next(e for e in events if e["event"] == "answered")
    assert answered["peer"] == group and answered["peer_assurance"] == "group-keyed"
    members = [e for e in events if e["event"] == "members"]
    assert members and members[-1]["members_heard"][0]["member"] == group_lab.uri("bob")
    assert compare(samples, read_wav(tmp_path / "alice.wav")).ok()
    assert compare(samples, heard_by_bob.samples(group_lab.uri("alice"))).ok()
    assert b"Traceback" not in err
