"""``scripts/demo``: a real Secure Chorus call on this machine, end to end.

Starts a lab CA, Kamailio (SIP over TLS) and a KMS (HTTPS, SQLite, temp dir) on 127.0.0.1,
provisions alice and bob over the TS 33.180 KMS interface, registers both phones, and has alice call
bob with MIKEY-SAKKE while playing a speech WAV (espeak-ng); bob verifies the I_MESSAGE before
ringing, auto-answers and records. Prints a short report and, as the last line, one JSON object.
Exit status 0 only if bob's recording matches what alice played.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.audiocheck import compare
from lab.deployment import Lab, LabError
from softphone.calls.call import Call, CallError
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySource, WavSink, read_wav

TEXT = ("This is a Secure Chorus demonstration call. Alice speaks to Bob; the proxy and the network "
        "see only encrypted packets.")


def make_speech(path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise LabError("espeak-ng is not installed (scripts/setup installs it)")
    subprocess.run([espeak, "-v", "en", "-s", "160", "-w", str(path), TEXT], check=True, capture_output=True,
                   timeout=30)


async def run_call(lab: Lab, wav: Path, recording: Path, log: Any) -> dict[str, Any]:
    """alice → bob with MIKEY-SAKKE; returns the result fields of the final JSON line."""
    played = read_wav(wav)
    result: dict[str, Any] = {"call": "failed", "mikey": "not verified", "srtp": None, "packets_sent": 0,
                              "packets_received": 0, "loss": None, "pesq_mos": None, "setup_ms": None}
    alice = Phone(lab.settings("alice", trace_media=True))
    bob = Phone(lab.settings("bob", trace_media=True))
    async with alice, bob:
        await alice.register()
        await bob.register()
        log(f"registered {lab.uri('alice')} and {lab.uri('bob')} with Kamailio over TLS")

        async def auto_answer() -> Call:
            incoming = await bob.next_incoming(15)
            log(f"bob: incoming call, I_MESSAGE verified — caller is {incoming.peer_identity} (ECCSI)")
            return await incoming.accept(ArraySource(played[:0]), WavSink(recording))

        answering = asyncio.create_task(auto_answer())
        try:
            call = await alice.call(lab.uri("bob"), ArraySource(played), WavSink(recording.with_suffix(".alice.wav")),
                                    timeout=15)
        except CallError:
            answering.cancel()
            raise
        bob_call = await asyncio.wait_for(answering, 15)
        neg = bob_call.negotiated
        assert neg is not None
        result.update(mikey="verified", srtp=neg.suite)
        log(f"call up: {neg.security}, {neg.suite}, codec {neg.codec.name}, PCK-ID {neg.key_id}")
        await asyncio.sleep(len(played) / 48000 + 0.8)
        first = bob_call.first_played_at()
        if first is not None and call.invite_sent_at is not None:
            result["setup_ms"] = round((first - call.invite_sent_at) * 1000, 1)
        sent, got = call.status(), bob_call.status()
        result.update(packets_sent=sent.get("packets_sent", 0), packets_received=got.get("packets_received", 0),
                      loss=got.get("loss"))
        await call.hangup()
        await asyncio.wait_for(bob_call.ended(), 5)
    match = compare(played, read_wav(recording))
    result["pesq_mos"] = match.pesq_mos
    log(f"recording: delay {match.delay_ms} ms, correlation {match.correlation}, PESQ MOS {match.pesq_mos}")
    if match.ok():
        result["call"] = "ok"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (recordings, logs, keystores)")
    parser.add_argument("--quiet", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    log = (lambda _m: None) if args.quiet else (lambda m: print(f"demo: {m}", flush=True))
    started = time.monotonic()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="securechorus-demo-")
    workdir = Path(args.keep) if args.keep else Path(tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"call": "failed", "mikey": "not verified", "srtp": None, "packets_sent": 0,
                              "packets_received": 0, "loss": None, "pesq_mos": None, "setup_ms": None}
    try:
        wav = workdir / "speech.wav"
        make_speech(wav)
        log(f"speech: {wav} (espeak-ng)")
        with Lab(workdir / "lab") as lab:
            log(f"KMS {lab.kms_url} (SQLite in {workdir / 'lab' / 'kms'}), Kamailio TLS 127.0.0.1:"
                f"{lab.kamailio.tls_port if lab.kamailio else '?'}; alice and bob provisioned "
                "(the deployment scripts/lab up starts)")
            if args.keep:  # the accounts files scripts/lab writes, for looking at (valid while the lab ran)
                lab.write_accounts(workdir / "accounts")
            result = asyncio.run(run_call(lab, wav, workdir / "bob-recording.wav", log))
    except (LabError, CallError, OSError, subprocess.SubprocessError, TimeoutError) as exc:
        log(f"failed: {exc.__class__.__name__}: {exc}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    log(f"{'OK' if result['call'] == 'ok' else 'FAILED'} in {time.monotonic() - started:.1f} s")
    print(json.dumps(result), flush=True)
    return 0 if result["call"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
