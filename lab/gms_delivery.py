"""Group keys delivered for real: the lab's GMS (``softphone-kms group``) sends each member its GMK
I_MESSAGE over Kamailio (TLS) with msilo; phones listening with a :class:`Messenger` verify and store them.

:func:`deliver_with_gms` is what ``scripts/demo group`` runs before the call: create the group with every
member while ``offline`` are not registered (msilo stores theirs), register those and wait for their keys,
then remove ``removed`` (the GMS rekeys the rest). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.deployment import Lab, LabError
from softphone.keys.groups import GroupKey
from softphone.keys.kms_client import KmsClient
from softphone.messaging.messenger import Messenger
from softphone.messaging.store import MessageStore
from softphone.sip.ua import UserAgent

KEY_WAIT_S = 30.0


@dataclass
class Delivery:
    """What the GMS left: per member the GMK-IDs it received, in order; the delivery lines of the GMS."""

    group: str
    received: dict[str, list[int]] = field(default_factory=dict)
    gms_lines: list[str] = field(default_factory=list)

    def first_gmk(self, user: str) -> int | None:
        got = self.received.get(user) or []
        return got[0] if got else None


def _messenger(lab: Lab, user: str, workdir: Path) -> Messenger:
    ua = UserAgent(lab.ua_config(user))
    store = MessageStore.open(workdir / f"{user}.messages", b"lab message store", n_log2=10)
    client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return Messenger(lab.uri(user), ua, lab.keystores[user], store, kms_client=client, notify=False,
                     trusted_gms=(lab.gms_uri(),))


async def _key(m: Messenger) -> GroupKey:
    return await asyncio.wait_for(m.group_keys.get(), KEY_WAIT_S)


async def _gms(lab: Lab, *args: str) -> list[str]:
    done = await asyncio.to_thread(lab.group, *args)
    if done.returncode != 0:
        raise LabError(f"softphone-kms group {args[0]}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.splitlines()


async def deliver_with_gms(lab: Lab, group_user: str, members: tuple[str, ...], *, offline: tuple[str, ...] = (),
                           removed: tuple[str, ...] = (), workdir: Path,
                           log: Callable[[str], None] = lambda _m: None) -> Delivery:
    """Create ``group_user``'s group of ``members + removed`` through the GMS, ``offline`` keyed via msilo when
    they register, then remove ``removed`` (rekey). Keys end up in ``lab.keystores``."""
    group = lab.uri(group_user)
    everyone = (*members, *removed)
    result = Delivery(group, {u: [] for u in everyone})
    workdir.mkdir(parents=True, exist_ok=True)
    phones = {u: _messenger(lab, u, workdir) for u in everyone}
    for m in phones.values():
        m.start()
    online = [u for u in everyone if u not in offline]
    entered: list[str] = []
    try:
        for u in online:
            await phones[u].ua.__aenter__()
            entered.append(u)
            await phones[u].ua.register()
        result.gms_lines += await _gms(lab, "create", group, *[a for u in everyone for a in ("--member", lab.uri(u))],
                                       "--text", group_user)
        for u in online:
            result.received[u].append((await _key(phones[u])).gmk_id)
        log(f"GMS created {group}: GMK {result.received[online[0]][0]:08x} to {', '.join(online)}; "
            f"{', '.join(offline) or 'nobody'} offline (stored by msilo)")
        for u in offline:
            await phones[u].ua.__aenter__()
            entered.append(u)
            await phones[u].ua.register()          # msilo dumps the stored group key at REGISTER
            result.received[u].append((await _key(phones[u])).gmk_id)
            log(f"{u} registered and got GMK {result.received[u][0]:08x} from msilo")
        for u in removed:
            result.gms_lines += await _gms(lab, "remove", group, lab.uri(u))
            for member in members:
                result.received[member].append((await _key(phones[member])).gmk_id)
            log(f"GMS removed {u}: new GMK {result.received[members[0]][-1]:08x} to {', '.join(members)} only")
        await asyncio.sleep(0.5)                    # anything more for the removed would have arrived by now
        for u in removed:
            while not phones[u].group_keys.empty():
                result.received[u].append(phones[u].group_keys.get_nowait().gmk_id)
    finally:
        for u in reversed(entered):
            await phones[u].ua.__aexit__(None, None, None)
    return result
