"""Revocation reaches the phones: the KMS's signed list, fetched by every phone, refuses the revoked caller.

Through the lab's real KMS (``softphone-kms serve``) and Kamailio: mallory is revoked with
``softphone-kms user revoke``; alice refreshes explicitly, bob on his schedule (0.5 s here); then
mallory's calls to both get 488 with a Warning naming the revocation. A tampered list, and a genuine
list from before the revocation (rollback), are refused and the held list stays in force. The KMS
audits its refusals of mallory's requests by pseudonym.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from lab.deployment import Lab
from softphone.calls.errors import CallError
from softphone.calls.phone import Phone, PhoneSettings
from softphone.keys.kms_client import KmsClient, KmsClientError, refresh
from softphone.media.audio import ArraySink, ArraySource

pytestmark = pytest.mark.slow


def _settings(lab: Lab, user: str, interval: float = 900.0) -> PhoneSettings:
    kms = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return replace(lab.settings(user), kms=kms, revocation_refresh_s=interval)


async def _eventually(predicate: object, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_revoked_caller_refused_by_every_phone_within_the_refresh_interval(lab: Lab) -> None:
    alice = Phone(_settings(lab, "alice"))
    bob = Phone(_settings(lab, "bob", interval=0.5))
    mallory = Phone(lab.settings("mallory"))
    mallory_uri = lab.uri("mallory")
    async with alice, bob, mallory:
        for p in (alice, bob, mallory):
            await p.register()
        assert await alice.refresh_revocations(), alice.revocation_problem
        assert mallory_uri not in alice.revoked()
        before = alice.settings.kms._post("/revocations")  # type: ignore[union-attr] - genuine, pre-revocation

        lab.revoke("mallory")
        assert await alice.refresh_revocations(), alice.revocation_problem      # an explicit refresh …
        assert mallory_uri in alice.revoked()
        await _eventually(lambda: mallory_uri in bob.revoked(), "bob's scheduled refresh", 10)   # … or the schedule
        for callee in ("alice", "bob"):
            with pytest.raises(CallError, match=r"488 .*revoked identity: sip:mallory@lab\.test is revoked"):
                await mallory.call(lab.uri(callee), ArraySource(ArraySink().samples()), ArraySink(), timeout=10)
        assert not alice.calls and not bob.calls

        # a tampered list (mallory removed) and a replayed older list are both refused; the held one stays
        genuine = json.loads(alice.settings.kms._post("/revocations"))  # type: ignore[union-attr]
        tampered = json.dumps({**genuine, "revoked": []}).encode()
        for forged, reason in ((tampered, "does not verify"), (before, "older")):
            alice.settings.kms._post = lambda path, body=forged: body  # type: ignore[union-attr,misc]
            assert not await alice.refresh_revocations()
            assert reason in (alice.revocation_problem or ""), alice.revocation_problem
            assert mallory_uri in alice.revoked()

    # the KMS refuses mallory's own requests and audits each refusal without her URI
    client = KmsClient(lab.kms_url, lab.tokens["mallory"], cafile=lab.kms_ca)
    with pytest.raises(KmsClientError) as refused:
        refresh(lab.keystores["mallory"], client, mallory_uri, force=True)
    assert refused.value.status == 403
    with pytest.raises(KmsClientError) as refused:
        client.revocations({})
    assert refused.value.status == 403
    log = (lab.workdir / "kms" / "audit.log").read_text()
    refusals = [json.loads(line) for line in log.splitlines() if '"request.refused"' in line]
    assert {r["resource"] for r in refusals} >= {"init", "revocations"}
    assert all(r["status"] == 403 and len(r["user"]) == 32 for r in refusals)
    assert "mallory" not in log
