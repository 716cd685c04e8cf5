"""The phone's own capture and TLS key log: a lab call (SIP over TLS through Kamailio, keys from the lab KMS)
recorded by both phones themselves, without root, then analysed; the decoded audio is what was sent."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.captures import chirp
from lab.deployment import Lab
from softphone.analyze import KeyRing, analyse
from softphone.analyze.audio import read_wav
from softphone.analyze.pcap import read_packets
from softphone.calls.phone import Phone
from softphone.capture import PcapWriter
from softphone.media.audio import ArraySink, ArraySource, write_wav
from tests.analyze.test_analyze import correlation

pytestmark = pytest.mark.slow


def test_writer_records_udp_and_tcp_streams(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "c.pcap")
    w.record("udp", ("127.0.0.1", 5060), ("127.0.0.1", 5070), b"OPTIONS")
    w.record("tls", ("127.0.0.1", 40000), ("127.0.0.1", 5061), b"abc")
    w.record("tls", ("127.0.0.1", 40000), ("127.0.0.1", 5061), b"def")
    w.close()
    assert stat.S_IMODE((tmp_path / "c.pcap").stat().st_mode) == 0o600
    pkts = list(read_packets(tmp_path / "c.pcap"))
    assert [(p.transport, p.payload) for p in pkts] == [("udp", b"OPTIONS"), ("tcp", b""), ("tcp", b"abc"),
                                                        ("tcp", b"def")]
    assert pkts[1].syn and pkts[3].seq == pkts[2].seq + 3 and pkts[0].dst == ("127.0.0.1", 5070)


async def test_lab_call_analysed_from_the_phones_own_capture(lab: Lab, tmp_path: Path) -> None:
    a_set, b_set = lab.settings("alice"), lab.settings("bob")
    a_set.capture, a_set.keylog = tmp_path / "alice.pcap", tmp_path / "alice-keys.log"
    b_set.capture, b_set.keylog = tmp_path / "bob.pcap", tmp_path / "bob-keys.log"
    sent = chirp(3.0)
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

    for f in (a_set.capture, a_set.keylog, b_set.capture, b_set.keylog):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert "CLIENT_TRAFFIC_SECRET_0" in a_set.keylog.read_text()

    ring = KeyRing()
    for user in ("alice", "bob"):
        ring.add(lab.keystores[user].mikey_key_sets(lab.uri(user)))
    for who, pcap in (("alice", a_set.capture), ("bob", b_set.capture)):
        a = analyse(pcap, ring, tmp_path / f"out-{who}", keylog=a_set.keylog)
        dlg = next(d for d in a.dialogs if d.call_id == call_id)
        labels = [e.label for e in dlg.entries]
        assert "INVITE" in labels and "ACK" in labels and "BYE" in labels, (who, labels)
        offers = [r for r in a.imessages if r.dialog is dlg]
        assert offers and all(r.verdict.description["valid"] for r in offers)
        assert offers[0].verdict.description["key_id"] == key_id
        streams = [s for s in a.streams if s.receiver.dialog is dlg]
        assert len(streams) == 2, (who, a.findings)
        for s in streams:
            assert s.stats.packets > 30 and s.auth_failures == 0 and s.replays == 0
        from_alice = next(s for s in streams if s.receiver.peer == lab.uri("alice"))
        assert from_alice.wav is not None
        got = read_wav(Path(from_alice.wav))
        _, corr = correlation(got[: len(sent)], sent[: len(got)], max_lag=4800)
        assert corr > 0.8, (who, corr)
        assert a.findings == [], (who, a.findings)  # the capture holds only this phone's own traffic


def test_cli_answer_writes_capture_and_keylog_with_a_warning(lab: Lab, tmp_path: Path) -> None:
    wav = tmp_path / "chirp.wav"
    write_wav(wav, chirp(2.0))
    bob_cfg, alice_cfg = lab.account_file("bob", tmp_path), lab.account_file("alice", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    pcap, keys = tmp_path / "bob.pcap", tmp_path / "bob-keys.log"
    bob = subprocess.Popen([sys.executable, "-m", "softphone.cli", "answer", "--config", str(bob_cfg), "--auto",
                            "--play", str(wav), "--record", str(tmp_path / "bob.wav"), "--timeout", "60",
                            "--capture", str(pcap), "--keylog", str(keys)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert lab.kamailio is not None
        lab.kamailio.wait_for(r"LAB REGISTER aor=sip:bob@lab.test .*proto=tls", timeout=30)
        alice = subprocess.run([sys.executable, "-m", "softphone.cli", "call", "sip:bob@lab.test", "--config",
                                str(alice_cfg), "--play", str(wav), "--record", str(tmp_path / "alice.wav"),
                                "--duration", "1.5"], capture_output=True, text=True, env=env, cwd=tmp_path,
                               timeout=90)
        assert alice.returncode == 0, alice.stderr[-2000:]
        _, bob_err = bob.communicate(timeout=30)
    finally:
        if bob.poll() is None:
            bob.kill()
            bob.communicate(timeout=10)
    assert bob.returncode == 0, bob_err[-2000:]
    warnings = [line for line in bob_err.splitlines() if "will hold secrets" in line]
    assert [w.split()[2] for w in warnings] == ["--keylog", "--capture"], bob_err
    for f in (pcap, keys):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "CLIENT_RANDOM" in keys.read_text() or "TRAFFIC_SECRET" in keys.read_text()
    pkts = list(read_packets(pcap))
    assert any(p.payload.startswith(b"INVITE ") for p in pkts)
    assert sum(p.transport == "udp" for p in pkts) > 30  # the media, as sent and received
    assert "softphone: warning" not in alice.stderr
