"""Calls that must be refused before alerting: 488 with a Warning naming the reason, and no media."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest

from crypto.mikey.sdp import find_key_mgmt
from lab.deployment import Lab
from softphone.calls.call import CallError, reserve_port
from softphone.calls.negotiation import Offerer
from softphone.calls.phone import Phone
from softphone.keys.kms_client import KmsClient, KmsClientError, refresh
from softphone.media.audio import ArraySink, ArraySource
from softphone.sip.errors import CallFailed

pytestmark = pytest.mark.slow


def _offer(phone: Phone, lab: Lab, key_for: str, port: int) -> bytes:
    """alice's offer whose I_MESSAGE is encrypted to ``key_for`` (signed by alice)."""
    return Offerer(phone.settings.profile, "127.0.0.1", port, lab.uri(key_for), phone._initiator()).offer()


def _tamper(body: bytes) -> bytes:
    """Flip one bit inside the ECCSI signature of the I_MESSAGE (near its end)."""
    text = body.decode()
    imessage = find_key_mgmt(text)
    assert imessage is not None
    bad = bytearray(imessage)
    bad[-40] ^= 0x01
    return text.replace(base64.b64encode(imessage).decode(), base64.b64encode(bytes(bad)).decode()).encode()


async def _refused(caller: Phone, callee: Phone, target: str, body: bytes, port: int) -> str:
    """Send ``body`` as an INVITE; expect 488 before any ringing, and no RTP at the offered port."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", port))
    rtp.setblocking(False)
    try:
        session = await caller.ua.invite(target, body)
        with pytest.raises(CallFailed) as err:
            await session.answered(10)
        assert err.value.status == 488
        assert not [s for s in session.history if s.value == "early"], "callee alerted before verifying"
        await asyncio.sleep(0.3)
        with pytest.raises(BlockingIOError):
            rtp.recv(2048)                    # no media reached the caller
        assert not callee.calls and callee._incoming.empty()
        return err.value.warning or ""
    finally:
        rtp.close()


async def test_tampered_wrong_callee_replay_and_revoked_are_refused(lab: Lab) -> None:
    alice = Phone(lab.settings("alice"))
    bob = Phone(lab.settings("bob", revoked=frozenset({lab.uri("mallory")})))
    mallory = Phone(lab.settings("mallory"))
    async with alice, bob, mallory:
        for p in (alice, bob, mallory):
            await p.register()
        bob_uri = lab.uri("bob")

        port = reserve_port("127.0.0.1")
        warning = await _refused(alice, bob, bob_uri, _tamper(_offer(alice, lab, "bob", port)), port)
        assert "bad signature" in warning

        port = reserve_port("127.0.0.1")
        warning = await _refused(alice, bob, bob_uri, _offer(alice, lab, "carol", port), port)
        assert "unknown identity" in warning and "another receiver" in warning

        # A good offer is answered; the very same I_MESSAGE sent again is a replay.
        port = reserve_port("127.0.0.1")
        good = _offer(alice, lab, "bob", port)
        session = await alice.ua.invite(bob_uri, good)
        incoming = await bob.next_incoming(10)
        await incoming.reject(486)
        with pytest.raises(CallFailed):
            await session.answered(10)
        warning = await _refused(alice, bob, bob_uri, good, port)
        assert "replay" in warning

        # mallory is revoked at the KMS: she can no longer fetch keys, and bob refuses her calls.
        lab.revoke("mallory")
        client = KmsClient(lab.kms_url, lab.tokens["mallory"], cafile=lab.kms_ca)
        with pytest.raises(KmsClientError) as refused:
            refresh(lab.keystores["mallory"], client, lab.uri("mallory"), force=True)
        assert refused.value.status == 403
        with pytest.raises(CallError, match=r"488 .*revoked identity"):
            await mallory.call(bob_uri, ArraySource(ArraySink().samples()), ArraySink(), timeout=10)
        assert not bob.calls and bob._incoming.empty()
