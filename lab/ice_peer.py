"""One ICE + SRTP media endpoint as a process, for NAT tests run inside a network namespace:

    ip netns exec NS python -m lab.ice_peer --controlling --turn turn:203.0.113.1:3478?transport=tcp \
        --play speech.wav --record heard.wav --seconds 6          # keys: env SC_SRTP_KEYS (4 hex fields)

It prints JSON lines on stdout: ``{"offer": {ufrag, pwd, candidates}}`` after gathering, then reads the
peer's offer as one JSON line on stdin (the test carries it, as SIP would carry the SDP), then prints
``{"connected": {...IceState..., "setup_ms"}}`` and at the end ``{"stats": {...}}``; on failure
``{"error": "..."}`` and exit status 1. The ICE attributes go through :mod:`softphone.sip.ice` both ways,
exactly as in an SDP. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time

from softphone.config import ConfigError, parse_ice_server
from softphone.media.audio import WavSink, WavSource
from softphone.media.codecs import OPUS
from softphone.media.ice import IceAgent, IceError, IcePolicy, IceSettings
from softphone.media.session import MediaConfig, MediaSession, SrtpKeys
from softphone.media.srtp import SrtpSuite
from softphone.sip.errors import ParseError
from softphone.sip.ice import Candidate


def _emit(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def _settings(args: argparse.Namespace) -> IceSettings:
    stun = parse_ice_server(args.stun)[0] if args.stun else None
    turn, transport, tls = parse_ice_server(args.turn) if args.turn else (None, "udp", False)
    return IceSettings(stun_server=stun, turn_server=turn, turn_username=args.turn_user,
                       turn_password=os.environ.get("SC_TURN_PASSWORD"), turn_transport=transport, turn_tls=tls,
                       turn_ca_file=args.turn_ca,
                       policy=IcePolicy(args.policy))


async def _run(args: argparse.Namespace) -> int:
    fields = [bytes.fromhex(x) for x in os.environ["SC_SRTP_KEYS"].split(":")]
    keys = SrtpKeys(SrtpSuite.AEAD_AES_128_GCM, *fields)
    agent = IceAgent(_settings(args), controlling=args.controlling)
    try:
        await agent.gather(timeout=10)
        _emit({"offer": {"ufrag": agent.ufrag, "pwd": agent.pwd, "candidates": agent.candidate_lines()}})
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 30)
        remote = json.loads(line)["offer"]
        for value in remote["candidates"]:
            Candidate.parse(value)  # the SDP codec validates what the agent will use
        started = time.monotonic()
        await agent.set_remote(remote["ufrag"], remote["pwd"], remote["candidates"])
        state = await agent.connect(timeout=20)
        setup_ms = (time.monotonic() - started) * 1000
        _emit({"connected": {**dataclasses.asdict(state), "setup_ms": round(setup_ms, 1)}})
        assert state.remote_addr is not None
        config = MediaConfig(("0.0.0.0", 0), state.remote_addr, OPUS, keys, latch=False)
        session = MediaSession(config, WavSource(args.play), WavSink(args.record), network=agent.network())
        await session.start()
        await asyncio.sleep(args.seconds)
        await session.stop()
        st = session.stats()
        _emit({"stats": {"packets_sent": st.packets_sent, "packets_received": st.packets_received,
                         "srtp_failures": st.srtp_failures, "ice": dataclasses.asdict(agent.state())}})
        return 0
    except (IceError, ParseError, ConfigError, KeyError, ValueError, TimeoutError) as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        await agent.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.ice_peer")
    p.add_argument("--controlling", action="store_true")
    p.add_argument("--stun")
    p.add_argument("--turn")
    p.add_argument("--turn-user")
    p.add_argument("--turn-ca")
    p.add_argument("--policy", default="all", choices=["all", "relay"])
    p.add_argument("--play", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--seconds", type=float, default=6.0)
    return asyncio.run(_run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
