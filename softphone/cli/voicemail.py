"""``softphone voicemail record|list|play``: voice messages, Opus in one end-to-end encrypted message.

``record --to URI`` records ``--seconds`` from the microphone (or sends ``--play WAV``), encodes it with
Opus and sends it as a secure message (at most 12 s: one message carries at most 16 KiB, see
:mod:`softphone.messaging.voice`). ``list`` shows voice messages from the history; ``play ID`` plays one
on the speaker or writes it with ``--out WAV``. Exit status: 0 ok, 1 failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from softphone.cli import CliError, configured_account
from softphone.cli.message import _line, _messenger, _run, _store
from softphone.media.audio import AudioError, SoundDeviceSink, SoundDeviceSource, read_wav, write_wav
from softphone.media.codecs import FRAME_MS, FRAME_SAMPLES
from softphone.messaging import voice
from softphone.messaging.messenger import SendFailed
from softphone.messaging.secure import SealError
from softphone.sip.errors import SipError


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml)")
    common.add_argument("--account", help="account name or URI")
    common.add_argument("--json", action="store_true", help="print JSON")
    top = subparsers.add_parser("voicemail", help="voice messages (Opus, end-to-end encrypted)")
    sub = top.add_subparsers(dest="voicemail_command", metavar="ACTION", required=True)
    p = sub.add_parser("record", parents=[common], help="record and send a voice message")
    p.add_argument("--to", required=True, help="recipient, e.g. sip:bob@example.org")
    p.add_argument("--play", type=Path, help="send this WAV file instead of recording the microphone")
    p.add_argument("--seconds", type=float, default=10.0,
                   help=f"microphone recording length (max {voice.MAX_SECONDS:g})")
    p.set_defaults(func=cmd_record)
    p = sub.add_parser("list", parents=[common], help="list voice messages")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("play", parents=[common], help="play a voice message")
    p.add_argument("id", help="message ID (a unique prefix is enough)")
    p.add_argument("--out", type=Path, help="write it to this WAV file instead of the speaker")
    p.set_defaults(func=cmd_play)


def _record(seconds: float) -> np.ndarray:
    if not 0 < seconds <= voice.MAX_SECONDS:
        raise CliError(f"--seconds must be in (0, {voice.MAX_SECONDS:g}]", 2)
    try:
        mic = SoundDeviceSource()
    except AudioError as exc:
        raise CliError(f"{exc} (use --play WAV without a microphone)", 2) from None
    frames = []
    try:
        start = time.monotonic()
        for i in range(int(seconds * 1000 / FRAME_MS)):
            time.sleep(max(0.0, start + (i + 1) * FRAME_MS / 1000 - time.monotonic()))
            frame = mic.read()
            frames.append(frame if frame is not None else np.zeros(FRAME_SAMPLES, dtype=np.int16))
    finally:
        mic.close()
    return np.concatenate(frames)


def cmd_record(args: argparse.Namespace) -> int:
    if args.play is not None:
        try:
            pcm = read_wav(args.play)
        except AudioError as exc:
            raise CliError(str(exc), 2) from None
    else:
        pcm = _record(args.seconds)
    try:
        items = voice.items(pcm)
    except voice.VoiceError as exc:
        raise CliError(str(exc), 2) from None
    messenger, _ = _messenger(args)

    async def go() -> None:
        async with messenger.ua:
            try:
                msg = await messenger.send(args.to, items)
            except (SendFailed, SealError, SipError) as exc:
                raise CliError(str(exc), 1) from None
            print(_line(msg, args.json), flush=True)

    _run(go)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(configured_account(args.config, args.account, code=2))
    msgs = [m for m in store.messages() if voice.voice_item(m.attachments) is not None]
    if args.json:
        print(json.dumps([m.public() for m in msgs]))
    else:
        for m in msgs:
            print(_line(m, False))
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    store = _store(configured_account(args.config, args.account, code=2))
    msg = store.find(args.id)
    item = voice.voice_item(msg.attachments) if msg is not None else None
    if msg is None or item is None:
        raise CliError(f"no single voice message with ID {args.id}", 1)
    try:
        pcm = voice.decode(item)
    except voice.VoiceError as exc:
        raise CliError(str(exc), 1) from None
    if msg.direction == "in" and msg.status != "read":
        store.set_status(msg.id, "read")
        store.save()
    if args.out is not None:
        write_wav(args.out, pcm)
        print(json.dumps({"id": msg.id, "seconds": len(pcm) / 48000, "wav": str(args.out)}) if args.json
              else f"wrote {args.out} ({len(pcm) / 48000:.1f} s from {msg.peer})")
        return 0
    try:
        speaker = SoundDeviceSink()
    except AudioError as exc:
        raise CliError(f"{exc} (use --out WAV without a speaker)", 2) from None

    async def play() -> None:
        try:
            for start in range(0, len(pcm), FRAME_SAMPLES):
                frame = pcm[start:start + FRAME_SAMPLES]
                speaker.write(np.pad(frame, (0, FRAME_SAMPLES - len(frame))))
                await asyncio.sleep(FRAME_MS / 1000)
        finally:
            speaker.close()

    _run(play)
    return 0
