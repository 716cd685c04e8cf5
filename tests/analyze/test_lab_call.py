"""The analyser on a real call: two phones through the lab's Kamailio (SIP over TLS, keys from the lab
KMS), captured with tshark on loopback, the TLS session keys logged as the phones' ``--keylog`` will."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from lab.captures import chirp
from lab.deployment import Lab
from lab.tshark import start_capture, stop_capture
from softphone.analyze import KeyRing, analyse
from softphone.analyze.audio import read_wav
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource
from tests.analyze.test_analyze import correlation
from tests.conftest import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.needs_tool("tshark")]


async def test_lab_call_over_tls_analysed(lab: Lab, tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    keylog = tmp_path / "tls-keys.log"
    a_set, b_set = lab.settings("alice"), lab.settings("bob")
    for ctx in (a_set.ua.tls_client, a_set.ua.tls_server, b_set.ua.tls_client, b_set.ua.tls_server):
        assert ctx is not None
        ctx.keylog_filename = str(keylog)
    assert lab.kamailio is not None and lab.kamailio.tls_port
    pcap = tmp_path / "call.pcapng"
    sent = chirp(3.0)
    proc = start_capture(tshark, pcap, "udp or tcp")  # both hops: alice → proxy and proxy → bob
    try:
        async with Phone(a_set) as alice, Phone(b_set) as bob:
            await alice.register()
            await bob.register()

            async def answer():  # type: ignore[no-untyped-def]
                return await (await bob.next_incoming(10)).accept(ArraySource(np.zeros(48000 * 3, np.int16)),
                                                                  ArraySink())

            answering = asyncio.create_task(answer())
            call = await alice.call(lab.uri("bob"), ArraySource(sent), ArraySink(), timeout=10)
            bob_call = await asyncio.wait_for(answering, 10)
            await asyncio.sleep(2.0)
            key_id, call_id = bob_call.negotiated.key_id, call.call_id  # type: ignore[union-attr]
            await call.hangup()
        await asyncio.sleep(0.5)
    finally:
        stop_capture(proc)

    ring = KeyRing()
    for user in ("alice", "bob"):
        ring.add(lab.keystores[user].mikey_key_sets(lab.uri(user)))
    a = analyse(pcap, ring, tmp_path / "out", keylog=keylog)
    dlg = next(d for d in a.dialogs if d.call_id == call_id)
    labels = [e.label for e in dlg.entries]
    assert "ACK" in labels and "BYE" in labels
    assert len({(e.src, e.dst) for e in dlg.entries if e.label == "INVITE"}) == 2  # alice → proxy → bob
    assert {e.transport for e in dlg.entries} == {"tls"}
    offers = [r for r in a.imessages if r.dialog is dlg]
    assert offers and all(r.verdict.description["valid"] for r in offers)
    assert offers[0].verdict.description["key_id"] == key_id
    assert (offers[0].verdict.description["initiator"], offers[0].verdict.description["responder"]) == (
        lab.uri("alice"), lab.uri("bob"))
    streams = [s for s in a.streams if s.receiver.dialog is dlg]
    assert len(streams) == 2
    for s in streams:
        assert s.stats.packets > 30 and s.auth_failures == 0 and s.replays == 0
        assert s.layout is not None and s.layout.value == ("AEAD_AES_128_GCM", True)
    from_alice = next(s for s in streams if s.receiver.peer == lab.uri("alice"))
    assert from_alice.wav is not None
    got = read_wav(Path(from_alice.wav))
    _, corr = correlation(got[: len(sent)], sent[: len(got)], max_lag=4800)
    assert corr > 0.8, corr
    # loopback also carries whatever else runs on this machine: judge only this call's messages and streams
    ours = tuple(f"{e.label} #{e.number} " for e in dlg.entries) + tuple(f"stream {s.number} (" for s in streams)
    assert [f for f in a.findings if f.startswith(ours)] == []
