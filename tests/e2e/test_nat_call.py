"""Secure MIKEY-SAKKE calls whose media crosses two real NATs (network namespaces, coturn): ``scripts/demo
nat`` run in-process for both paths. srflx: STUN only; relay: all UDP dropped at both NATs, relay-only
policy over TURN/TCP. Passes on what scheduling cannot change: verified I_MESSAGE, the ICE path, packets
both ways, speech in bob's recording (``lab.demo.judge``)."""

from __future__ import annotations

import json

import pytest

from lab import demo_nat
from lab.netns import unavailable

pytestmark = pytest.mark.slow

_WHY = unavailable()


@pytest.mark.skipif(_WHY is not None, reason=f"NAT lab unavailable: {_WHY}")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", ["srflx", "relay"])
def test_secure_call_through_two_nats(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = demo_nat.main(["--path", path, "--quiet"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, result
    assert (result["call"], result["mikey"], result["ice"]) == ("ok", "verified", path)
    assert result["packets_received"] > 0 and result["packets_back"] > 0
