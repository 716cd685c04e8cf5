"""Two whole phones at home, each behind its own NAT: the ``softphone`` CLI run inside the NAT lab's phone
namespaces (``ip netns exec``), so its SIP over TLS, its KMS requests and its media all leave through a
masquerading NAT. Kamailio, the KMS (this machine, ``HOST_IP``) and coturn are on the public side; the
accounts name only the proxy, the KMS and a STUN or TURN server, as a user's would.

What it shows, on what scheduling cannot change: both REGISTERs reach Kamailio from the NATs' public
addresses with private Contacts (``nathelper`` keeps them reachable over the flows they opened), the
INVITE reaches bob through NAT B, bob's BYE reaches alice through NAT A (the Contact alias), the
I_MESSAGE is verified both ways, ICE takes the expected path, and speech is heard both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.audiocheck import compare
from lab.coturn import Coturn
from lab.deployment import Lab
from lab.netns import HOST_IP, NAT_A_PUBLIC, NAT_B_PUBLIC, PHONE_A_IP, PHONE_B_IP, PUBLIC_IP, NatLab, unavailable
from softphone.media.audio import read_wav

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
_WHY = unavailable()


def _events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.skipif(_WHY is not None, reason=f"NAT lab unavailable: {_WHY}")
@pytest.mark.timeout(150)
@pytest.mark.parametrize("path", ["srflx", "relay"])
def test_cli_phones_behind_two_nats_register_call_and_hang_up_through_them(
        path: str, speech: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    wav, samples = speech
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with NatLab.create(host_link=True) as nat, Lab(tmp_path / "lab", public_host=HOST_IP) as lab, \
            Coturn(tmp_path / "coturn", PUBLIC_IP, netns=nat.public) as turn:
        assert lab.kamailio is not None
        if path == "relay":
            nat.block_udp()  # SIP and the KMS are TLS over TCP; media has only TURN over TCP left
            (tmp_path / "turn.pw").write_text(turn.password + "\n")
            (tmp_path / "turn.pw").chmod(0o600)
            ice = {"turn_server": f"turn:{PUBLIC_IP}:{turn.port}?transport=tcp", "turn_username": turn.username,
                   "turn_password_file": "turn.pw", "ice_policy": "relay"}
        else:
            ice = {"stun_server": f"stun:{PUBLIC_IP}:{turn.port}"}
        bob_cfg = lab.account_file("bob", tmp_path, local_host=PHONE_B_IP, extra=ice)
        alice_cfg = lab.account_file("alice", tmp_path, local_host=PHONE_A_IP, extra=ice)

        def softphone(ns: str, *args: str) -> list[str]:
            return nat.exec_argv(ns, [sys.executable, "-m", "softphone", *args])

        bob = subprocess.Popen(softphone(nat.phone_b, "answer", "--config", str(bob_cfg), "--auto", "--json",
                                         "--play", str(wav), "--record", str(tmp_path / "bob.wav"),
                                         "--duration", str(len(samples) / 48000 + 1.5), "--timeout", "60"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        try:
            registered = lab.kamailio.wait_for(r"LAB REGISTER aor=sip:bob@lab.test .*expires=3600 .*proto=tls", 30)
            alice = subprocess.run(softphone(nat.phone_a, "call", "sip:bob@lab.test", "--config", str(alice_cfg),
                                             "--json", "--play", str(wav), "--record", str(tmp_path / "alice.wav"),
                                             "--duration", "40"),
                                   capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)
            bob_out, bob_err = bob.communicate(timeout=30)
        finally:
            if bob.poll() is None:
                bob.kill()
                bob.communicate(timeout=10)
        alice_registered = lab.kamailio.matching(r"LAB REGISTER aor=sip:alice@lab.test .*expires=3600 ")
    assert alice.returncode == 0, alice.stderr[-2000:]
    assert bob.returncode == 0, bob_err[-2000:]
    # each phone's REGISTER came from its NAT's public address, with its private Contact
    assert f"@{PHONE_B_IP}:" in registered[0] and f"src={NAT_B_PUBLIC}:" in registered[0], registered
    assert alice_registered and f"@{PHONE_A_IP}:" in alice_registered[0], alice_registered
    assert f"src={NAT_A_PUBLIC}:" in alice_registered[0], alice_registered
    a_events, b_events = _events(alice.stdout), _events(bob_out)
    answered = next(e for e in a_events if e["event"] == "answered")
    assert (answered["security"], answered["verified_identity"]) == ("MIKEY-SAKKE", "sip:bob@lab.test")
    incoming = next(e for e in b_events if e["event"] == "incoming")
    assert incoming["verified_identity"] == "sip:alice@lab.test" and incoming["key_id"] == answered["key_id"]
    # bob hung up: his BYE crossed NAT A back to alice over the flow she opened
    ended = a_events[-2] if a_events[-1]["event"] == "registration" else a_events[-1]
    assert (ended["event"], ended["reason"], ended["ice"]) == ("ended", "remote hangup", path), ended
    assert next(e for e in b_events if e["event"] == "ended")["ice"] == path
    assert compare(samples, read_wav(tmp_path / "bob.wav")).ok()
    assert compare(samples, read_wav(tmp_path / "alice.wav")).ok()
    assert "Traceback" not in alice.stderr + bob_err
