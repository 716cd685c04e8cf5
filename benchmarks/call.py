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
building (the call then waits for them). The lab's Kamailio here routes calls to each phone over the TLS
connection it registered on (``Lab(flows=True)``, RFC 5626 §5.3, what a provider's proxy facing NATs does),
so these figures are the phones' own; ``first_setup_vs_median_proxy_connects`` is the same ratio (over 5
calls) with a proxy that opens a new connection to the callee's Contact for its first call — that
connection's TCP + TLS handshake (≈ 7 ms on this lab) is then inside the first call only.
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
nomination are inside it, the gathering (done before the INVITE) is not.

Through the NAT lab (root, network namespaces, coturn; ``lab/netns.py``), with the machinery of
``scripts/demo nat`` (:func:`lab.demo_nat.nat_ice`, :func:`lab.demo_nat.nat_phones`): the same lab's
Kamailio and KMS, SIP on 127.0.0.1, each phone's ICE agent born in its own namespace behind its own
masquerading NAT, coturn on the public side. ``ice_srflx_setup_ms_median`` / ``_p90`` (STUN only) and
``ice_relay_setup_ms_median`` / ``_p90`` (all UDP dropped at both NATs, relay-only policy over TURN/TCP)
are full secure-call setups measured exactly as ``setup_ms``: alice's INVITE sent → first decrypted audio
frame played at bob, over ``--nat-calls`` calls after a first one of the same two phones (a fresh NAT lab
and coturn per path). Here alice's gathering (STUN binding, or TURN/TCP allocation) is before the INVITE and
not inside the figure; bob's, done while he answers, is. ``ice_*_setup_paths`` counts the measured calls
by media path (``Call.ice_path``; ``"a/b"`` when alice's and bob's disagree); if any call's media went
another way than expected, the median and p90 are left out and ``ice_*_setup_refused`` says why.

``ice_srflx_connect_ms_median`` and ``ice_relay_connect_ms_median`` are kept beside them: ICE alone (remote
attributes in → pair nominated, the controlling side's, ``lab.ice_peer``) between two NATed processes, same
two paths, over ``--nat-calls`` runs; not call setups, but they show how much of a setup is ICE.
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
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks._util import emit
from lab.baresip import Baresip
from lab.coturn import Coturn
from lab.demo_nat import nat_ice, nat_phones
from lab.deployment import Lab
from lab.focus import give_group_keys, run_group_call
from lab.netns import PUBLIC_IP, NatLab, unavailable
from softphone.calls.call import Call
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource, write_wav
from softphone.media.ice import IceSettings


def _tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@dataclass
class Setups:
    """Setup times (ms) of one pair of phones: their first call, then each measured call and its media path."""

    first_ms: float
    ms: list[float] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)  # alice's ``ice_path``, "alice/bob" if they differ


async def our_setups(lab: Lab, calls: int, keys_ready: bool = True, ice: IceSettings | None = None,
                     nat: NatLab | None = None, timeout: float = 10.0) -> Setups:
    """The first alice → bob call after both phones start, then ``calls`` more; with ``nat``, each phone's
    media (its ICE agent) is behind its own NAT (:func:`lab.demo_nat.nat_phones`)."""
    if nat is None:
        alice = Phone(replace(lab.settings("alice", trace_media=True), ice=ice))
        bob = Phone(replace(lab.settings("bob", trace_media=True), ice=ice))
    else:
        assert ice is not None, "calls through the NAT lab need ICE"
        alice, bob = nat_phones(lab, nat, ice)
    out = Setups(0.0)
    async with alice, bob:
        await alice.register()
        await bob.register()
        if keys_ready:
            await bob.keys_ready()
            await alice.keys_ready()
        for i in range(calls + 1):
            async def answer() -> Call:
                return await (await bob.next_incoming(timeout)).accept(ArraySource(_tone(0.5)), ArraySink())

            answering = asyncio.create_task(answer())
            call = await alice.call(lab.uri("bob"), ArraySource(_tone()), ArraySink(), timeout=timeout)
            bob_call = await asyncio.wait_for(answering, timeout)
            deadline = time.monotonic() + 3.0
            while bob_call.first_played_at() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            first = bob_call.first_played_at()
            if first is None or call.invite_sent_at is None:
                raise RuntimeError("callee played no decrypted audio within 3 s")
            if i > 0:
                out.ms.append((first - call.invite_sent_at) * 1000.0)
                path = call.ice_path if call.ice_path == bob_call.ice_path else f"{call.ice_path}/{bob_call.ice_path}"
                out.paths.append(path)
            else:
                out.first_ms = (first - call.invite_sent_at) * 1000.0
            await call.hangup()
            await bob_call.ended(5)
    return out


