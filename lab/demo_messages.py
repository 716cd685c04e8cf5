"""``scripts/demo messages``: end-to-end encrypted messages delivered to an offline user, on this machine.

Starts the lab (CA, Kamailio over TLS with msilo on SQLite, the HTTPS KMS), provisions alice and bob.
Alice registers and writes to bob, who is not registered: Kamailio stores the MESSAGEs (202) and the
store holds only ciphertext (checked). Bob registers later; msilo delivers, bob verifies each
I_MESSAGE (ECCSI, his RSK for the message's key period), decrypts, sends protected delivered and read
receipts and replies; alice reads the reply. A replayed copy of alice's first message is refused.
Alice then leaves bob a voice message (espeak-ng speech, cut to 10 s, Opus in one secure message);
bob decodes and plays it back, checked for speech (``speech``) and scored with PESQ (``pesq_mos``).
The last line is one JSON object; exit status 0 only when everything arrived as sent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crypto import mcdata
from lab.audiocheck import SPEECH_PRESENT, compare
from lab.demo import make_speech, scenario
from lab.deployment import Lab, LabError
from softphone.keys.kms_client import KmsClient
from softphone.media.audio import read_wav, write_wav
from softphone.messaging import voice
from softphone.messaging.messenger import Messenger
from softphone.messaging.store import MessageStore
from softphone.sip.im import send_message
from softphone.sip.ua import UserAgent

TEXTS = ("Hi Bob, call me when you are back.", "The meeting moved to 10:00.")
ATTACHMENT = bytes(range(256)) * 16  # 4 KiB binary attachment


def messenger(lab: Lab, user: str, workdir: Path) -> Messenger:
    store = MessageStore.open(workdir / f"{user}.messages", lab.keystore_passphrases[user].encode(), n_log2=12)
    client = KmsClient(lab.kms_url, lab.tokens[user], cafile=lab.kms_ca)
    return Messenger(lab.uri(user), UserAgent(lab.ua_config(user)), lab.keystores[user], store, kms_client=client)


async def within(awaitable: Any, seconds: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise TimeoutError(f"no {what} within {seconds:g} s") from None


async def run(lab: Lab, workdir: Path, log: Any, result: dict[str, Any]) -> None:
    assert lab.kamailio is not None
    alice, bob = messenger(lab, "alice", workdir), messenger(lab, "bob", workdir)
    alice.start()
    bob.start()
    async with alice.ua:
        await alice.ua.register()
        log("alice registered; bob is offline")
        sent = [await alice.send_text(lab.uri("bob"), t) for t in TEXTS]
        sent.append(await alice.send(lab.uri("bob"), [mcdata.DataItem(mcdata.ContentType.TEXT, b"notes.bin"),
                                                      mcdata.DataItem(mcdata.ContentType.BINARY, ATTACHMENT)]))
        result["sent"] = len(sent)
        result["stored_offline"] = sum(m.status == "stored" for m in sent)
        stored = lab.kamailio.stored_messages()
        plaintext_seen = any(t.encode() in body for *_, body in stored for t in TEXTS) or any(
            ATTACHMENT[:64] in body for *_, body in stored)
        result["store_sees_plaintext"] = plaintext_seen
        log(f"msilo holds {len(stored)} MESSAGE(s) for bob, {sum(len(b) for *_, b in stored)} octets of ciphertext")
        async with bob.ua:
            started = time.monotonic()
            await bob.ua.register()
            log("bob registered: msilo delivers")
            got = [await within(bob.received.get(), 20, "stored message") for _ in sent]
            result["delivery_ms"] = round((time.monotonic() - started) * 1000)
            ok = [g.id for g in got] == [s.id for s in sent] and [g.text for g in got[:2]] == list(TEXTS) and \
                got[2].attachments == ((mcdata.ContentType.BINARY, ATTACHMENT),)
            result["delivered"] = len(got) if ok else 0
            for g in got:
                log(f"bob ← {g.peer} (verified): {g.text!r}{' + attachment' if g.attachments else ''}")
                await bob.mark_read(g.id)
            reply = await bob.send_text(lab.uri("alice"), "Back now, calling you in 5.", in_reply_to=got[0].id)
            back = await within(alice.received.get(), 15, "reply")
            log(f"alice ← {back.peer} (verified): {back.text!r}")
            result["reply"] = "ok" if back.id == reply.id and back.in_reply_to == sent[0].id else "wrong"
            receipts: dict[str, set[str]] = {}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and sum(len(v) for v in receipts.values()) < 2 * len(sent):
                mid, what = await within(alice.notifications.get(), 15, "receipts")
                receipts.setdefault(mid, set()).add(what)
            result["receipts"] = {"delivered": sum("delivered" in v for v in receipts.values()),
                                  "read": sum("read" in v for v in receipts.values())}
            # a copy of alice's first MESSAGE, replayed straight to bob, must not show up again
            replay = alice.sealer.seal_text(lab.uri("bob"), "replayed")
            await send_message(alice.ua, lab.uri("bob"), replay.body, replay.content_type)
            await within(bob.received.get(), 10, "fresh message")
            await send_message(alice.ua, lab.uri("bob"), replay.body, replay.content_type)
            await asyncio.sleep(0.2)
            result["refused"] = dict(bob.counters.refused)
            for r in bob.store.refusal_log:
                log(f"bob refused a message claimed from {r['claimed_sender']}: {r['reason']} ({r['detail']})")
            await voice_message(lab, alice, bob, workdir, log, result)


async def voice_message(lab: Lab, alice: Messenger, bob: Messenger, workdir: Path, log: Any,
                        result: dict[str, Any]) -> None:
    wav = workdir / "speech.wav"
    try:
        make_speech(wav)
    except LabError as exc:
        log(f"voice message skipped: {exc}")
        return
    speech = read_wav(wav)
    pcm = np.tile(speech, -(-10 * 48000 // len(speech)))[: 10 * 48000]  # exactly 10 s
    sent = await alice.send(lab.uri("bob"), voice.items(pcm))
    got = await within(bob.received.get(), 15, "voice message")
    item = voice.voice_item(got.attachments)
    if got.id != sent.id or item is None:
        result["voice_message"] = "wrong"
        return
    played = voice.decode(item)
    write_wav(workdir / "bob-voice-message.wav", played)
    match = compare(pcm, played)
    result.update(voice_octets=len(item), speech=match.speech, pesq_mos=match.pesq_mos)
    result["voice_message"] = "ok" if match.speech >= SPEECH_PRESENT else "no speech"
    log(f"bob ← voice message {got.text!r}: {len(item)} octets Opus, speech {match.speech}, PESQ {match.pesq_mos}")


def judge(result: dict[str, Any]) -> str | None:
    if result.get("stored_offline") != len(TEXTS) + 1:
        return f"only {result.get('stored_offline')} of {len(TEXTS) + 1} messages were stored offline"
    if result.get("delivered") != len(TEXTS) + 1:
        return "the stored messages did not arrive as sent"
    if result.get("store_sees_plaintext"):
        return "the store saw plaintext"
    if result.get("reply") != "ok":
        return "bob's reply did not reach alice"
    if result.get("receipts") != {"delivered": len(TEXTS) + 1, "read": len(TEXTS) + 1}:
        return f"receipts missing: {result.get('receipts')}"
    if result.get("refused") != {"replay": 1}:
        return f"replay not refused: {result.get('refused')}"
    if result.get("voice_message") not in ("ok", "skipped"):
        return f"voice message: {result.get('voice_message')}"
    return None


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("softphone.messaging").setLevel(logging.ERROR)  # refusals are reported below instead

    def body(_args: argparse.Namespace, workdir: Path, log: Callable[[str], None],
             result: dict[str, Any]) -> str | None:
        with Lab(workdir / "lab", msilo=True) as lab:
            log(f"KMS {lab.kms_url}, Kamailio TLS 127.0.0.1:{lab.kamailio.tls_port if lab.kamailio else '?'} "
                "with msilo (SQLite); alice and bob provisioned")
            asyncio.run(run(lab, workdir, log, result))
        return judge(result)

    result: dict[str, Any] = {"messages": "failed", "delivered": 0, "stored_offline": 0, "voice_message": "skipped"}
    return scenario("scripts/demo messages", __doc__, "securechorus-messages-", "messages", result, body, argv,
                    keep_help="work in DIR and keep it (logs, keystores, histories)")


if __name__ == "__main__":
    sys.exit(main())
