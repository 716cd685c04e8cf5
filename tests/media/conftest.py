"""Media test fixtures: a speech WAV made with espeak-ng, paired session configs on loopback, and calls
run in simulated time (a virtual clock and a seeded in-memory network: the same result on every run)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from lab.quality import align, pesq_wb
from softphone.media.audio import ArraySink, ArraySource, read_wav
from softphone.media.clock import VirtualClock
from softphone.media.codecs import OPUS, CodecSpec
from softphone.media.session import MediaConfig, MediaSession, SrtpKeys
from softphone.media.srtp import SrtpSuite
from softphone.media.transport import Link, SimNetwork
from tests.conftest import require_tool

SENTENCE = ("The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
            "It is easy to tell the depth of a well.")


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 8 s of synthetic English speech at 48 kHz mono int16."""
    espeak = require_tool("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([espeak, "-v", "en-us+f3", "-s", "150", "-w", str(path), SENTENCE], check=True, timeout=60,
                   capture_output=True)
    return read_wav(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_pair(suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, mki: bytes | None = None,
             rng: random.Random | None = None) -> tuple[SrtpKeys, SrtpKeys]:
    """Mirror-image keys for caller and callee (each sends with what the other receives with)."""
    octets = rng.randbytes if rng is not None else os.urandom
    k1, s1 = octets(suite.key_len), octets(suite.salt_len)
    k2, s2 = octets(suite.key_len), octets(suite.salt_len)
    return (SrtpKeys(suite, k1, s1, k2, s2, mki, mki), SrtpKeys(suite, k2, s2, k1, s1, mki, mki))


def configs(codec: CodecSpec = OPUS, suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, mki: bytes | None = None,
            remote_a: tuple[str, int] | None = None, remote_b: tuple[str, int] | None = None,
            **kw: object) -> tuple[MediaConfig, MediaConfig]:
    """Configs for sessions A and B on fixed free loopback ports; remotes default to each other."""
    pa, pb = free_port(), free_port()
    ka, kb = key_pair(suite, mki)
    a = MediaConfig(("127.0.0.1", pa), remote_a or ("127.0.0.1", pb), codec, ka, **kw)  # type: ignore[arg-type]
    b = MediaConfig(("127.0.0.1", pb), remote_b or ("127.0.0.1", pa), codec, kb, **kw)  # type: ignore[arg-type]
    return a, b


A_ADDR, B_ADDR = ("192.0.2.1", 5004), ("192.0.2.2", 6004)  # simulated: no sockets
CLEAN = Link()


def sim_configs(codec: CodecSpec = OPUS, suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, mki: bytes | None = None,
                seed: int = 1, **kw: object) -> tuple[MediaConfig, MediaConfig]:
    """Configs for sessions A and B on the simulated network, with keys drawn from ``seed``."""
    ka, kb = key_pair(suite, mki, random.Random(seed))
    a = MediaConfig(A_ADDR, B_ADDR, codec, ka, **kw)  # type: ignore[arg-type]
    b = MediaConfig(B_ADDR, A_ADDR, codec, kb, **kw)  # type: ignore[arg-type]
    return a, b


@dataclass
class SimCall:
    """What a simulated call left behind: both sessions, what each heard, the network (for its link stats)."""

    a: MediaSession
    b: MediaSession
    heard_by_a: ArraySink
    heard_by_b: ArraySink
    network: SimNetwork


async def sim_call(a: MediaConfig, b: MediaConfig, audio_a: np.ndarray, audio_b: np.ndarray, seconds: float, *,
                   a_to_b: Link = CLEAN, b_to_a: Link | None = None, seed: int = 1,
                   events: tuple[tuple[float, Callable[[SimCall], None]], ...] = (),
                   taps: dict[tuple[str, int], Callable[[SimCall, bytes, tuple[str, int]], None]] | None = None,
                   ) -> SimCall:
    """A and B start at t = 0 and talk for ``seconds`` of simulated time; B stops first, A 100 ms later.

    ``events`` run at their simulated times; a tap on an address sees each datagram the network would
    deliver there and decides what is (``call.network.deliver``). Runs as fast as the CPU allows."""
    clock = VirtualClock()
    net = SimNetwork(clock, seed=seed)
    net.set_link(a.local_addr, a.remote_addr, a_to_b)
    net.set_link(b.local_addr, b.remote_addr, b_to_a or a_to_b)
    sink_a, sink_b = ArraySink(), ArraySink()
    sa = MediaSession(a, ArraySource(audio_a), sink_a, clock=clock, network=net, rng=random.Random(f"{seed}a"))
    sb = MediaSession(b, ArraySource(audio_b), sink_b, clock=clock, network=net, rng=random.Random(f"{seed}b"))
    call = SimCall(sa, sb, sink_a, sink_b, net)
    for addr, tap in (taps or {}).items():
        net.taps[addr] = lambda data, src, tap=tap: tap(call, data, src)  # type: ignore[misc]
    for when, event in events:
        clock.call_at(when, lambda event=event: event(call))  # type: ignore[misc]
    await sa.start()
    await sb.start()
    clock.advance(seconds)
    await sb.stop()
    clock.advance(0.1)
    await sa.stop()
    return call


def aligned_corr(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation and lag (see :func:`lab.quality.align`)."""
    return align(sent, received)


__all__ = ["SimCall", "aligned_corr", "configs", "free_port", "key_pair", "pesq_wb", "sim_call", "sim_configs",
           "speech"]
