"""The group-call focus in the lab: registers ``sip:<group>@lab.test`` with the lab's Kamailio (TLS).

The group's SIP account is an ordinary lab user (Kamailio digest password); it is provisioned at the KMS
like every lab user, but the focus never opens that keystore — it holds no keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from focus.core import LegCounters
from focus.service import Focus, FocusConfig
from lab.audiocheck import compare
from lab.deployment import Lab, LabError
from softphone.calls.events import CallEvent
from softphone.calls.group import GroupCall
from softphone.calls.phone import Phone
from softphone.keys.groups import GroupKey
from softphone.media.audio import ArraySink, ArraySource
from softphone.media.group import GroupMediaSession


def lab_focus(lab: Lab, group_user: str = "team") -> Focus:
    """A focus for ``sip:<group_user>@lab.test`` (``group_user`` must be one of the lab's users);
    ``async with`` it to register and serve."""
    if group_user not in lab.users:
        raise ValueError(f"{group_user} is not a lab user: start the Lab with it in users=")
    ua = replace(lab.ua_config(group_user), display_name="group focus")
    return Focus(FocusConfig(group_uri=lab.uri(group_user)), ua)


class GatedSource:
    """An audio source that is silent (``None``) until :meth:`open`, then plays ``samples`` once: every
    member of a lab group call starts talking only when all have joined, so everyone hears all of it."""

    def __init__(self, samples: np.ndarray) -> None:
        self._inner = ArraySource(samples)
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def read(self) -> np.ndarray | None:
        return self._inner.read() if self.opened else None

    def close(self) -> None:
        self._inner.close()


class PerSender:
    """Collects the frames a group member decoded, per sender (``GroupMediaSession.on_sender_frame``)."""

    def __init__(self) -> None:
        self.frames: dict[str, list[np.ndarray]] = defaultdict(list)

    def __call__(self, sender: str, frame: np.ndarray) -> None:
        self.frames[sender].append(frame)

    def samples(self, sender: str) -> np.ndarray:
        got = self.frames.get(sender)
        return np.concatenate(got) if got else np.zeros(0, dtype=np.int16)


def reachable_values(obj: object, depth: int = 0) -> list[object]:
    """Every value reachable from ``obj`` through attributes, dicts and sequences (bounded depth): what
    the focus holds, for the check that none of it is bytes (no payload, no key)."""
    if depth > 6:
        return []
    out: list[object] = [obj]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += reachable_values(k, depth + 1) + reachable_values(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            out += reachable_values(v, depth + 1)
    elif hasattr(obj, "__dict__"):
        for v in vars(obj).values():
            out += reachable_values(v, depth + 1)
    return out


OLD_GMK_ID, NEW_GMK_ID = 0x1001, 0x1002


def give_group_keys(lab: Lab, members: tuple[str, ...], removed: tuple[str, ...] = (),
                    group_user: str = "team") -> str:
    """What a GMS would leave in the keystores (the integrator replaces this with the GMS): GMK 1 to
    everyone, then the ``removed`` users are rekeyed out — GMK 2 to ``members`` only, who also mark
    GMK 1 revoked. Returns the group URI."""
    group = lab.uri(group_user)
    old, new, rand = os.urandom(16), os.urandom(16), os.urandom(16)
    listed = tuple(lab.uri(u) for u in (*members, *removed))
    now = int(time.time())
    for user in (*members, *removed):
        me = lab.uri(user)
        store = lab.keystores[user]
        store.add_group_key(GroupKey(group, OLD_GMK_ID, old, rand, me, "sip:gms@lab.test",
                                     activation=now - 3600, revoked=user in members, members=listed))
        if user in members:
            store.add_group_key(GroupKey(group, NEW_GMK_ID, new, rand, me, "sip:gms@lab.test",
                                         activation=now - 60, members=listed[:len(members)]))
    return group


@dataclass
class GroupRun:
    """What one lab group call left: per user its call status, per-sender decoded audio and setup time;
    the focus's counters and what it held at the end; every call event."""

    group: str
    clips: dict[str, np.ndarray]
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    heard: dict[str, PerSender] = field(default_factory=dict)
    setup_ms: dict[str, float] = field(default_factory=dict)
    counters: dict[str, LegCounters] = field(default_factory=dict)
    answered: int = 0
    held_bytes: int = 0
    events: list[CallEvent] = field(default_factory=list)
    cpu_s: float = 0.0

    def hears(self, lab: Lab, receiver: str, sender: str) -> bool:
        return compare(self.clips[sender], self.heard[receiver].samples(lab.uri(sender))).ok()

    def pairs_ok(self, lab: Lab, members: tuple[str, ...]) -> dict[str, bool]:
        """``"bob<-alice"`` → speech of alice present in what bob decoded from alice, for each ordered pair."""
        return {f"{me}<-{other}": self.hears(lab, me, other) for me in members for other in members if other != me}

    def locked_out(self, user: str) -> bool:
        st = self.status[user]
        return st["members_heard"] == [] and st["unknown_mki"] > 0 and not self.heard[user].frames


async def run_group_call(lab: Lab, group: str, users: tuple[str, ...], speech: np.ndarray,
                         group_user: str = "team", extra_s: float = 1.0) -> GroupRun:
    """Start the focus, let every user's phone call ``group`` (one after the other), then all talk at once
    (each a different stretch of ``speech``) for its length plus ``extra_s``; hang up; report."""
    run = GroupRun(group, {u: np.roll(speech, i * len(speech) // (len(users) + 1)) for i, u in enumerate(users)})
    phones = {u: Phone(lab.settings(u), on_event=run.events.append) for u in users}
    sources = {u: GatedSource(run.clips[u]) for u in users}
    run.heard = {u: PerSender() for u in users}
    calls: dict[str, Any] = {}
    async with lab_focus(lab, group_user) as focus:
        async with contextlib.AsyncExitStack() as stack:
            for p in phones.values():
                await stack.enter_async_context(p)
            for p in phones.values():
                await p.register()
            for u in users:
                t0 = time.monotonic()
                call = await phones[u].call(group, sources[u], ArraySink(), timeout=10)
                run.setup_ms[u] = round((time.monotonic() - t0) * 1000, 1)
                if not isinstance(call, GroupCall) or not isinstance(call.media, GroupMediaSession):
                    raise LabError(f"{u}'s call to {group} is not a group call (no group keys?)")
                call.media.on_sender_frame = run.heard[u]
                calls[u] = call
            run.answered = focus.calls_answered
            cpu0 = time.process_time()
            for s in sources.values():
                s.open()
            await asyncio.sleep(len(speech) / 48000 + extra_s)
            run.cpu_s = time.process_time() - cpu0
            run.status = {u: c.status() for u, c in calls.items()}
            run.counters = {k: replace(v) for k, v in focus.counters().items()}
            run.held_bytes = sum(isinstance(v, (bytes, bytearray, memoryview))
                                 for v in reachable_values(focus.forwarder))
            for c in calls.values():
                await c.hangup()
    return run
