"""``scripts/demo nat``: a secure MIKEY-SAKKE call whose media crosses two NATs, through a TURN relay.

The lab of ``scripts/demo`` (CA, Kamailio over TLS, KMS, alice and bob provisioned) plus the NAT lab of
:mod:`lab.netns` (each phone's media in its own namespace behind a masquerading NAT, coturn on the
"public" side). The phones run in this process; each one's ICE agent is created inside its phone
namespace (the sockets, and the TCP connection to TURN, then live there for good), so every media packet
really leaves through that NAT. SIP stays on 127.0.0.1 (signalling through NAT is not what this shows).
``--path relay`` (default) drops all UDP at both NATs and uses ``ice_policy = relay`` over TURN/TCP;
``--path srflx`` uses STUN only. Same report and last JSON line as ``scripts/demo``, plus ``"ice"``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.audiocheck import compare
from lab.coturn import Coturn
from lab.demo import judge, make_speech, new_result, scenario, within
from lab.deployment import Lab
from lab.netns import PUBLIC_IP, NatLab, NetnsError, unavailable
from softphone.calls.call import Call, CallError
from softphone.calls.events import CallEvent, IceChanged
from softphone.calls.negotiation import LocalIce
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySource, WavSink, read_wav
from softphone.media.ice import IceAgent, IcePolicy, IceSettings

CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the calling thread in network namespace ``ns`` (sockets created meanwhile stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise NetnsError(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise NetnsError("cannot return to the original network namespace")
    finally:
        os.close(target)
        os.close(home)


class NatPhone(Phone):
    """A lab phone whose ICE agent is born in network namespace ``netns`` (lab use only)."""

    netns: str = ""

    async def _gather_ice(self, controlling: bool, rtcp_mux: bool = True) -> tuple[IceAgent, LocalIce] | None:
        with in_netns(self.netns):
            return await super()._gather_ice(controlling, rtcp_mux)


def nat_ice(nat: NatLab, turn: Coturn, path: str) -> IceSettings:
    """The ICE settings for media over ``path`` through ``nat``: ``"relay"`` drops all UDP at both NATs (for
    the rest of the lab's life) and allows only relayed candidates over TURN/TCP; ``"srflx"`` is STUN only."""
    if path == "relay":
        nat.block_udp()
        return IceSettings(turn_server=(PUBLIC_IP, turn.port), turn_username=turn.username,
                           turn_password=turn.password, turn_transport="tcp", policy=IcePolicy.RELAY)
    if path == "srflx":
        return IceSettings(stun_server=(PUBLIC_IP, turn.port))
    raise ValueError(f"no NAT path {path!r} (relay or srflx)")


def nat_phones(lab: Lab, nat: NatLab, ice: IceSettings,
               on_event: Callable[[CallEvent], None] | None = None) -> tuple[NatPhone, NatPhone]:
    """alice with her media behind NAT A and bob with his behind NAT B (media traced, as ``setup_ms`` needs)."""
    alice = NatPhone(replace(lab.settings("alice", trace_media=True), ice=ice), on_event=on_event)
    bob = NatPhone(replace(lab.settings("bob", trace_media=True), ice=ice), on_event=on_event)
    alice.netns, bob.netns = nat.phone_a, nat.phone_b
    return alice, bob


async def run_nat_call(lab: Lab, nat: NatLab, ice: IceSettings, wav: Path, recording: Path, log: Any,
                       result: dict[str, Any]) -> None:
    played = read_wav(wav)
    events: list[CallEvent] = []
    alice, bob = nat_phones(lab, nat, ice, events.append)
    async with alice, bob:
        await alice.register()
        await bob.register()
        log(f"registered {lab.uri('alice')} and {lab.uri('bob')}; media: alice behind NAT A, bob behind NAT B")

        async def auto_answer() -> Call:
            incoming = await bob.next_incoming(20)
            log(f"bob: incoming call, I_MESSAGE verified — caller is {incoming.peer_identity} (ECCSI)")
            return await incoming.accept(ArraySource(played[:0]), WavSink(recording))

        answering = asyncio.create_task(auto_answer())
        try:
            call = await alice.call(lab.uri("bob"), ArraySource(played), WavSink(recording.with_suffix(".alice.wav")),
                                    timeout=20)
        except CallError:
            answering.cancel()
            raise
        bob_call = await within(answering, 20, "answer from bob")
        neg = bob_call.negotiated
        if neg is None:
            raise CallError("bob's call has no negotiated media")
        result.update(mikey="verified", srtp=neg.suite, ice=call.ice_path)
        for e in events:
            if isinstance(e, IceChanged) and e.state == "connected":
                log(f"ICE ({'controlling' if e.controlling else 'controlled'}): {e.local_type} → {e.remote_type}")
        log(f"call up: {neg.security}, {neg.suite}, PCK-ID {neg.key_id}, media path {call.ice_path}")
        await asyncio.sleep(len(played) / 48000 + 0.8)
        first = bob_call.first_played_at()
        if first is not None and call.invite_sent_at is not None:
            result["setup_ms"] = round((first - call.invite_sent_at) * 1000, 1)
        sent, got = call.status(), bob_call.status()
        result.update(packets_sent=sent.get("packets_sent", 0), packets_received=got.get("packets_received", 0),
                      packets_back=sent.get("packets_received", 0), loss=got.get("loss"))
        await call.hangup()
        await within(bob_call.ended(), 5, "end of bob's call after alice hung up")
    match = compare(played, read_wav(recording))
    result.update(speech=match.speech, correlation=match.correlation, pesq_mos=match.pesq_mos)
    log(f"recording: speech {match.speech}, correlation {match.correlation}, PESQ MOS {match.pesq_mos}")


def main(argv: list[str] | None = None) -> int:
    def body(args: argparse.Namespace, workdir: Path, log: Callable[[str], None],
             result: dict[str, Any]) -> str | None:
        why = unavailable()
        if why is not None:
            return f"NAT lab unavailable: {why}"
        wav = workdir / "speech.wav"
        make_speech(wav)
        with Lab(workdir / "lab") as lab, NatLab.create() as nat, \
                Coturn(workdir / "coturn", PUBLIC_IP, netns=nat.public) as turn:
            ice = nat_ice(nat, turn, args.path)
            if args.path == "relay":
                log(f"UDP blocked at both NATs; TURN over TCP at {PUBLIC_IP}:{turn.port}, relay only")
            else:
                log(f"STUN at {PUBLIC_IP}:{turn.port}")
            asyncio.run(run_nat_call(lab, nat, ice, wav, workdir / "bob-recording.wav", log, result))
        reason = judge(result)
        if reason is None and result["ice"] != args.path:
            reason = f"media went {result['ice']}, expected {args.path}"
        return reason

    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--path", choices=["relay", "srflx"], default="relay")

    result = new_result()
    result["ice"] = None
    return scenario("scripts/demo nat", __doc__, "securechorus-demo-nat-", "call", result, body, argv,
                    options=options, errors=(NetnsError,), waiting="waiting for the call")


if __name__ == "__main__":
    sys.exit(main())
