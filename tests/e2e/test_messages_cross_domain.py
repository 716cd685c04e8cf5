"""Secure and voice messages across two communities: kms.lab.test (alice@lab.test) and kms.other.test
(dave@other.test), each its own real KMS, one Kamailio+msilo serving both domains. Each phone trusts the
other community only after importing its exported certificate (``softphone-kms export-cert``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lab.audiocheck import SPEECH_PRESENT, compare
from lab.demo import make_speech
from lab.deployment import Lab, LabError
from softphone.keys.kms_client import KmsClient
from softphone.media.audio import read_wav
from softphone.messaging import secure, voice
from softphone.messaging.messenger import Messenger, SendFailed
from softphone.messaging.store import MessageStore
from softphone.sip.ua import UserAgent
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tool("kamailio")
    with Lab(tmp_path_factory.mktemp("xdomain"), users=("alice", "bob"), partners=("dave", "erin"),
             msilo=True) as running:
        yield running


def _messenger(lab: Lab, user: str, tmp: Path) -> Messenger:
    url, ca = lab.kms_of(user)
    store = MessageStore.open(tmp / f"{user}.messages", b"pw", n_log2=10)
    return Messenger(lab.uri(user), UserAgent(lab.ua_config(user)), lab.keystores[user], store,
                     kms_client=KmsClient(url, lab.tokens[user], cafile=ca))


async def test_untrusted_community_refused_in_words(two_labs: Lab, tmp_path: Path) -> None:
    lab = two_labs
    bob, erin = _messenger(lab, "bob", tmp_path), _messenger(lab, "erin", tmp_path)
    # bob trusts nobody else: he cannot even seal to other.test
    with pytest.raises(secure.SealError, match=r"no trusted KMS for other\.test: .*not trusted here"):
        bob.sealer.seal_text(lab.uri("erin"), "hi")
    # bob trusts kms.other.test, erin does not trust kms.lab.test: erin refuses, bob is told why
    lab.trust("bob", lab.export_certificate(True, tmp_path / "other.xml"))
    bob = _messenger(lab, "bob", tmp_path / "again")
    erin.start()
    async with bob.ua, erin.ua:
        await bob.ua.register()
        await erin.ua.register()
        with pytest.raises(SendFailed, match=r"refused by the recipient: message refused \(unknown KMS\): MIKEY-"
                                             r"SAKKE unknown KMS: the sender.s KMS kms\.lab\.test is not trusted"):
            await bob.send_text(lab.uri("erin"), "you do not know my KMS")
    assert erin.counters.refused == {secure.UNKNOWN_KMS: 1} and erin.received.empty()


async def test_message_and_voice_message_across_domains_offline(two_labs: Lab, tmp_path: Path) -> None:
    lab = two_labs
    assert lab.kamailio is not None
    lab.trust("alice", lab.export_certificate(True, tmp_path / "other.xml"))
    lab.trust("dave", lab.export_certificate(False, tmp_path / "lab.xml"))
    alice, dave = _messenger(lab, "alice", tmp_path), _messenger(lab, "dave", tmp_path)
    alice.start()
    dave.start()
    wav = tmp_path / "speech.wav"
    try:
        make_speech(wav)
    except LabError as exc:
        pytest.skip(f"no speech synthesiser for the voice message: {exc}")
    speech = read_wav(wav)
    pcm = np.tile(speech, -(-5 * 48000 // len(speech)))[: 5 * 48000]
    async with alice.ua:
        await alice.ua.register()
        text = await alice.send_text(lab.uri("dave"), "hello from lab.test")
        vm = await alice.send(lab.uri("dave"), voice.items(pcm))
        assert (text.status, vm.status) == ("stored", "stored")       # dave is offline: msilo keeps both
        stored = [m for m in lab.kamailio.stored_messages() if m[1].endswith("dave@other.test")]
        assert len(stored) == 2 and all(b"from lab.test" not in m[3] for m in stored)
        async with dave.ua:
            await dave.ua.register()
            got = [await asyncio.wait_for(dave.received.get(), 15) for _ in range(2)]
            by_id = {m.id: m for m in got}
            assert by_id[text.id].text == "hello from lab.test" and by_id[text.id].peer == lab.uri("alice")
            item = voice.voice_item(by_id[vm.id].attachments)
            assert item is not None and compare(pcm, voice.decode(item)).speech >= SPEECH_PRESENT
            notes = {await asyncio.wait_for(alice.notifications.get(), 15) for _ in range(2)}
            assert notes == {(text.id, "delivered"), (vm.id, "delivered")}
            reply = await dave.send_text(lab.uri("alice"), "hello from other.test", in_reply_to=text.id)
            back = await asyncio.wait_for(alice.received.get(), 15)
    assert reply.status == "sent" and back.text == "hello from other.test" and back.peer == lab.uri("dave")
    assert alice.counters.refused == {} and dave.counters.refused == {}
