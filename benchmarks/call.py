"""Secure call setup time: ``scripts/bench call [--json] [--calls N]``.

A lab (CA, Kamailio over TLS, HTTPS KMS with SQLite, alice and bob provisioned) on 127.0.0.1; alice
calls bob N times with MIKEY-SAKKE (PCK I_MESSAGE built, signed, verified and decapsulated per call)
and SRTP-GCM. ``setup_ms_median``: INVITE sent by alice → first decrypted audio frame played at bob
(bob's media trace), median over N calls after the first; ``setup_ms_p90`` beside it.
``first_setup_ms``: the first call of the same two phones (the first in this process, so every one-time
cost of the process is in it), placed once both have registered and their SAKKE tables, built in the
background when the keys load, are ready (``Phone.keys_ready``); ``first_setup_vs_median`` =
``first_setup_ms`` / ``setup_ms_median`` (target ≤ 1.2). ``first_setup_racing_tables_ms``: a second pair
of phones whose first call is placed the moment they have registered, while the tables may still be
building (the call then waits for them).
``baresip_setup_ms_median``: for reference, a baresip → baresip call with SDES (srtp-mand), measured
from the ``dial`` command to the callee's "incoming rtp … established" log line (its first
decrypted RTP), median over N calls in the same run.

Group calls (``group4_*``, ``group8_*``): 4 and 8 members (plus the focus) call ``sip:teamN@lab.test``,
keyed from group keys put into their keystores; ``group*_setup_ms_median``: a member's INVITE → 200 OK
with media started, median over the members; ``group*_cpu_per_member_pct``: this process's CPU time
(every phone, their media thread and the focus run in it) while all talk at once, per member, in percent of
one core; ``group*_heard_all``: every ordered pair heard each other (speech check). ``--group-only`` skips
the two-party part.

With ICE (``--ice``, needs a non-loopback IPv4 interface): ``ice_host_setup_ms_median`` is the two-party
figure when both phones offer ICE (host candidates): INVITE → first audio at bob, so the checks and
nomination are inside it, the gathering (done before the INVITE) is not. Through the NAT lab (root, network
namespaces, coturn; ``lab/netns.py``): ``ice_srflx_connect_ms_median`` and ``ice_relay_connect_ms_median``
are ICE alone (remote attributes in → pair nominated, ``lab.ice_peer``), two NATs apart, srflx with STUN
and relay-only over TURN/TCP with UDP blocked, over ``--nat-calls`` runs; not full call setups.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._util import emit
from lab.baresip import Baresip
from lab.deployment import Lab
from lab.focus import give_group_keys, run_group_call
from softphone.calls.call import Call
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource
from softphone.media.ice import IceSettings


def _tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def our_setups(lab: Lab, calls: int, keys_ready: bool = True,
                     ice: IceSettings | None = None) -> tuple[float, list[float]]:
    """Setup times (ms): the first alice → bob call after both phones start, then ``calls`` more."""
    out: list[float] = []
    first_setup = 0.0
    alice = Phone(replace(lab.settings("alice", trace_media=True), ice=ice))
    bob = Phone(replace(lab.settings("bob", trace_media=True), ice=ice))
    async with alice, bob:
        await alice.register()
        await bob.register()
        if keys_ready:
            await bob.keys_ready()
            await alice.keys_ready()
        for i in range(calls + 1):
            async def answer() -> Call:
                return await (await bob.next_incoming(10)).accept(ArraySource(_tone(0.5)), ArraySink())

            answering = asyncio.create_task(answer())
            call = await alice.call(lab.uri("bob"), ArraySource(_tone()), ArraySink(), timeout=10)
            bob_call = await asyncio.wait_for(answering, 10)
            deadline = time.monotonic() + 3.0
            while bob_call.first_played_at() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            first = bob_call.first_played_at()
            if first is None or call.invite_sent_at is None:
                raise RuntimeError("callee played no decrypted audio within 3 s")
            if i > 0:
                out.append((first - call.invite_sent_at) * 1000.0)
            else:
                first_setup = (first - call.invite_sent_at) * 1000.0
            await call.hangup()
            await bob_call.ended(5)
    return first_setup, out


def baresip_setups(workdir: Path, calls: int) -> list[float]:
    """dial → callee's first decrypted RTP, for baresip → baresip with SDES."""
    out: list[float] = []
    with Baresip(workdir / "a", user="a", mediaenc="srtp-mand") as a, \
            Baresip(workdir / "b", user="b", mediaenc="srtp-mand") as b:
        assert b.proc is not None
        for i in range(calls + 1):
            seen = len(b.proc.matching(r"incoming rtp for 'audio' established"))
            t0 = time.monotonic()
            a.command("dial", b.uri)
            b.wait_for(r"incoming rtp for 'audio' established", 10, count=seen + 1)
            if i > 0:
                out.append((time.monotonic() - t0) * 1000.0)
            closed = len(b.proc.matching(r"session closed"))
            a.command("hangup")
            b.wait_for(r"session closed", 10, count=closed + 1)
    return out


