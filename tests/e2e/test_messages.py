"""Secure messages through the real lab: Kamailio over TLS with msilo (SQLite), keys from the HTTPS KMS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.deployment import Lab
from softphone.keys.keystore import Keystore
from softphone.keys.kms_client import KmsClient
from softphone.messaging import secure
from softphone.messaging.messenger import Messenger
from softphone.messaging.store import MessageStore
from softphone.sip.im import send_message
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def silo_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("msglab"), users=("alice", "bob", "carol", "dave", "erin"),
             msilo=True) as running:
        yield running


def _messenger(lab: Lab, user: str, tmp: Path, keystore: Keystore | None = None, **kw: object) -> Messenger:
    ua = UserAgent(lab.ua_config(user))
    store = MessageStore.open(tmp / f"{user}-{id(ua)}.messages", b"pw", n_log2=10)
    client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return Messenger(lab.uri(user), ua, keystore or lab.keystores[user], store, kms_client=client, **kw)  # type: ignore[arg-type]


async def test_offline_delivery_reply_and_notifications(silo_lab: Lab, tmp_path: Path) -> None:
    lab = silo_lab
    assert lab.kamailio is not None
    alice, bob = _messenger(lab, "alice", tmp_path), _messenger(lab, "bob", tmp_path)
    alice.start()
    bob.start()
    async with alice.ua:
        await alice.ua.register()
        sent = await alice.send_text(lab.uri("bob"), "hello bob, you are offline")
        assert sent.status == "stored"                          # 202 from msilo: bob is not registered
        stored = lab.kamailio.stored_messages()
        assert len(stored) == 1 and stored[0][0].endswith("alice@lab.test")
        assert b"offline" not in stored[0][3] and b"application/mikey" in stored[0][3]
        async with bob.ua:
            await bob.ua.register()                             # msilo dumps the stored MESSAGE
            got = await asyncio.wait_for(bob.received.get(), 15)
            assert (got.text, got.peer, got.id) == ("hello bob, you are offline", lab.uri("alice"), sent.id)
            assert await asyncio.wait_for(alice.notifications.get(), 15) == (sent.id, "delivered")
            await bob.mark_read(got.id)
            assert await asyncio.wait_for(alice.notifications.get(), 15) == (sent.id, "read")
            reply = await bob.send_text(lab.uri("alice"), "got it", in_reply_to=got.id)
            assert reply.status == "sent"
            back = await asyncio.wait_for(alice.received.get(), 15)
            assert back.text == "got it" and back.in_reply_to == got.id and back.conversation_id == got.conversation_id
    assert alice.store.find(sent.id).status == "read"  # type: ignore[union-attr]
    assert lab.kamailio.matching(r"LAB DUMPED sip:bob@lab.test")


async def test_largest_attachment_stored_offline(silo_lab: Lab, tmp_path: Path) -> None:
    from crypto import mcdata

    lab = silo_lab
    alice, bob = _messenger(lab, "alice", tmp_path, notify=False), _messenger(lab, "bob", tmp_path, notify=False)
    bob.start()
    blob = bytes(range(256)) * (secure.MAX_ATTACHMENT // 256)
    async with alice.ua:
        await alice.ua.register()
        sent = await alice.send(lab.uri("bob"), [mcdata.DataItem(mcdata.ContentType.BINARY, blob)])
        assert sent.status == "stored"
        async with bob.ua:
            await bob.ua.register()
            got = await asyncio.wait_for(bob.received.get(), 15)
    assert got.id == sent.id and got.attachments == ((mcdata.ContentType.BINARY, blob),)


async def test_tampered_and_replayed_refused_through_proxy(silo_lab: Lab, tmp_path: Path) -> None:
    lab = silo_lab
    alice, carol = _messenger(lab, "alice", tmp_path), _messenger(lab, "carol", tmp_path)
    carol.start()
    async with alice.ua, carol.ua:
        await alice.ua.register()
        await carol.ua.register()
        sealed = alice.sealer.seal_text(lab.uri("carol"), "original")
        resp = await send_message(alice.ua, lab.uri("carol"), sealed.body, sealed.content_type)
        assert resp.status == 200
        assert (await asyncio.wait_for(carol.received.get(), 10)).text == "original"
        resp = await send_message(alice.ua, lab.uri("carol"), sealed.body, sealed.content_type)
        assert resp.status == 200 and carol.counters.refused == {secure.REPLAY: 1}
        body = bytearray(sealed.body)
        i = body.rindex(b"--scmsg--") - 20
        body[i] = ord("A") if body[i] != ord("A") else ord("B")
        resp = await send_message(alice.ua, lab.uri("carol"), bytes(body), sealed.content_type)
        warning = resp.headers.get("Warning") or ""   # accepted and discarded: 200 with the refusal
        assert resp.status == 200 and "message refused (" in warning and "MCData payload" in warning
        assert carol.counters.refused.get(secure.TAMPERED, 0) + carol.counters.refused.get(secure.MALFORMED, 0) == 1
        assert carol.received.empty() and [m.text for m in carol.store.messages()] == ["original"]
        assert sum(carol.store.refusals.values()) == 2


async def test_key_period_rollover_between_send_and_read(silo_lab: Lab, tmp_path: Path) -> None:
    """Alice writes in the previous key period (simulated clock); bob reads now, holding only the current and
    next periods: the RSK of the message's period is fetched by time (keyprov/<URI>/<T>) and kept."""
    import time
    from datetime import UTC, datetime

    lab = silo_lab
    cert = lab.keystores["bob"].certificates()[0]
    past = datetime.fromtimestamp(time.time() - cert.user_key_period, UTC)
    stores = {}
    for user in ("alice", "bob"):
        ks = Keystore.create(tmp_path / f"{user}-rollover.keystore", b"rollover test keystore phrase")
        ks.add_certificate(cert)
        client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
        ks.import_key_prov(client.key_prov(lab.uri(user), past) if user == "alice" else client.key_prov(lab.uri(user)))
        stores[user] = ks
    held_before = [k.key_period_no for k in stores["bob"].mikey_key_sets(lab.uri("bob"))]
    alice = _messenger(lab, "alice", tmp_path, keystore=stores["alice"], clock=past.timestamp, notify=False)
    bob = _messenger(lab, "bob", tmp_path, keystore=stores["bob"], notify=False)
    bob.start()
    async with alice.ua:
        await alice.ua.register()
        sent = await alice.send_text(lab.uri("bob"), "written before the rollover")
        assert sent.status == "stored"
        async with bob.ua:
            await bob.ua.register()
            got = await asyncio.wait_for(bob.received.get(), 15)
    assert got.text == "written before the rollover" and got.time == int(past.timestamp())
    held_after = [k.key_period_no for k in stores["bob"].mikey_key_sets(lab.uri("bob"))]
    assert held_after == [min(held_before) - 1] + held_before


