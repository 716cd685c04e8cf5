"""A pjsua2 (PyPI ``pjsua2-python``) SIP peer in a subprocess, driven by stdin, reporting JSON lines.

Harness side::

    with PjsuaPeer(answer=200) as peer:          # listens on UDP+TCP 127.0.0.1:peer.port
        peer.uri                                  # sip:peer@127.0.0.1:<port>
        peer.send("dial sip:alice@127.0.0.1:5070")
        event = peer.wait_event("state", lambda e: e["state"] == "CONFIRMED")
        peer.send("hangup")

    PjsuaPeer(srtp=True, play=wav, record=heard)  # mandatory SDES SRTP; plays ``wav`` into each call
                                                  # and records what it hears to ``heard``

Events: ``ready``, ``incoming`` (with the raw INVITE in ``msg``), ``state`` (state, status, reason),
``media`` (audio stream active), ``error``, ``closed``. Commands: ``dial URI``, ``hangup``, ``quit``.
The process side follows the pjsua2 pitfalls in PEERS.md: one polling thread, null audio device,
Call and media objects kept alive and dropped before ``libDestroy``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from lab.proc import free_port

#: The directory holding the ``lab`` package, put on the child's PYTHONPATH for ``-m lab.pjsua_peer``.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]

def _emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"event": kind, **fields}), flush=True)


def run_peer(port: int, answer: int, srtp: bool = False, play: str | None = None,
             record: str | None = None) -> int:  # pragma: no cover - runs in the child process
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
    files: dict[str, Any] = {}  # the WAV player and recorder, by role
    if play:
        files["player"] = pj.AudioMediaPlayer()
        files["player"].createPlayer(play, pj.PJMEDIA_FILE_NO_LOOP)
    if record:
        files["recorder"] = pj.AudioMediaRecorder()
        files["recorder"].createRecorder(record)

    class Call(pj.Call):
        def onCallState(self, prm: Any) -> None:
            ci = self.getInfo()
            _emit("state", state=ci.stateText, status=ci.lastStatusCode, reason=ci.lastReason)

        def onCallMediaState(self, prm: Any) -> None:
            ci = self.getInfo()  # keep the CallInfo alive while iterating its media vector
            for i, mi in enumerate(ci.media):
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    stream = self.getAudioMedia(i)
                    if "player" in files:
                        files["player"].startTransmit(stream)
                    if "recorder" in files:
                        stream.startTransmit(files["recorder"])
                    _emit("media", index=i)

    class Account(pj.Account):
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
    if srtp:
        acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
        acfg.mediaConfig.srtpSecureSignaling = 0
    acc.create(acfg)
    _emit("ready", port=port)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            ep.libHandleEvents(10)
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
        for _ in range(20):
            ep.libHandleEvents(10)
        calls.clear()
        files.clear()  # closes the recording
        del acc
        ep.libDestroy()
    _emit("closed")
    return 0


class PjsuaPeer:
    """Run :func:`run_peer` in a child Python; collect its JSON events."""

    def __init__(self, answer: int = 200, *, srtp: bool = False, play: Path | None = None,
                 record: Path | None = None) -> None:
        self.port = free_port()
        self.answer = answer
        self.srtp = srtp
        self.play = play
        self.record = record
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return f"sip:peer@127.0.0.1:{self.port}"

    def start(self) -> PjsuaPeer:
        argv = [sys.executable, "-m", "lab.pjsua_peer", "--port", str(self.port), "--answer", str(self.answer)]
        if self.srtp:
            argv.append("--srtp")
        if self.play is not None:
            argv += ["--play", str(self.play)]
        if self.record is not None:
            argv += ["--record", str(self.record)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
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
                self.proc.wait(10)
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
    parser.add_argument("--srtp", action="store_true", help="SDES SRTP mandatory")
    parser.add_argument("--play", help="a WAV to play into each call")
    parser.add_argument("--record", help="a WAV to record each call's audio to")
    args = parser.parse_args(argv)
    return run_peer(args.port, args.answer, args.srtp, args.play, args.record)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