def group_figures(workdir: Path, sizes: tuple[int, ...] = (4, 8), seconds: float = 4.0) -> dict[str, object]:
    """Setup time and CPU per member of group calls of each size (a sine sweep as everyone's "speech")."""
    members = tuple(f"m{i}" for i in range(max(sizes)))
    teams = tuple(f"team{n}" for n in sizes)
    out: dict[str, object] = {}
    t = np.arange(int(seconds * 48000)) / 48000
    voice = (8000 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.int16)
    with Lab(workdir, users=(*members, *teams)) as lab:
        for n, team in zip(sizes, teams, strict=True):
            group = give_group_keys(lab, members[:n], group_user=team)
            run = asyncio.run(run_group_call(lab, group, members[:n], voice, group_user=team, extra_s=0.5))
            talk_s = seconds + 0.5
            out[f"group{n}_setup_ms_median"] = round(statistics.median(run.setup_ms.values()), 1)
            out[f"group{n}_cpu_per_member_pct"] = round(100 * run.cpu_s / talk_s / n, 1)
            out[f"group{n}_heard_all"] = all(run.pairs_ok(lab, members[:n]).values())
    return out


def nat_connects(workdir: Path, runs: int, relay: bool) -> list[float]:
    """ICE connect times (ms, the controlling side's) between two NATed ``lab.ice_peer`` processes."""
    from lab.coturn import Coturn
    from lab.netns import PUBLIC_IP, NatLab
    from softphone.media.audio import write_wav
    wav = workdir / "tone.wav"
    write_wav(wav, _tone(0.2))
    out: list[float] = []
    keys = ":".join(os.urandom(n).hex() for n in (16, 12, 16, 12))
    with NatLab.create() as lab, Coturn(workdir / f"coturn-{relay}", PUBLIC_IP, netns=lab.public) as turn:
        if relay:
            lab.block_udp()
            extra = ["--turn", turn.url("turn", "tcp"), "--turn-user", turn.username, "--policy", "relay"]
        else:
            extra = ["--stun", turn.url("stun")]
        env = {**os.environ, "SC_SRTP_KEYS": keys, "SC_TURN_PASSWORD": turn.password}
        for _ in range(runs):
            procs = [subprocess.Popen(lab.exec_argv(ns, [sys.executable, "-m", "lab.ice_peer", "--play", str(wav),
                                                         "--record", str(workdir / f"r{ns}.wav"), "--seconds", "0.3",
                                                         *(["--controlling"] if ns == lab.phone_a else []), *extra]),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
                     for ns in (lab.phone_a, lab.phone_b)]
            try:
                offers = [p.stdout.readline() for p in procs if p.stdout is not None]
                for p, other in zip(procs, reversed(offers), strict=True):
                    assert p.stdin is not None
                    p.stdin.write(other)
                    p.stdin.flush()
                outs = [p.communicate(timeout=60)[0] for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(10)
            lines = [json.loads(x) for x in outs[0].splitlines() if x.startswith("{")]
            conn = next((d["connected"] for d in lines if "connected" in d), None)
            if conn is None:
                raise RuntimeError(f"ICE did not connect: {lines}")
            out.append(conn["setup_ms"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench call", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=20, help="calls measured per side (default 20)")
    parser.add_argument("--group-only", action="store_true", help="only the group-call figures")
    parser.add_argument("--ice", action="store_true", help="also ICE setups (host) and ICE through NATs")
    parser.add_argument("--nat-calls", type=int, default=5, help="ICE runs through the NAT lab (default 5)")
    args = parser.parse_args(argv)
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-call-") as tmp:
        if not args.group_only:
            with Lab(Path(tmp) / "lab") as lab:
                first, ours = asyncio.run(our_setups(lab, args.calls))
                racing, _ = asyncio.run(our_setups(lab, 0, keys_ready=False))
                if args.ice:
                    _, host = asyncio.run(our_setups(lab, args.calls, ice=IceSettings()))
                    result["ice_host_setup_ms_median"] = round(statistics.median(host), 1)
            theirs = baresip_setups(Path(tmp) / "baresip", args.calls)
            ours.sort()
            median = statistics.median(ours)
            result.update({"calls": args.calls, "setup_ms_median": round(median, 1),
                           "first_setup_ms": round(first, 1), "first_setup_vs_median": round(first / median, 2),
                           "first_setup_racing_tables_ms": round(racing, 1),
                           "setup_ms_p90": round(ours[int(0.9 * (len(ours) - 1))], 1),
                           "baresip_setup_ms_median": round(statistics.median(theirs), 1)})
        if args.ice:
            from lab.netns import unavailable
            why = unavailable()
            if why is None:
                for name, relay in (("srflx", False), ("relay", True)):
                    runs = nat_connects(Path(tmp), args.nat_calls, relay)
                    result[f"ice_{name}_connect_ms_median"] = round(statistics.median(runs), 1)
            else:
                result["ice_nat"] = f"skipped: {why}"
        result.update(group_figures(Path(tmp) / "grouplab"))
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