def test_cli_send_offline_listen_list_read(silo_lab: Lab, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    lab = silo_lab
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def softphone(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "softphone.cli", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=timeout)

    alice_cfg, bob_cfg = str(lab.account_file("alice", tmp_path)), str(lab.account_file("bob", tmp_path))
    sent = softphone("message", "send", "--config", alice_cfg, "--to", lab.uri("bob"), "--json", "from the CLI")
    assert sent.returncode == 0, sent.stderr
    out = json.loads(sent.stdout.splitlines()[0])
    assert out["status"] == "stored" and out["text"] == "from the CLI"
    heard = softphone("message", "listen", "--config", bob_cfg, "--json", "--count", "1", "--duration", "20")
    assert heard.returncode == 0, heard.stderr
    got = json.loads(heard.stdout.splitlines()[0])
    assert got["id"] == out["id"] and got["peer"] == lab.uri("alice") and got["text"] == "from the CLI"
    listed = json.loads(softphone("message", "list", "--config", bob_cfg, "--json").stdout)
    assert [m["id"] for m in listed] == [out["id"]] and listed[0]["status"] == "unread"
    read = softphone("message", "read", "--config", bob_cfg, "--json", "--no-notify", out["id"][:8])
    assert read.returncode == 0 and json.loads(read.stdout)["status"] == "read"
    assert softphone("message", "read", "--config", bob_cfg, "nope").returncode == 1
    assert softphone("message", "send", "--config", bob_cfg, "--to", lab.uri("alice")).returncode == 2
    deleted = softphone("message", "delete", "--config", bob_cfg, lab.uri("alice"))
    assert deleted.returncode == 0 and json.loads(softphone("message", "list", "--config", bob_cfg,
                                                             "--json").stdout) == []


async def _until(check: object, what: str, seconds: float = 15.0) -> None:
    for _ in range(int(seconds * 10)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def _stored_for(lab: Lab, user: str) -> list[tuple[str, str, str, bytes]]:
    assert lab.kamailio is not None
    return [m for m in lab.kamailio.stored_messages() if m[1].endswith(f"{user}@lab.test")]


async def test_final_refusal_is_not_redelivered_at_the_next_register(silo_lab: Lab, tmp_path: Path) -> None:
    """msilo deletes a dumped MESSAGE only on a 2xx and offers it again at every REGISTER otherwise: a
    tampered message, answered 200 with the refusal, leaves the store at once and is refused once."""
    lab = silo_lab
    assert lab.kamailio is not None
    alice, dave = _messenger(lab, "alice", tmp_path), _messenger(lab, "dave", tmp_path)
    dave.start()
    sealed = alice.sealer.seal_text(lab.uri("dave"), "will be tampered with")
    body = bytearray(sealed.body)
    i = body.rindex(b"--scmsg--") - 20
    body[i] = ord("A") if body[i] != ord("A") else ord("B")
    async with alice.ua:
        await alice.ua.register()
        resp = await send_message(alice.ua, lab.uri("dave"), bytes(body), sealed.content_type)
        assert resp.status == 202 and len(_stored_for(lab, "dave")) == 1
    async with dave.ua:
        await dave.ua.register()
        await _until(lambda: sum(dave.counters.refused.values()) == 1, "dave refuses the dumped message")
        await _until(lambda: not _stored_for(lab, "dave"), "msilo deletes the refused message")
        registers = len(lab.kamailio.matching(r"LAB REGISTER aor=sip:dave@"))
        await dave.ua.register()
        await lab.kamailio.await_log(r"LAB REGISTER aor=sip:dave@", count=registers + 1)
        await asyncio.sleep(1.0)   # nothing is left to dump; a redelivery would already be on its way
    assert sum(dave.counters.refused.values()) == 1 and dave.received.empty()
    assert set(dave.counters.refused) <= {secure.TAMPERED, secure.MALFORMED}
    assert not _stored_for(lab, "dave")


async def test_message_not_openable_yet_stays_stored_until_the_keys_are_held(silo_lab: Lab, tmp_path: Path) -> None:
    """Alice writes in the previous key period; erin holds only the current ones and cannot fetch (no KMS
    client): 480, msilo keeps the message; once erin imports that period's keys a REGISTER delivers it."""
    import time
    from datetime import UTC, datetime

    lab = silo_lab
    assert lab.kamailio is not None
    cert = lab.keystores["erin"].certificates()[0]
    past = datetime.fromtimestamp(time.time() - cert.user_key_period, UTC)
    ks = {}
    for user in ("alice", "erin"):
        ks[user] = Keystore.create(tmp_path / f"{user}-later.keystore", b"keys later test keystore phrase")
        ks[user].add_certificate(cert)
        client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
        ks[user].import_key_prov(client.key_prov(lab.uri(user), past if user == "alice" else None))
    alice = _messenger(lab, "alice", tmp_path, keystore=ks["alice"], clock=past.timestamp, notify=False)
    erin = Messenger(lab.uri("erin"), UserAgent(lab.ua_config("erin")), ks["erin"],
                     MessageStore.open(tmp_path / "erin.messages", b"pw", n_log2=10), notify=False)
    erin.start()
    async with alice.ua:
        await alice.ua.register()
        sent = await alice.send_text(lab.uri("erin"), "open me when you can")
        assert sent.status == "stored"
    async with erin.ua:
        await erin.ua.register()
        await _until(lambda: erin.counters.refused.get(secure.NO_KEYS) == 1, "erin cannot open it yet")
        assert erin.received.empty() and len(_stored_for(lab, "erin")) == 1
        client = KmsClient(lab.kms_url, lab.tokens["erin"], cafile=lab.kms_ca)
        ks["erin"].import_key_prov(client.key_prov(lab.uri("erin"), past))
        got = None
        for _ in range(20):   # msilo re-offers it at a REGISTER after its check timer (1 s) reset it
            await erin.ua.register()
            try:
                got = await asyncio.wait_for(erin.received.get(), 1.0)
                break
            except TimeoutError:
                continue
        assert got is not None and (got.id, got.text) == (sent.id, "open me when you can")
        await _until(lambda: not _stored_for(lab, "erin"), "msilo deletes the delivered message")
    assert erin.counters.refused.get(secure.NO_KEYS, 0) >= 1 and erin.counters.received == 1


async def test_receiver_tables_are_built_before_the_first_message(silo_lab: Lab, tmp_path: Path) -> None:
    lab = silo_lab
    bob = _messenger(lab, "bob", tmp_path)
    assert not bob.opener.prepared
    bob.start()                       # builds the SAKKE receiver tables in a worker thread, as calls do
    await bob.keys_ready()
    held = [k.key_period_no for k in lab.keystores["bob"].mikey_key_sets(lab.uri("bob"))]
    responder = bob.opener.responder()
    assert bob.opener.prepared and responder.prepared_periods == tuple(held)
    assert all(rx.precomputed for rx in responder._receivers.values())
