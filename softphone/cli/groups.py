"""``softphone groups list [--json]``: the groups this phone holds keys for (never the keys).

One line per GMK: group, GMK-ID, the GMS that sent it, activation and expiry, and its state now:
``sending`` (the active GMK: latest activation ≤ now, used to send), ``valid`` (accepted on receive),
``pending`` (activation in the future), ``expired`` or ``revoked``. Keys arrive from the GMS while
``softphone message listen`` (or ``send``) runs; offline they wait in the proxy's store.
Exit status: 0 ok, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from softphone.cli import configured_account
from softphone.cli.keys import _keystore
from softphone.keys.groups import GroupKey, NoActiveGroupKey, active_key


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="accounts TOML file (default ~/.config/softphone/accounts.toml)")
    common.add_argument("--account", help="account name or URI")
    common.add_argument("--keystore", type=Path, help="keystore file (default: the account's)")
    common.add_argument("--passphrase-file", type=Path, help="keystore passphrase file, 0600 (default: the account's)")
    top = subparsers.add_parser("groups", help="groups and their keys (GMKs from the GMS)")
    sub = top.add_subparsers(dest="groups_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", parents=[common], help="groups, GMK-IDs, validity, which one is used to send")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)


def state_of(key: GroupKey, active: GroupKey | None, now: float) -> str:
    if key.revoked:
        return "revoked"
    if key.expiry and now >= key.expiry:
        return "expired"
    if key.activation > now:
        return "pending"
    return "sending" if active is not None and key.gmk_id == active.gmk_id else "valid"


def _when(t: int, none: str) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else none


def cmd_list(args: argparse.Namespace) -> int:
    account = configured_account(args.config, args.account, code=2) if args.keystore is None else None
    store = _keystore(args, account, create=False)
    now = time.time()
    keys = store.group_keys()
    rows: list[dict[str, Any]] = []
    for group in sorted({k.group_uri for k in keys}):
        try:
            active: GroupKey | None = active_key(keys, group, now)
        except NoActiveGroupKey:
            active = None
        for k in (k for k in keys if k.group_uri == group):
            rows.append({"group": group, "gmk_id": f"{k.gmk_id:08x}", "gms": k.gms_uri,
                         "own_guk_id": f"{k.own_guk_id:08x}",
                         "activation": k.activation, "expiry": k.expiry, "text": k.text,
                         "members": list(k.members), "state": state_of(k, active, now),
                         "active": active is not None and k.gmk_id == active.gmk_id})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no group keys (they arrive from the GMS while 'softphone message listen' runs)")
    for r in rows:
        print(f"{r['group']}  GMK {r['gmk_id']}  {r['state']:<7}  from {_when(r['activation'], 'always')}  "
              f"until {_when(r['expiry'], 'no expiry')}  GUK-ID {r['own_guk_id']}  by {r['gms']}  "
              f"{len(r['members'])} member(s)")
    return 0
