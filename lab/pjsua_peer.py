"""A pjsua2 (PyPI ``pjsua2-python``) SIP peer in a subprocess, driven by stdin, reporting JSON lines.

Harness side::

    with PjsuaPeer(answer=200) as peer:          # listens on UDP+TCP 127.0.0.1:peer.port
        peer.uri                                  # sip:peer@127.0.0.1:<port>
        peer.send("dial sip:alice@127.0.0.1:5070")
        event = peer.wait_event("state", lambda e: e["state"] == "CONFIRMED")
        peer.send("hangup")

Events: ``ready``, ``incoming`` (with the raw INVITE in ``msg``), ``state`` (state, status),
``error``. Commands: ``dial URI``, ``hangup``, ``quit``. The process side follows the
pjsua2 pitfalls in PEERS.md: one polling thread, null audio device, Call objects kept alive.
"""

from __future__ import annotations

import argparse
import json
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from lab.proc import free_port


def _emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"event": kind, **fields}), flush=True)


def run_peer(port: int, answer: int) -> int:  # pragma: no cover - runs in the child process
    """The child: a pjsua2 endpoint answering incoming calls with ``answer`` and dialling on command."""
    import pjsua2 as pj  # imported here: only the child needs the binding

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    calls: list[Any] = []

    class Call(pj.Call):  # type: ignore[misc]
        def onCallState(self, prm: Any) -> None:
            ci = self.getInfo()
            _emit("state", state=ci.stateText, status=ci.lastStatusCode, reason=ci.lastReason)

    class Account(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            call = Call(self, prm.callId)
            calls.append(call)
            _emit("incoming", msg=prm.rdata.wholeMsg)
            op = pj.CallOpParam()
            op.statusCode = answer
            call.answer(op)

    acc = Account()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:peer@127.0.0.1:{port}"
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acc.create(acfg)
    _emit("ready", port=port)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            ep.libHandleEvents(20)
            ready, _, _ = select.select([sys.stdin], [], [], 0)
            if not ready:
                continue
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                break
            cmd, _, arg = line.strip().partition(" ")
            try:
                if cmd == "dial":
                    call = Call(acc)
                    calls.append(call)
                    call.makeCall(arg, pj.CallOpParam(True))
                elif cmd == "hangup":
                    for call in calls:
                        if call.isActive():
                            call.hangup(pj.CallOpParam(True))
                else:
                    _emit("error", message=f"unknown command {cmd!r}")
            except pj.Error as exc:
                _emit("error", message=str(exc.info()))
    finally:
        ep.hangupAllCalls()
        for _ in range(10):
            ep.libHandleEvents(20)
        calls.clear()
        del acc
        ep.libDestroy()
    return 0


class PjsuaPeer:
    """Run :func:`run_peer` in a child Python; collect its JSON events."""

    def __init__(self, answer: int = 200) -> None:
        self.port = free_port()
        self.answer = answer
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return f"sip:peer@127.0.0.1:{self.port}"

    def start(self) -> PjsuaPeer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.pjsua_peer", "--port", str(self.port), "--answer", str(self.answer)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.wait_event("ready", timeout=20)
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.log.append(line.rstrip("\n"))  # pjlib log output

    def send(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_event(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda e: True,
                   timeout: float = 10.0) -> dict[str, Any]:
        """The first (already seen or next) event of ``kind`` satisfying ``pred``."""
        for event in self.seen:
            if event["event"] == kind and pred(event):
                self.seen.remove(event)
                return event
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pjsua peer: no {kind!r} event; saw {self.seen[-10:]}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event["event"] == kind and pred(event):
                return event
            self.seen.append(event)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        if self._reader:
            self._reader.join(2)

    def __enter__(self) -> PjsuaPeer:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - child entry point
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", type=int, default=200)
    args = parser.parse_args(argv)
    return run_peer(args.port, args.answer)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
