"""Child process: a pjsua2 peer with mandatory SDES SRTP that plays one WAV into each call and
records what it hears to another. Driven by stdin lines (``dial URI``, ``hangup``, ``quit``); reports
JSON lines (``ready``, ``state``, ``media``, ``error``). pjsua2 rules from PEERS.md: one polling
thread, null audio device, Call objects kept alive and dropped before ``libDestroy``.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
from typing import Any


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"event": kind, **fields}), flush=True)


def run(port: int, play: str, record: str) -> int:
    import pjsua2 as pj

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
    player = pj.AudioMediaPlayer()
    player.createPlayer(play, pj.PJMEDIA_FILE_NO_LOOP)
    recorder = pj.AudioMediaRecorder()
    recorder.createRecorder(record)
    calls: list[Any] = []

    class Call(pj.Call):  # type: ignore[misc]
        def onCallState(self, prm: Any) -> None:
            ci = self.getInfo()
            emit("state", state=ci.stateText, status=ci.lastStatusCode)

        def onCallMediaState(self, prm: Any) -> None:
            ci = self.getInfo()
            for i, mi in enumerate(ci.media):
                if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                    media = self.getAudioMedia(i)
                    player.startTransmit(media)
                    media.startTransmit(recorder)
                    emit("media", index=i)

    class Account(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            call = Call(self, prm.callId)
            calls.append(call)
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)

    acc = Account()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:peer@127.0.0.1:{port}"
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    acfg.mediaConfig.srtpSecureSignaling = 0
    acc.create(acfg)
    emit("ready", port=port)
    try:
        deadline = time.monotonic() + 120
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
            except pj.Error as exc:
                emit("error", message=str(exc.info()))
    finally:
        ep.hangupAllCalls()
        for _ in range(20):
            ep.libHandleEvents(10)
        calls.clear()
        del recorder, player
        del acc
        ep.libDestroy()
    emit("closed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--play", required=True)
    parser.add_argument("--record", required=True)
    args = parser.parse_args()
    return run(args.port, args.play, args.record)


if __name__ == "__main__":
    sys.exit(main())
