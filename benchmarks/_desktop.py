"""The desktop figures of ``scripts/bench media``: each phone in its own process (with and without CPU hogs),
the same call between two baresip instances, and echo cancellation through a synthetic echo path."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lab.quality import pesq_wb
from softphone.media.audio import ArraySink, ArraySource, read_wav, resample
from softphone.media.codecs import FRAME_SAMPLES, OPUS
from softphone.media.session import MediaConfig, MediaSession, SrtpKeys
from softphone.media.srtp import SrtpSuite

ANY_PORT = ("127.0.0.1", 0)
TAIL = 0.8  # s of call after the speech ends (jitter buffer, network)
# what each phone process reports of its playout beside PESQ: where a loaded machine's damage shows
PLAYOUT_COUNTERS = ("concealed_frames", "underruns", "late_packets", "late_ticks", "jitter_buffer_ms")


@contextlib.contextmanager
def hogs(n: int) -> Iterator[None]:
    """``n`` busy-looping Python processes (``while 1: pass``), killed on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]
    try:
        time.sleep(0.3)
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(5)


def _cpu_of(pid: int) -> float:
    """utime + stime of a process, seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- our phone, one per process ----------------------------------------------------------------------------

class _GatedSource(ArraySource):
    """Silence until :meth:`open` (both phones know each other's address), then the array: speech sent
    before the peer's address is set goes nowhere, and a loaded machine makes that gap long (up to ~0.2 s
    measured), which cut the sentence's start and cost up to 0.3 PESQ that had nothing to do with media."""

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__(samples)
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def read(self) -> np.ndarray | None:
        if not self._open.is_set():
            return np.zeros(FRAME_SAMPLES, np.int16)
        return super().read()


def _phone(conn: Any, keys: tuple[bytes, bytes, bytes, bytes], speech_path: str, out_path: str,
           seconds: float) -> None:
    """Child process: one media session; tells the parent its port, learns the peer's, talks, records."""
    k1, s1, k2, s2 = keys
    cfg = MediaConfig(ANY_PORT, ANY_PORT, OPUS, SrtpKeys(SrtpSuite.AEAD_AES_128_GCM, k1, s1, k2, s2))

    async def main() -> tuple[float, dict[str, int]]:
        sink = ArraySink()
        source = _GatedSource(read_wav(speech_path))
        session = MediaSession(cfg, source, sink)
        await session.start()
        conn.send(session.local_addr)
        session.set_remote(tuple(conn.recv()))
        conn.recv()  # both ready: go
        source.open()
        c0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - c0
        st = session.stats()
        await session.stop()
        from softphone.media.audio import write_wav
        write_wav(out_path, sink.samples())
        return cpu, {k: getattr(st, k) for k in PLAYOUT_COUNTERS}

    cpu, counters = asyncio.run(main())
    conn.send(("cpu", cpu, counters))


def pesq_two_processes(speech: np.ndarray, n_hogs: int = 0) -> dict[str, Any]:
    """PESQ (median of both directions), CPU ms per call-second and the playout counters summed over both
    phones, of a call between two phone processes."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "speech.wav"
        from softphone.media.audio import write_wav
        write_wav(src, speech)
        k = [os.urandom(16), os.urandom(12), os.urandom(16), os.urandom(12)]
        seconds = len(speech) / 48000 + TAIL
        pipes = [ctx.Pipe() for _ in range(2)]
        outs = [Path(d) / "a.wav", Path(d) / "b.wav"]
        keysets = [(k[0], k[1], k[2], k[3]), (k[2], k[3], k[0], k[1])]
        procs = [ctx.Process(target=_phone, args=(pipes[i][1], keysets[i], str(src), str(outs[i]), seconds))
                 for i in range(2)]
        with hogs(n_hogs):
            for p in procs:
                p.start()
            try:
                addrs = [pipes[i][0].recv() for i in range(2)]
                pipes[0][0].send(addrs[1])
                pipes[1][0].send(addrs[0])
                for i in range(2):
                    pipes[i][0].send("go")
                cpus, counters = [], []
                for i in range(2):
                    if not pipes[i][0].poll(seconds + 30):
                        raise TimeoutError("phone process did not finish")
                    _, cpu, playout = pipes[i][0].recv()
                    cpus.append(cpu)
                    counters.append(playout)
            finally:
                for p in procs:
                    p.join(10)
                    if p.is_alive():
                        p.kill()
        scores = [pesq_wb(speech, read_wav(o)) for o in outs]
    playout = {k: sum(c[k] for c in counters) for k in PLAYOUT_COUNTERS if k != "jitter_buffer_ms"}
    playout["jitter_buffer_ms_max"] = max(c["jitter_buffer_ms"] for c in counters)
    return {"pesq": statistics.median(scores), "scores": scores,
            "cpu_ms_per_call_second": 1000 * statistics.mean(cpus) / seconds, "playout": playout}


# --- baresip, one per process -------------------------------------------------------------------------------

def _stereo_wav(path: Path, mono: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.repeat(mono.astype(np.int16), 2).tobytes())


def _read_any_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        ch, rate = w.getnchannels(), w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, ch).mean(axis=1)
    return resample(x.astype(np.int16), rate, 48000) if rate != 48000 else x.astype(np.int16)


def baresip_call(speech: np.ndarray, n_hogs: int = 0) -> dict[str, Any]:
    """Two baresip processes (aufile source/sink, Opus, SDES srtp-mand) calling each other directly."""
    for attempt in range(3):  # baresip also binds port + 1 (TLS): a random port pair may collide
        try:
            return _baresip_call(speech, n_hogs)
        except RuntimeError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _recording_baresip() -> type:
    from lab.baresip import Baresip

    class Recording(Baresip):
        """baresip 1.0's aufile has no player: the sndfile filter writes what it decodes."""

        def _config(self) -> str:
            (self.workdir / "snd").mkdir(parents=True, exist_ok=True)
            return super()._config() + f"module sndfile.so\nsnd_path {self.workdir / 'snd'}\n"

    return Recording


