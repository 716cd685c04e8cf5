"""The interactive call CLI on a terminal (a pty): a waiting call is shown and refused with ``x``, then
``t URI`` transfers the call (blind, REFER) and the CLI exits 0 once it is handed over."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from lab.deployment import Lab
from softphone.calls.errors import CallError
from softphone.calls.phone import Phone

from .test_transfer import _audio, _received, _until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


async def test_cli_call_waiting_refused_then_blind_transfer(lab: Lab, speech, tmp_path: Path) -> None:
    wav, _ = speech
    bob_cfg = lab.account_file("bob", tmp_path)
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bob = subprocess.Popen([sys.executable, "-m", "softphone", "answer", "--config", str(bob_cfg), "--auto",
                            "--play", str(wav), "--record", str(tmp_path / "bob.wav"), "--timeout", "60"],
                           stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    os.close(slave)
    seen = bytearray()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            seen.extend(os.read(master, 65536))
        except OSError:
            loop.remove_reader(master)

    loop.add_reader(master, readable)
    try:
        assert lab.kamailio is not None
        await asyncio.to_thread(lab.kamailio.wait_for, r"LAB REGISTER aor=sip:bob@lab.test .*proto=tls", 30)
        alice, carol, mallory = (Phone(lab.settings(u)) for u in ("alice", "carol", "mallory"))
        async with alice, carol, mallory:
            for phone in (alice, carol, mallory):
                await phone.register()
            a_call = await alice.call(lab.uri("bob"), *_audio(), timeout=20)
            await _until(lambda: b"answered" in seen, 10, "the CLI answered")
            waiting = asyncio.create_task(mallory.call(lab.uri("bob"), *_audio(), timeout=20))
            await _until(lambda: b"call waiting from" in seen, 10, "the CLI showing the waiting call")
            os.write(master, b"x\n")
            with pytest.raises(CallError, match="486"):
                await asyncio.wait_for(waiting, 10)
            answering = asyncio.create_task(carol.next_incoming(20))
            os.write(master, f"t {lab.uri('carol')}\n".encode())
            incoming = await answering
            assert incoming.peer_identity == lab.uri("alice")
            c_call = await incoming.accept(*_audio())
            await asyncio.wait_for(a_call.ended(), 10)
            await _until(lambda: _received(c_call) > 10, 5, "carol hearing alice")
            rc = await asyncio.wait_for(asyncio.to_thread(bob.wait), 20)
            text = seen.decode(errors="replace")
            assert rc == 0, text[-2000:]
            assert f"transferred {lab.uri('alice')} to {lab.uri('carol')}" in text
            await c_call.hangup()
    finally:
        loop.remove_reader(master)
        if bob.poll() is None:
            bob.kill()
            bob.wait(10)
        os.close(master)
