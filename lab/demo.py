"""``scripts/demo``: a real Secure Chorus call on this machine, end to end.

Starts a lab CA, Kamailio (SIP over TLS) and a KMS (HTTPS, SQLite, temp dir) on 127.0.0.1,
provisions alice and bob over the TS 33.180 KMS interface, registers both phones, and has alice call
bob with MIKEY-SAKKE while playing a speech WAV (espeak-ng); bob verifies the I_MESSAGE before
ringing, auto-answers and records. Prints a short report and, as the last line, one JSON object.

The call passes on what CPU scheduling cannot change: it connected, bob verified the MIKEY-SAKKE
I_MESSAGE, SRTP packets flowed both ways and bob's recording carries alice's speech (``speech``: the
correlation of its half-second segments, each aligned on its own, at least :data:`MIN_CORRELATION`;
silence, noise or other speech score well below, see :mod:`lab.audiocheck`). PESQ is reported as a
figure, not judged: on a loaded machine it measures the scheduler as much as the phone (``scripts/bench
media`` measures quality). Exit status 0 only on a pass; otherwise the JSON has a ``"reason"`` and the
same reason goes to stderr as one line, ``--quiet`` included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.audiocheck import SPEECH_PRESENT, compare
from lab.deployment import Lab, LabError
from softphone.calls.call import Call, CallError
from softphone.calls.phone import Phone
from softphone.errors import SoftphoneError
from softphone.media.audio import ArraySource, WavSink, read_wav

MIN_CORRELATION = SPEECH_PRESENT

TEXT = ("This is a Secure Chorus demonstration call. Alice speaks to Bob; the proxy and the network "
        "see only encrypted packets.")


def make_speech(path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise LabError("espeak-ng is not installed (scripts/setup installs it)")
    subprocess.run([espeak, "-v", "en", "-s", "160", "-w", str(path), TEXT], check=True, capture_output=True,
                   timeout=30)


async def within(awaitable: Any, seconds: float, what: str) -> Any:
    """``await`` with a deadline whose TimeoutError says what was being waited for."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise TimeoutError(f"no {what} within {seconds:g} s") from None


def new_result() -> dict[str, Any]:
    return {"call": "failed", "mikey": "not verified", "srtp": None, "packets_sent": 0, "packets_received": 0,
            "packets_back": 0, "loss": None, "speech": None, "correlation": None, "pesq_mos": None,
            "setup_ms": None}


def judge(result: dict[str, Any]) -> str | None:
    """Why the call failed, or ``None`` if it passed (see the module docstring)."""
    if result["mikey"] != "verified":
        return "the call did not connect with a verified MIKEY-SAKKE I_MESSAGE"
    if not result["packets_received"]:
        return f"bob received no SRTP packets (alice sent {result['packets_sent']})"
    if not result["packets_back"]:
        return "alice received no SRTP packets from bob"
    speech = result["speech"]
    if speech is None or speech < MIN_CORRELATION:
        return f"bob's recording does not carry alice's speech (speech {speech}, needs {MIN_CORRELATION})"
    return None


async def run_call(lab: Lab, wav: Path, recording: Path, log: Any, result: dict[str, Any]) -> None:
    """alice → bob with MIKEY-SAKKE; fills in ``result`` (the final JSON line) as the call goes."""
    played = read_wav(wav)
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
        bob_call = await within(answering, 15, "answer from bob")
        neg = bob_call.negotiated
        if neg is None:
            raise CallError("bob's call has no negotiated media")
        result.update(mikey="verified", srtp=neg.suite)
        log(f"call up: {neg.security}, {neg.suite}, codec {neg.codec.name}, PCK-ID {neg.key_id}")
        await asyncio.sleep(len(played) / 48000 + 0.8)
        first = bob_call.first_played_at()
        if first is not None and call.invite_sent_at is not None:
            result["setup_ms"] = round((first - call.invite_sent_at) * 1000, 1)
        sent, got = call.status(), bob_call.status()
        result.update(packets_sent=sent.get("packets_sent", 0), packets_received=got.get("packets_received", 0),
                      packets_back=sent.get("packets_received", 0), loss=got.get("loss"))
        await call.hangup()
        await within(bob_call.ended(), 5, "end of bob's call after alice hung up")
    match = compare(played, read_wav(recording))
    result.update(speech=match.speech, correlation=match.correlation, pesq_mos=match.pesq_mos)
    log(f"recording: delay {match.delay_ms} ms, speech {match.speech} (segments), correlation "
        f"{match.correlation} (whole), PESQ MOS {match.pesq_mos}")


