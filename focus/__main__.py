"""``softphone-focus``: run the group-call focus for one group URI until interrupted.

    softphone-focus --group sip:team@example.org --proxy sip:proxy.example.org --username team \\
                    --password-file team.pw

Prints one line per member joining or leaving and the per-member counters on exit. Errors are one line
and a non-zero exit status (2: bad arguments, 1: cannot register)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from focus.errors import FocusError
from focus.service import Focus, FocusConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="softphone-focus", description=__doc__.split("\n\n")[0])
    p.add_argument("--group", required=True, help="the group URI to register, e.g. sip:team@example.org")
    p.add_argument("--proxy", help="outbound proxy / registrar, e.g. sip:127.0.0.1:5060")
    p.add_argument("--username", help="digest user name of the group's SIP account")
    p.add_argument("--password-file", type=Path, help="file holding its digest password (keep it 0600)")
    p.add_argument("--host", default="127.0.0.1", help="address for SIP (default 127.0.0.1)")
    p.add_argument("--media-host", default=None, help="address for the members' media ports (default: --host)")
    p.add_argument("--max-members", type=int, default=64)
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    return p


async def _serve(config: FocusConfig, duration: float | None) -> None:
    async with Focus(config) as focus:
        print(f"focus: serving {config.group_uri}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(duration if duration is not None else float("inf"))
        for member, c in focus.counters().items():
            print(f"focus: {member}: {c.packets_in} packets in, {c.packets_out} out", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            print(f"softphone-focus: cannot read {args.password_file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("focus").setLevel(logging.INFO)       # members joining and leaving
    logging.getLogger("softphone").setLevel(logging.ERROR)  # a failed registration is reported once, below
    config = FocusConfig(args.group, args.username, password, args.proxy, args.host, args.media_host or args.host,
                         args.max_members)
    try:
        asyncio.run(_serve(config, args.duration))
    except FocusError as exc:
        print(f"softphone-focus: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