def _decoded(workdir: Path) -> np.ndarray:
    files = sorted((workdir / "snd").glob("*dec*.wav"))
    if not files:
        raise RuntimeError(f"baresip wrote no decoded audio in {workdir}")
    return _read_any_wav(files[-1])


def _baresip_call(speech: np.ndarray, n_hogs: int) -> dict[str, Any]:
    Baresip = _recording_baresip()
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "speech.wav"
        _stereo_wav(wav, np.concatenate([speech, np.zeros(int(48000 * 1.5), np.int16)]))  # aufile's end ends the call
        seconds = len(speech) / 48000 + TAIL
        with hogs(n_hogs), \
                Baresip(Path(d) / "bob", user="bob", mediaenc="srtp-mand", audio_file=wav,
                        codecs="opus/48000/2") as bob, \
                Baresip(Path(d) / "alice", user="alice", mediaenc="srtp-mand", audio_file=wav,
                        codecs="opus/48000/2") as alice:
            assert alice.proc is not None and bob.proc is not None
            alice.command("dial", bob.uri)
            alice.wait_for(r"Call established", 10)
            bob.wait_for(r"Call established", 10)
            pids = [alice.proc.proc.pid, bob.proc.proc.pid]
            c0 = [_cpu_of(p) for p in pids]
            time.sleep(seconds)
            cpu = [_cpu_of(p) - c for p, c in zip(pids, c0, strict=True)]
            alice.command("hangup")
            time.sleep(0.3)
            suites = [ln for ln in alice.proc.lines + bob.proc.lines if "cryptosuite=" in ln]
        scores = [pesq_wb(speech, _decoded(Path(d) / who)) for who in ("alice", "bob")]
    suite = suites[0].split("cryptosuite=")[1].strip(" )") if suites else None
    return {"pesq": statistics.median(scores), "cpu_ms_per_call_second": 1000 * statistics.mean(cpu) / seconds,
            "suite": suite}


# --- echo cancellation -------------------------------------------------------------------------------------

NEAR = "Rice is often served in round bowls. The juice of lemons makes fine punch."


def echo_figures(far: np.ndarray) -> dict[str, float]:
    """ERLE (far end alone) and the near talker's PESQ in double talk, through the WebRTC APM; for AEC3
    alone also what limits that PESQ: the APM's effect on the near talker with the far end silent, with the
    far end playing but no echo path, and how much of the near talker it takes away in double talk."""
    from lab.echo import clipping_only, frame_attenuation_db, run_echo
    from softphone.media.dsp import DspSettings
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "near.wav"
        subprocess.run(["espeak-ng", "-v", "en-gb+m3", "-s", "140", "-w", str(path), NEAR], check=True,
                       capture_output=True, timeout=60)
        near = read_wav(path)
    out: dict[str, float] = {}
    for key, settings in (("aec", DspSettings(aec=True, ns=False, agc=False, hpf=False)),
                          ("aec_ns", DspSettings(aec=True, ns=True, agc=False, hpf=True))):
        t0 = time.process_time()
        run = run_echo(settings, far, near)
        frames = len(run.mic) / 960
        out[f"{key}_ms_per_frame"] = 1000 * (time.process_time() - t0) / frames
        m = min(len(near), len(run.mic) - run.double_talk)
        dt = slice(run.double_talk, run.double_talk + m)
        out[f"{key}_erle_db"] = run.erle_db
        out[f"{key}_doubletalk_pesq_near"] = pesq_wb(run.near[dt], run.out[dt])
        if key == "aec":
            out["doubletalk_pesq_near_unprocessed"] = pesq_wb(run.near[dt], run.mic[dt])
            alone = run_echo(settings, np.zeros_like(far), near)  # far end silent
            no_echo = run_echo(settings, far, near, h=np.zeros(1))  # far end playing, none of it at the mic
            out["aec_pesq_near_alone"] = pesq_wb(run.near[dt], alone.out[dt])
            out["aec_doubletalk_pesq_near_no_echo"] = pesq_wb(run.near[dt], no_echo.out[dt])
            # the same APM's output on the near talker alone is the reference: same delay, same band limit
            att = frame_attenuation_db(alone.out[dt], run.out[dt])
            out["aec_doubletalk_near_attenuation_db"] = float(np.median(att))
            out["aec_doubletalk_clipped_frames_pct"] = float(100 * np.mean(att > 6))
            out["aec_doubletalk_pesq_near_clipping_only"] = pesq_wb(
                run.near[dt], clipping_only(alone.out[dt], run.out[dt]))
    return out


def opus_cost() -> dict[str, float]:
    """CPU ms per 20 ms frame of our Opus encoder and decoder (48 kHz in/out, wideband-capped)."""
    from softphone.media.codecs import make_codec
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(960 * 250) * 3000).astype(np.int16)
    codec = make_codec(OPUS)
    t0 = time.process_time()
    packets = [codec.encode(x[i:i + 960]) for i in range(0, len(x), 960)]
    t1 = time.process_time()
    for p in packets:
        codec.decode(p)
    t2 = time.process_time()
    return {"opus_encode_ms_per_frame": 1000 * (t1 - t0) / len(packets),
            "opus_decode_ms_per_frame": 1000 * (t2 - t1) / len(packets)}