def main(argv: list[str] | None = None) -> int:
    def body(args: argparse.Namespace, workdir: Path, log: Callable[[str], None], result: dict[str, Any]) -> str | None:
        wav = workdir / "speech.wav"
        make_speech(wav)
        log(f"speech: {wav} (espeak-ng)")
        with Lab(workdir / "lab") as lab:
            log(f"KMS {lab.kms_url} (SQLite in {workdir / 'lab' / 'kms'}), Kamailio TLS 127.0.0.1:"
                f"{lab.kamailio.tls_port if lab.kamailio else '?'}; alice and bob provisioned "
                "(the deployment scripts/lab up starts)")
            if args.keep:  # the accounts files scripts/lab writes, for looking at (valid while the lab ran)
                lab.write_accounts(workdir / "accounts")
            asyncio.run(run_call(lab, wav, workdir / "bob-recording.wav", log, result))
        return judge(result)

    return scenario("scripts/demo", __doc__, "securechorus-demo-", "call", new_result(), body, argv,
                    keep_help="work in DIR and keep it (recordings, logs, keystores)", waiting="waiting for the call")


def scenario(prog: str, doc: str | None, prefix: str, key: str, result: dict[str, Any],
             body: Callable[[argparse.Namespace, Path, Callable[[str], None], dict[str, Any]], str | None],
             argv: list[str] | None, *, keep_help: str | None = None, waiting: str = "waiting",
             options: Callable[[argparse.ArgumentParser], None] | None = None,
             errors: tuple[type[BaseException], ...] = ()) -> int:
    """What every ``scripts/demo`` scenario shares: ``--quiet`` (and ``--keep DIR`` when ``keep_help``), a work
    directory (kept, or temporary and removed), ``body`` run in it returning the failure reason or None, every
    error turned into that one-line reason, and :func:`finish`."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    if keep_help:
        parser.add_argument("--keep", metavar="DIR", help=keep_help)
    parser.add_argument("--quiet", action="store_true", help="print only the final JSON line")
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    log: Callable[[str], None] = (lambda _m: None) if args.quiet else (lambda m: print(f"demo: {m}", flush=True))
    started = time.monotonic()
    keep = getattr(args, "keep", None)
    caught: tuple[type[BaseException], ...] = (LabError, SoftphoneError, OSError, subprocess.SubprocessError, *errors)
    with contextlib.ExitStack() as stack:
        workdir = Path(keep) if keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            reason = body(args, workdir, log, result)
        except TimeoutError as exc:
            reason = f"timed out: {exc or waiting}"
        except caught as exc:
            reason = f"{exc.__class__.__name__}: {exc}"
        except Exception as exc:  # whatever went wrong, the last line still says why
            reason = f"unexpected {exc.__class__.__name__}: {exc}"
    return finish(result, key, reason, started, log)


def finish(result: dict[str, Any], key: str, reason: str | None, started: float,
           log: Callable[[str], None]) -> int:
    """The scenario's verdict: ``result[key]`` "ok" or "failed" with a one-line ``reason`` (also on
    stderr, ``--quiet`` included); the JSON as the last line; the exit code."""
    if reason is None:
        result[key] = "ok"
        log(f"OK in {time.monotonic() - started:.1f} s")
    else:
        result[key] = "failed"
        result["reason"] = " ".join(reason.split())
        print(f"demo: FAILED in {time.monotonic() - started:.1f} s: {result['reason']}", file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