def nat_setups(lab: Lab, workdir: Path, path: str, calls: int) -> dict[str, object]:
    """Full secure-call setups through two NATs with media over ``path`` (srflx or relay), as ``setup_ms``;
    the figures only when every measured call's media went that way (both ends' ``Call.ice_path``)."""
    with NatLab.create() as nat, Coturn(workdir / f"coturn-setup-{path}", PUBLIC_IP, netns=nat.public) as turn:
        run = asyncio.run(our_setups(lab, calls, ice=nat_ice(nat, turn, path), nat=nat, timeout=20.0))
    counts = Counter(str(p) for p in run.paths)
    out: dict[str, object] = {f"ice_{path}_setup_paths": dict(sorted(counts.items()))}
    wrong = len(run.paths) - counts[path]
    if wrong:
        out[f"ice_{path}_setup_refused"] = f"media went another way than {path} in {wrong} of {len(run.paths)} calls"
    else:
        ms = sorted(run.ms)
        out[f"ice_{path}_setup_ms_median"] = round(statistics.median(ms), 1)
        out[f"ice_{path}_setup_ms_p90"] = round(ms[int(0.9 * (len(ms) - 1))], 1)
    return out


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
    parser.add_argument("--nat-calls", type=int, default=5,
                        help="calls (after a first) and ICE-only runs through the NAT lab, per path (default 5)")
    args = parser.parse_args(argv)
    result: dict[str, object] = {}
    nat_why = unavailable() if args.ice else None
    with tempfile.TemporaryDirectory(prefix="bench-call-") as tmp:
        if not args.group_only:
            with Lab(Path(tmp) / "plainlab") as lab:
                plain = asyncio.run(our_setups(lab, 5))
            with Lab(Path(tmp) / "lab", flows=True) as lab:
                ours = asyncio.run(our_setups(lab, args.calls))
                racing = asyncio.run(our_setups(lab, 0, keys_ready=False))
                if args.ice:
                    host = asyncio.run(our_setups(lab, args.calls, ice=IceSettings()))
                    result["ice_host_setup_ms_median"] = round(statistics.median(host.ms), 1)
                    if nat_why is None:
                        for path in ("srflx", "relay"):
                            result.update(nat_setups(lab, Path(tmp), path, args.nat_calls))
            theirs = baresip_setups(Path(tmp) / "baresip", args.calls)
            ms = sorted(ours.ms)
            median = statistics.median(ms)
            result.update({"calls": args.calls, "setup_ms_median": round(median, 1),
                           "first_setup_ms": round(ours.first_ms, 1),
                           "first_setup_vs_median": round(ours.first_ms / median, 2),
                           "first_setup_racing_tables_ms": round(racing.first_ms, 1),
                           "first_setup_vs_median_proxy_connects": round(
                               plain.first_ms / statistics.median(plain.ms), 2),
                           "setup_ms_p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
                           "baresip_setup_ms_median": round(statistics.median(theirs), 1)})
        if args.ice:
            if nat_why is None:
                for name, relay in (("srflx", False), ("relay", True)):
                    runs = nat_connects(Path(tmp), args.nat_calls, relay)
                    result[f"ice_{name}_connect_ms_median"] = round(statistics.median(runs), 1)
            else:
                result["ice_nat"] = f"skipped: {nat_why}"
        result.update(group_figures(Path(tmp) / "grouplab"))
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
