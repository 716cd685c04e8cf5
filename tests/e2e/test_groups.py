"""Group keys through the real lab: the GMS (`softphone-kms group`, its own KMS identity) delivers GMKs over
Kamailio (TLS) with msilo for an offline member; phones verify and store them; a removal rekeys."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto.kdf import guk_id
from gms.keys import GmsSigner
from gms.state import GroupState
from kmsinterface.groupdoc import CONTENT_TYPE
from lab.deployment import Lab
from softphone.keys.groups import GroupKey, active_key
from softphone.keys.kms_client import KmsClient
from softphone.messaging.messenger import GROUP_KEY_REFUSED, Messenger
from softphone.messaging.store import MessageStore
from softphone.sip.im import send_message
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

pytestmark = pytest.mark.slow
MEMBERS = ("alice", "bob", "carol", "dave")


@pytest.fixture(scope="module")
def gms_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("gmslab"), users=(*MEMBERS, "mallory", "erin", "gms"), msilo=True) as running:
        yield running


def _messenger(lab: Lab, user: str, tmp: Path) -> Messenger:
    ua = UserAgent(lab.ua_config(user))
    store = MessageStore.open(tmp / f"{user}-{id(ua)}.messages", b"pw", n_log2=10)
    client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return Messenger(lab.uri(user), ua, lab.keystores[user], store, kms_client=client, notify=False,
                     trusted_gms=(lab.gms_uri(),))


async def _key(m: Messenger) -> GroupKey:
    return await asyncio.wait_for(m.group_keys.get(), 30)


async def test_create_offline_member_remove_rekey_and_audit(gms_lab: Lab, tmp_path: Path) -> None:
    lab = gms_lab
    team = "sip:team@lab.test"
    phones = {u: _messenger(lab, u, tmp_path) for u in MEMBERS}
    for m in phones.values():
        m.start()
    online = [phones[u] for u in ("alice", "bob", "carol")]
    for m in online:
        await m.ua.__aenter__()
        await m.ua.register()
    try:
        members = [a for u in MEMBERS for a in ("--member", lab.uri(u))]
        done = await asyncio.to_thread(lab.group, "create", team, *members, "--text", "Team", "--lifetime", "86400")
        assert done.returncode == 0, done.stderr
        assert f"{lab.uri('dave')}: 202" in done.stdout          # offline: stored by msilo
        first = {u: await _key(phones[u]) for u in ("alice", "bob", "carol")}
        dave = phones["dave"]
        async with dave.ua:
            await dave.ua.register()                             # msilo dumps the stored group key
            first["dave"] = await _key(dave)
            gmk_ids = {k.gmk_id for k in first.values()}
            assert len(gmk_ids) == 1
            gmk = first["alice"]
            for u, k in first.items():
                assert (k.group_uri, k.own_uri, k.gms_uri, k.text) == (team, lab.uri(u), lab.gms_uri(), "Team")
                assert k.members == tuple(lab.uri(m) for m in MEMBERS) and k.expiry == k.activation + 86400
                assert k.own_guk_id == guk_id(gmk.gmk, gmk.gmk_id, lab.uri(u))
                assert [g.gmk_id for g in lab.keystores[u].group_keys(team)] == [gmk.gmk_id]
            assert len({k.own_guk_id for k in first.values()}) == 4

            # dave removed (online, listening): the other three get a new GMK, dave nothing
            done = await asyncio.to_thread(lab.group, "remove", team, lab.uri("dave"))
            assert done.returncode == 0, done.stderr
            second = {u: await _key(phones[u]) for u in ("alice", "bob", "carol")}
            assert len({k.gmk_id for k in second.values()}) == 1
            new = second["alice"]
            assert new.gmk_id != gmk.gmk_id and new.gmk != gmk.gmk
            assert new.members == tuple(lab.uri(m) for m in MEMBERS[:3])
            for u in ("alice", "bob", "carol"):
                held = lab.keystores[u].group_keys(team)
                assert {g.gmk_id for g in held} == {gmk.gmk_id, new.gmk_id}
                assert active_key(held, team, new.activation + 1).gmk_id == new.gmk_id
            await asyncio.sleep(1.0)                              # anything for dave would have arrived by now
            assert dave.group_keys.empty()
            assert [g.gmk_id for g in lab.keystores["dave"].group_keys(team)] == [gmk.gmk_id]
    finally:
        for m in online:
            await m.ua.__aexit__(None, None, None)

    listed = lab.group("list", "--json")
    assert listed.returncode == 0, listed.stderr
    group = json.loads(listed.stdout.splitlines()[0])
    assert group["uri"] == team and len(group["gmks"]) == 2 and "gmk" not in group["gmks"][0]
    shown = lab.audit("show", "--json", "--event", "group")
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line)["event"] for line in shown.stdout.splitlines() if line.strip()]
    assert events.count("group.create") == 1 and events.count("group.remove") == 1
    assert events.count("group.rekey") == 1 and events.count("group.deliver") == 4 + 3
    verify = lab.audit("verify")
    assert verify.returncode == 0 and "audit log intact" in verify.stdout, verify.stderr


async def test_unknown_gms_refused_in_words(gms_lab: Lab, tmp_path: Path) -> None:
    """Mallory, a user of the same KMS, plays GMS: her correctly signed group key is refused by name."""
    lab = gms_lab
    bob = _messenger(lab, "bob", tmp_path)
    bob.start()
    state = GroupState()
    d = state.create("sip:fake@lab.test", [lab.uri("bob")], int(time.time()))[0]
    doc = GmsSigner(lab.uri("mallory"), lab.keystores["mallory"]).document(d, time.time())
    async with bob.ua, UserAgent(lab.ua_config("mallory")) as mallory:
        await bob.ua.register()
        await mallory.register()
        resp = await send_message(mallory, lab.uri("bob"), doc.encode(), CONTENT_TYPE)
    warning = resp.headers.get("Warning") or ""
    assert resp.status == 200 and GROUP_KEY_REFUSED in warning and "unknown GMS" in warning
    assert "not a trusted GMS" in warning
    assert bob.group_keys.empty() and not lab.keystores["bob"].group_keys("sip:fake@lab.test")
    assert bob.counters.refused.get("unknown GMS") == 1


def test_register_stores_group_keys_and_groups_list_shows_them(gms_lab: Lab, tmp_path: Path) -> None:
    """`softphone register` takes the GMS's MESSAGE into the keystore; `softphone groups list` shows it."""
    lab = gms_lab
    config = lab.account_file("erin", tmp_path / "erin")
    assert f'trusted_gms = ["{lab.gms_uri()}"]' in config.read_text()
    phone = subprocess.Popen([sys.executable, "-m", "softphone.cli", "register", "--config", str(config),
                              "--stay", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert phone.stdout is not None
        first = phone.stdout.readline()
        assert first.startswith("registered sip:erin@lab.test") or "registered" in first, first
        done = lab.group("create", "sip:ops@lab.test", "--member", lab.uri("erin"))
        assert done.returncode == 0 and f"{lab.uri('erin')}: 200" in done.stdout, done.stdout + done.stderr
        line = ""
        for _ in range(20):
            line = phone.stdout.readline()
            if "group key" in line or not line:
                break
        assert "of sip:ops@lab.test from sip:gms@lab.test stored" in line, line
    finally:
        phone.terminate()
        phone.communicate(timeout=30)
    out = subprocess.run([sys.executable, "-m", "softphone.cli", "groups", "list", "--config", str(config), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["group"], r["state"], r["active"], r["gms"]) for r in rows] == [
        ("sip:ops@lab.test", "sending", True, lab.gms_uri())]
    text = subprocess.run([sys.executable, "-m", "softphone.cli", "groups", "list", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and f"sip:ops@lab.test  GMK {rows[0]['gmk_id']}  sending" in text.stdout
