"""``scripts/lab up|down|status``: a local Secure Chorus deployment for trying two phones on one machine.

``up`` starts Kamailio (SIP over TLS) and a KMS (HTTPS) on 127.0.0.1 in a state directory (default
``build/lab`` in the source tree, or ``--dir``), provisions the users (``--users alice,bob``), writes
their accounts files, keystores and secrets (0600) to ``DIR/accounts/`` and prints the two
``softphone`` command lines to run next. The deployment is held by a small supervisor process
(``DIR/lab.pid``) that ``down`` stops; ``status`` says what runs. A source-checkout tool: ``lab/`` is
not shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lab
from lab.deployment import Lab, LabError

SOURCE_ROOT = Path(lab.__file__).resolve().parents[1]
DEFAULT_DIR = SOURCE_ROOT / "build" / "lab"
PID, STATE, LOG = "lab.pid", "state.json", "lab.log"
_USER = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(directory: Path) -> int | None:
    try:
        return int((directory / PID).read_text().strip())
    except (OSError, ValueError):
        return None


def _read_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return None


def _users(text: str) -> tuple[str, ...]:
    users = tuple(u.strip() for u in text.split(",") if u.strip())
    bad = [u for u in users if not _USER.match(u)]
    if bad or not users or len(set(users)) != len(users):
        raise argparse.ArgumentTypeError(f"--users wants distinct lower-case names separated by commas, got {text!r}")
    return users


# --- the supervisor: holds the Lab until SIGTERM -------------------------------------------------------
def serve(directory: Path, users: tuple[str, ...]) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Lab(directory / "run", users=users) as running:
        accounts = running.write_accounts(directory / "accounts")
        assert running.kamailio is not None and running.kms is not None
        state = {
            "pid": os.getpid(),
            "users": {u: {"uri": running.uri(u), "accounts": str(accounts[u])} for u in users},
            "kamailio": {"pid": running.kamailio.proc.proc.pid if running.kamailio.proc else None,
                         "tls": f"127.0.0.1:{running.kamailio.tls_port}",
                         "udp_tcp": f"127.0.0.1:{running.kamailio.udp_port}"},
            "kms": {"pid": running.kms.proc.proc.pid, "url": running.kms_url, "ca": str(running.kms_ca)},
            "ca": str(running.pki["ca"].cert),
            "next": running.next_steps(accounts),
        }
        tmp = directory / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(directory / STATE)
        while not stop.wait(1.0):
            pass
    (directory / STATE).unlink(missing_ok=True)
    return 0


# --- commands --------------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    pid = _read_pid(directory)
    if pid is not None and _pid_alive(pid):
        print(f"lab: already running in {directory} (pid {pid}); 'scripts/lab down --dir {directory}' first",
              file=sys.stderr)
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    for name in (STATE, PID):
        (directory / name).unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    with open(directory / LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "_serve", "--dir", str(directory),
                                 "--users", ",".join(args.users)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=SOURCE_ROOT, start_new_session=True)
    (directory / PID).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = _read_state(directory)
        if state is not None:
            break
        if proc.poll() is not None:
            tail = (directory / LOG).read_text(errors="replace").strip().splitlines()[-5:]
            print(f"lab: failed to start: {' | '.join(tail)[:600]}", file=sys.stderr)
            (directory / PID).unlink(missing_ok=True)
            return 1
        time.sleep(0.2)
    else:
        _stop(directory, proc.pid, 15.0)
        print(f"lab: not up within {args.timeout:g} s (log: {directory / LOG})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(state))
        return 0
    print(f"lab up in {directory} (pid {proc.pid})")
    print(f"  Kamailio  SIP over TLS on {state['kamailio']['tls']} (CA {state['ca']})")
    print(f"  KMS       {state['kms']['url']}")
    for user, info in state["users"].items():
        print(f"  {user:<9} {info['uri']}  accounts file {info['accounts']}")
    print("Next, in two terminals (activate .venv first: . .venv/bin/activate):")
    for line in state["next"]:
        print(f"  {line}")
    print(f"Stop it with: scripts/lab down --dir {directory}")
    return 0


def _stop(directory: Path, pid: int, timeout: float) -> bool:
    """SIGTERM the supervisor (it stops Kamailio and the KMS), then kill leftovers; True if all gone."""
    state = _read_state(directory) or {}
    children = [p for p in (state.get("kamailio", {}).get("pid"), state.get("kms", {}).get("pid")) if p]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in [pid, *children]:
        if _pid_alive(p):
            try:
                os.killpg(p, signal.SIGKILL) if p == pid else os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.1)
    return not any(_pid_alive(p) for p in [pid, *children])


def cmd_down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    pid = _read_pid(directory)
    if pid is None:
        print(f"lab: nothing runs in {directory}")
        return 0
    gone = _stop(directory, pid, args.timeout) if _pid_alive(pid) else True
    for name in (PID, STATE):
        (directory / name).unlink(missing_ok=True)
    print(f"lab down ({directory})" if gone else f"lab: some processes of {directory} would not stop")
    return 0 if gone else 1


def cmd_status(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    pid = _read_pid(directory)
    state = _read_state(directory)
    if pid is None or not _pid_alive(pid):
        if args.json:
            print(json.dumps({"running": False, "dir": str(directory)}))
        else:
            print(f"lab: not running in {directory}")
        return 3
    if args.json:
        print(json.dumps({"running": True, "dir": str(directory), **(state or {})}))
        return 0
    if state is None:
        print(f"lab: starting in {directory} (pid {pid})")
        return 0
    print(f"lab: running in {directory} (pid {pid})")
    kam, kms = state["kamailio"], state["kms"]
    print(f"  Kamailio  pid {kam['pid']} {'up' if kam['pid'] and _pid_alive(kam['pid']) else 'DOWN'}, TLS {kam['tls']}")
    print(f"  KMS       pid {kms['pid']} {'up' if _pid_alive(kms['pid']) else 'DOWN'}, {kms['url']}")
    for user, info in state["users"].items():
        print(f"  {user:<9} {info['uri']}  {info['accounts']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
    p = sub.add_parser("up", parents=[common], help="start Kamailio (TLS) and a KMS, provision users")
    p.add_argument("--users", type=_users, default=("alice", "bob"), help="comma-separated names (default alice,bob)")
    p.add_argument("--timeout", type=float, default=90.0, help="give up if not up within this many seconds")
    p.add_argument("--json", action="store_true", help="print the state as one JSON object")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", parents=[common], help="stop what 'up' started")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait before killing")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", parents=[common], help="what runs (exit 3 when nothing)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("_serve", parents=[common])  # the supervisor 'up' starts
    p.add_argument("--users", type=_users, required=True)
    p.set_defaults(func=lambda a: serve(Path(a.dir), a.users))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
