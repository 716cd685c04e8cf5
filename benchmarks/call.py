"""Secure call setup time: ``scripts/bench call [--json] [--calls N]``.

A lab (CA, Kamailio over TLS, HTTPS KMS with SQLite, alice and bob provisioned) on 127.0.0.1; alice
calls bob N times with MIKEY-SAKKE (PCK I_MESSAGE built, signed, verified and decapsulated per call)
and SRTP-GCM. ``setup_ms_median``: INVITE sent by alice → first decrypted audio frame played at bob
(bob's media trace), median over N calls after one warm-up call; ``setup_ms_p90`` beside it.
``baresip_setup_ms_median``: for reference, a baresip → baresip call with SDES (srtp-mand), measured
from the ``dial`` command to the callee's "incoming rtp … established" log line (its first
decrypted RTP), median over N calls in the same run.

With ICE (``--ice``, needs a non-loopback IPv4 interface): ``ice_host_setup_ms_median`` is the same
secure-call figure when both phones offer ICE (host candidates; gathering, checks and nomination are
inside it). Through the NAT lab (root and network namespaces, coturn; ``lab/netns.py``):
``ice_srflx_connect_ms_median`` and ``ice_relay_connect_ms_median`` are ICE alone (remote attributes
in → pair nominated, ``lab.ice_peer``), two NATs apart, srflx with STUN and relay-only over TURN/TCP
with UDP blocked; over ``--nat-calls`` runs. They are not full call setups (no SIP or MIKEY in them).
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
from softphone.calls.call import Call
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource
from softphone.media.ice import IceSettings


def _tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def our_setups(lab: Lab, calls: int, ice: IceSettings | None = None) -> list[float]:
    """Setup times (ms) of ``calls`` alice → bob calls, after one warm-up call."""
    out: list[float] = []
    alice = Phone(replace(lab.settings("alice", trace_media=True), ice=ice))
    bob = Phone(replace(lab.settings("bob", trace_media=True), ice=ice))
    async with alice, bob:
        await alice.register()
        await bob.register()
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
            await call.hangup()
            await bob_call.ended(5)
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
    parser.add_argument("--ice", action="store_true", help="also measure ICE setups (host, srflx, relay)")
    parser.add_argument("--nat-calls", type=int, default=5, help="ICE runs through the NAT lab (default 5)")
    parser.add_argument("--no-baresip", action="store_true", help="skip the baresip reference")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"calls": args.calls}
    with tempfile.TemporaryDirectory(prefix="bench-call-") as tmp:
        with Lab(Path(tmp) / "lab") as lab:
            ours = sorted(asyncio.run(our_setups(lab, args.calls)))
            result.update(setup_ms_median=round(statistics.median(ours), 1),
                          setup_ms_p90=round(ours[int(0.9 * (len(ours) - 1))], 1))
            if args.ice:
                host = asyncio.run(our_setups(lab, args.calls, IceSettings()))
                result["ice_host_setup_ms_median"] = round(statistics.median(host), 1)
        if not args.no_baresip:
            theirs = baresip_setups(Path(tmp) / "baresip", args.calls)
            result["baresip_setup_ms_median"] = round(statistics.median(theirs), 1)
        if args.ice:
            from lab.netns import unavailable
            why = unavailable()
            if why is None:
                for name, relay in (("srflx", False), ("relay", True)):
                    runs = nat_connects(Path(tmp), args.nat_calls, relay)
                    result[f"ice_{name}_connect_ms_median"] = round(statistics.median(runs), 1)
            else:
                result["ice_nat"] = f"skipped: {why}"
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
