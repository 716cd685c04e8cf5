"""``softphone message send|listen|list|read|delete``: end-to-end encrypted messages.

History is kept beside the keystore (``<keystore>.messages``, same passphrase, 0600, encrypted).
``send`` and ``listen`` register while they run, so messages stored for us by the proxy (msilo)
arrive and are verified, opened and stored; ``list`` and ``read`` work offline from the history
(``read`` also sends the protected "read" notification unless ``--no-notify``).
Exit status: 0 ok, 1 sending failed / unknown message, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from crypto import mcdata
from softphone.calls.phone import settings_from_account
from softphone.cli import CliError, configured_account, user_errors
from softphone.config import Account
from softphone.keys.kms_client import KmsClient
from softphone.messaging.messenger import Messenger, SendFailed
from softphone.messaging.secure import MAX_ATTACHMENT, SealError
from softphone.messaging.store import MessageStore, StoredMessage
from softphone.sip.ua import UserAgent

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml)")
    common.add_argument("--account", help="account name or URI")
    common.add_argument("--json", action="store_true", help="print JSON")
    top = subparsers.add_parser("message", help="end-to-end encrypted messages (MIKEY-SAKKE + MCData payloads)")
    sub = top.add_subparsers(dest="message_command", metavar="ACTION", required=True)
    p = sub.add_parser("send", parents=[common], help="send a text or a file")
    p.add_argument("--to", required=True, help="recipient, e.g. sip:bob@example.org")
    p.add_argument("text", nargs="?", help="the message text")
    p.add_argument("--file", type=Path, help=f"attach this file (at most {MAX_ATTACHMENT} octets)")
    p.add_argument("--reply-to", help="ID of the message this answers")
    p.add_argument("--wait", type=float, default=0.0, help="stay registered this many seconds for receipts")
    p.set_defaults(func=cmd_send)
    p = sub.add_parser("listen", parents=[common], help="register and receive messages")
    p.add_argument("--duration", type=float, default=30.0, help="listen this many seconds")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.set_defaults(func=cmd_listen)
    p = sub.add_parser("list", parents=[common], help="list the message history")
    p.add_argument("--peer", help="only this conversation")
    p.add_argument("--refusals", action="store_true", help="show refused messages (counts and reasons) instead")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("read", parents=[common], help="show one message and mark it read")
    p.add_argument("id", help="message ID (a unique prefix is enough)")
    p.add_argument("--save", type=Path, help="write the first attachment to this file")
    p.add_argument("--no-notify", action="store_true", help="do not send the read notification")
    p.set_defaults(func=cmd_read)
    p = sub.add_parser("delete", parents=[common], help="delete a conversation, its messages and its keys")
    p.add_argument("peer", help="the other party's URI")
    p.set_defaults(func=cmd_delete)


def store_path(account: Account) -> Path:
    if account.keystore is None:
        raise CliError(f"account {account.name}: messages need a keystore (keystore = ...)", 2)
    return account.keystore.with_name(account.keystore.name + ".messages")


def _store(account: Account) -> MessageStore:
    with user_errors(2):
        passphrase = account.keystore_passphrase()
        if not passphrase:
            raise CliError(f"account {account.name}: no keystore passphrase configured", 2)
        return MessageStore.open(store_path(account), passphrase.encode())


def _messenger(args: argparse.Namespace) -> tuple[Messenger, Account]:
    account = configured_account(args.config, args.account, code=2)
    with user_errors(2):
        settings = settings_from_account(account)
    if settings.keystore is None:
        raise CliError("messages need MIKEY-SAKKE keys (a keystore)", 2)
    client = (KmsClient(account.kms_url, account.kms_token() or "", cafile=account.kms_ca_file)
              if account.kms_url else None)
    return Messenger(settings.uri, UserAgent(settings.ua), settings.keystore, _store(account), kms_client=client,
                     revoked=settings.revoked, trusted_gms=account.trusted_gms), account


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro())  # type: ignore[arg-type]


def _line(m: StoredMessage, as_json: bool) -> str:
    if as_json:
        return json.dumps(m.public())
    when = datetime.fromtimestamp(m.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
    arrow = "←" if m.direction == "in" else "→"
    extra = f" [+{len(m.attachments)} attachment(s)]" if m.attachments else ""
    return f"{m.id[:8]} {when} {arrow} {m.peer} ({m.status}, verified MIKEY-SAKKE): {m.text}{extra}"


def _print_received(messenger: Messenger, as_json: bool) -> None:
    while not messenger.received.empty():
        print(_line(messenger.received.get_nowait(), as_json), flush=True)


def cmd_send(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.file is None):
        raise CliError("give the message TEXT or --file F (one of them)", 2)
    if args.file is not None:
        try:
            data = args.file.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}", 2) from None
        items = [mcdata.DataItem(mcdata.ContentType.TEXT, args.file.name.encode()),
                 mcdata.DataItem(mcdata.ContentType.BINARY, data)]
    else:
        items = [mcdata.DataItem(mcdata.ContentType.TEXT, args.text.encode("utf-8"))]
    messenger, _ = _messenger(args)
    messenger.start()

    async def go() -> StoredMessage:
        async with messenger.ua:
            with user_errors(1):
                await messenger.ua.register()
            try:
                msg = await messenger.send(args.to, items, in_reply_to=args.reply_to)
            except (SendFailed, SealError) as exc:
                raise CliError(str(exc), 1) from None
            print(_line(msg, args.json), flush=True)
            await asyncio.sleep(max(0.0, args.wait))
            while not messenger.notifications.empty():
                mid, what = messenger.notifications.get_nowait()
                print(json.dumps({"receipt": what, "id": mid}) if args.json else f"{mid[:8]} {what}", flush=True)
            _print_received(messenger, args.json)
            return msg

    _run(go)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    messenger, _ = _messenger(args)
    messenger.start()

    async def go() -> None:
        async with messenger.ua:
            with user_errors(1):
                await messenger.ua.register()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + args.duration
            got = 0
            while (left := deadline - loop.time()) > 0 and (args.count is None or got < args.count):
                try:
                    msg = await asyncio.wait_for(messenger.received.get(), left)
                except TimeoutError:
                    break
                got += 1
                print(_line(msg, args.json), flush=True)
        while not messenger.group_keys.empty():   # stored in the keystore as they came (softphone groups list)
            key = messenger.group_keys.get_nowait()
            print(json.dumps({"group_key": f"{key.gmk_id:08x}", "group": key.group_uri, "gms": key.gms_uri})
                  if args.json else f"group key {key.gmk_id:08x} of {key.group_uri} from {key.gms_uri} stored",
                  flush=True)
        refused = messenger.counters.refused
        if refused:
            print(json.dumps({"refused": refused}) if args.json else
                  "refused: " + ", ".join(f"{k} {v}" for k, v in refused.items()), file=sys.stderr)

    _run(go)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    account = configured_account(args.config, args.account, code=2)
    store = _store(account)
    if args.refusals:
        if args.json:
            print(json.dumps({"counts": store.refusals, "recent": store.refusal_log}))
        else:
            for r in store.refusal_log:
                print(f"{datetime.fromtimestamp(r['time'], UTC):%Y-%m-%d %H:%M:%S} refused ({r['reason']}) "
                      f"claimed from {r['claimed_sender']}: {r['detail']}")
        return 0
    msgs = store.messages(args.peer)
    if args.json:
        print(json.dumps([m.public() for m in msgs]))
    else:
        for m in msgs:
            print(_line(m, False))
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    account = configured_account(args.config, args.account, code=2)
    store = _store(account)
    msg = store.find(args.id)
    if msg is None:
        raise CliError(f"no single message with ID {args.id}", 1)
    if args.save is not None and msg.attachments:
        args.save.write_bytes(msg.attachments[0][1])
    out: dict[str, Any] = msg.public()
    if msg.direction == "in" and msg.status != "read":
        if args.no_notify:
            store.set_status(msg.id, "read")
            store.save()
        else:
            messenger, _ = _messenger(args)

            async def go() -> None:
                async with messenger.ua:
                    await messenger.mark_read(msg.id)

            _run(go)
        out["status"] = "read"
    if args.json:
        print(json.dumps(out))
    else:
        print(f"From: {msg.peer}  (identity verified by MIKEY-SAKKE/ECCSI)" if msg.direction == "in" else
              f"To: {msg.peer}")
        print(f"Date: {datetime.fromtimestamp(msg.time, UTC):%Y-%m-%d %H:%M:%S} UTC   ID: {msg.id}")
        print()
        print(msg.text)
        for ct, data in msg.attachments:
            print(f"[attachment: content type {ct}, {len(data)} octets]")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    account = configured_account(args.config, args.account, code=2)
    if not _store(account).delete_conversation(args.peer):
        raise CliError(f"no conversation with {args.peer}", 1)
    print(f"deleted the conversation with {args.peer} (messages, its key and receipts)")
    return 0
