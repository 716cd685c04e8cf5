"""``scripts/demo group``: a group call of four through our focus, and a removed member locked out.

Starts the lab (CA, Kamailio over TLS, the HTTPS KMS) with alice, bob, carol, dave, eve and the group
account ``team``; the focus registers ``sip:team@lab.test``. Group keys are put into the keystores as a
GMS would leave them after eve was removed: GMK 1 to all five, then GMK 2 to the four (who mark GMK 1
revoked). (Delivery by the GMS over SIP MESSAGE replaces this step when it lands.) All five call the group
URI; each of the four plays a different stretch of espeak-ng speech at once, and every ordered pair is
checked for speech in what the receiver decoded from that sender (``members_heard_all``); eve must open
nothing (``removed_member_locked_out``: only unknown-MKI packets, no audio). The focus must hold no bytes.
The last line is one JSON object with ``call``, ``members_heard_all``, ``removed_member_locked_out``,
``setup_ms`` (slowest member's INVITE → media); exit status 0 only on a pass.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.demo import finish, make_speech
from lab.deployment import Lab, LabError
from lab.focus import give_group_keys, run_group_call
from softphone.errors import SoftphoneError
from softphone.media.audio import read_wav

MEMBERS = ("alice", "bob", "carol", "dave")
REMOVED = "eve"


async def run(lab: Lab, wav: Path, log: Any, result: dict[str, Any]) -> None:
    group = give_group_keys(lab, MEMBERS, (REMOVED,))
    log(f"group keys in the keystores: GMK 2 for {', '.join(MEMBERS)}; {REMOVED} holds only the revoked GMK 1")
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
    if not result.get("members_heard_all"):
        return f"not every member heard every other: {result.get('unheard')}"
    if not result.get("removed_member_locked_out"):
        return "the removed member decoded group media"
    if result.get("focus_held_bytes"):
        return "the focus held bytes after the call"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo group", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, keystores)")
    parser.add_argument("--quiet", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    log = (lambda _m: None) if args.quiet else (lambda m: print(f"demo: {m}", flush=True))
    started = time.monotonic()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="securechorus-group-")
    workdir = Path(args.keep) if args.keep else Path(tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"call": "failed", "members_heard_all": False, "removed_member_locked_out": False,
                              "setup_ms": None}
    reason: str | None = None
    try:
        wav = workdir / "speech.wav"
        make_speech(wav)
        with Lab(workdir / "lab", users=(*MEMBERS, REMOVED, "team")) as lab:
            log(f"Kamailio TLS 127.0.0.1:{lab.kamailio.tls_port if lab.kamailio else '?'}, KMS {lab.kms_url}; "
                f"{', '.join((*MEMBERS, REMOVED))} provisioned; focus for {lab.uri('team')}")
            asyncio.run(run(lab, wav, log, result))
        reason = judge(result)
    except TimeoutError as exc:
        reason = f"timed out: {exc or 'waiting for the group call'}"
    except (LabError, SoftphoneError, OSError, subprocess.SubprocessError) as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # whatever went wrong, the last line still says why
        reason = f"unexpected {exc.__class__.__name__}: {exc}"
    finally:
        if tmp is not None:
            tmp.cleanup()
    return finish(result, "call", reason, started, log)


if __name__ == "__main__":
    sys.exit(main())
