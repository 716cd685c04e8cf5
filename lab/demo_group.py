"""``scripts/demo group``: a group call of four through our focus, and a removed member locked out.

Starts the lab (CA, Kamailio over TLS, the HTTPS KMS) with alice, bob, carol, dave, eve and the group
account ``team``, the GMS user ``gms`` and msilo; the focus registers ``sip:team@lab.test``. The GMS
(``softphone-kms group``, its own identity from the KMS) creates the group of five over SIP MESSAGE while
dave is offline (msilo stores his key; he gets it when he registers), then removes eve: the GMS rekeys the
four and eve holds only the old GMK (``lab/gms_delivery.py``). All five call the group
URI; each of the four plays a different stretch of espeak-ng speech at once, and every ordered pair is
checked for speech in what the receiver decoded from that sender (``members_heard_all``); eve must open
nothing (``removed_member_locked_out``: only unknown-MKI packets, no audio). The focus must hold no bytes.
The last line is one JSON object with ``call``, ``members_heard_all``, ``removed_member_locked_out``,
``setup_ms`` (slowest member's INVITE → media); exit status 0 only on a pass.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.demo import make_speech, scenario
from lab.deployment import Lab
from lab.focus import run_group_call
from lab.gms_delivery import deliver_with_gms
from softphone.media.audio import read_wav

MEMBERS = ("alice", "bob", "carol", "dave")
REMOVED = "eve"
OFFLINE = "dave"


async def run(lab: Lab, wav: Path, log: Any, result: dict[str, Any], workdir: Path) -> None:
    delivery = await deliver_with_gms(lab, "team", MEMBERS, offline=(OFFLINE,), removed=(REMOVED,),
                                      workdir=workdir / "gms-delivery", log=log)
    group = delivery.group
    first = {u: delivery.first_gmk(u) for u in delivery.received}
    result.update(gms="ok", offline_member_keyed_later=first[OFFLINE] is not None and len(set(first.values())) == 1,
                  removed_member_rekeyed_out=len(delivery.received[REMOVED]) == 1
                  and all(len(delivery.received[m]) == 2 for m in MEMBERS))
    speech = read_wav(wav)
    done = await run_group_call(lab, group, (*MEMBERS, REMOVED), speech)
    pairs = done.pairs_ok(lab, MEMBERS)
    for pair, ok in pairs.items():
        log(f"  {pair}: {'speech' if ok else 'NOT heard'}")
    eve = done.status[REMOVED]
    log(f"{REMOVED}: {eve['unknown_mki']} packets under a GMK she does not hold, "
        f"{len(eve['members_heard'])} members decoded")
    result.update(members=len(MEMBERS), pairs_checked=len(pairs), members_heard_all=bool(pairs) and all(pairs.values()),
                  removed_member_locked_out=done.locked_out(REMOVED), focus_held_bytes=done.held_bytes,
                  focus_answered=done.answered, setup_ms=max(done.setup_ms.values()),
                  setup_ms_each=done.setup_ms,
                  unheard=[p for p, ok in pairs.items() if not ok])


def judge(result: dict[str, Any]) -> str | None:
    if not result.get("offline_member_keyed_later"):
        return f"{OFFLINE} (offline at creation) did not get the group key through msilo"
    if not result.get("removed_member_rekeyed_out"):
        return f"the GMS did not rekey {REMOVED} out (or {REMOVED} got the new key)"
    if not result.get("members_heard_all"):
        return f"not every member heard every other: {result.get('unheard')}"
    if not result.get("removed_member_locked_out"):
        return "the removed member decoded group media"
    if result.get("focus_held_bytes"):
        return "the focus held bytes after the call"
    return None


def main(argv: list[str] | None = None) -> int:
    def body(_args: argparse.Namespace, workdir: Path, log: Callable[[str], None],
             result: dict[str, Any]) -> str | None:
        wav = workdir / "speech.wav"
        make_speech(wav)
        with Lab(workdir / "lab", users=(*MEMBERS, REMOVED, "team", "gms"), msilo=True) as lab:
            log(f"Kamailio TLS 127.0.0.1:{lab.kamailio.tls_port if lab.kamailio else '?'}, KMS {lab.kms_url}; "
                f"{', '.join((*MEMBERS, REMOVED))} provisioned; focus for {lab.uri('team')}")
            asyncio.run(run(lab, wav, log, result, workdir))
        return judge(result)

    result: dict[str, Any] = {"call": "failed", "gms": "failed", "members_heard_all": False,
                              "removed_member_locked_out": False, "setup_ms": None}
    return scenario("scripts/demo group", __doc__, "securechorus-group-", "call", result, body, argv,
                    keep_help="work in DIR and keep it (logs, keystores)", waiting="waiting for the group call")


if __name__ == "__main__":
    sys.exit(main())
