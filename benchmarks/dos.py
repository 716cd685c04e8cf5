"""Denial of service: ``scripts/bench dos [--json] [--seconds S]``.

SIP: a phone (``UserAgent`` answering every call) runs in this process. A child process is the
attacker and, from the phone's configured proxy address, the caller: 4 UDP sockets send 1000
OPTIONS/s in all (30 KB bodies, a fresh branch each), 1000 TCP connections to the phone are held open
and silent (re-opened when the phone closes them), and the "proxy" calls the phone once a second.
``sip_calls_connected`` / ``sip_calls_attempted``: calls that rang and were answered (200 + ACK) /
calls tried during the flood; ``sip_rss_mb``: the phone process's peak RSS.

KMS: ``softphone-kms serve`` (a fresh SQLite community) under a child attacker holding 2000 silent
TCP connections to its TLS port and 100 slowloris clients (a TLS handshake, then one header byte a
second), re-opening whatever the server closes; meanwhile 8 clients send KeyProvision requests.
``kms_p99_ms`` (and ``kms_p99_ms_baseline`` before the attack), ``kms_rss_mb``: the server's peak
RSS. Every client comes from 127.0.0.1, so the KMS runs with ``--max-per-client 0`` (as behind
nginx): the global connection limit and the one deadline for handshake + headers + body are what
is measured. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import ssl
import statistics
import subprocess
import sys
import time

from benchmarks._util import emit
from lab.proc import free_port
from softphone.sip.errors import SipError
from softphone.sip.session import InviteSession
from softphone.sip.ua import UAConfig, UserAgent

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
FLOOD_RATE = 1000
FLOOD_SOURCES = 4
IDLE_CONNECTIONS = 1000
BODY = 30_000


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_BODY = b"x" * BODY


def _options(port: int, n: int, src: int) -> bytes:
    body = _BODY
    return (f"OPTIONS sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{secrets.token_hex(6)}{n};rport\r\n"
            f"From: <sip:flood@127.0.0.1>;tag=f{n}\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: flood-{n}\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# -- the attacker and caller (child process) ------------------------------------------------------------
async def _flood(port: int, stop: float, sent: list[int]) -> None:
    loop = asyncio.get_running_loop()
    socks = [(await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)))[0]
             for _ in range(FLOOD_SOURCES)]
    per_tick = FLOOD_RATE // 100  # every 10 ms
    n = 0
    next_tick = loop.time()
    while loop.time() < stop:
        for _ in range(per_tick):
            sock = socks[n % FLOOD_SOURCES]
            sock.sendto(_options(port, n, sock.get_extra_info("sockname")[1]))
            n += 1
        next_tick += 0.01
        await asyncio.sleep(max(0.0, next_tick - loop.time()))
    sent[0] = n
    for sock in socks:
        sock.close()


async def _idle(port: int, stop: float, opened: list[int]) -> None:
    loop = asyncio.get_running_loop()

    async def hold() -> None:
        while loop.time() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            opened[0] += 1
            try:
                await asyncio.wait_for(reader.read(), max(0.1, stop - loop.time()))  # says nothing
            except (TimeoutError, OSError):
                pass
            writer.close()
            await asyncio.sleep(0.5)

    await asyncio.gather(*(hold() for _ in range(IDLE_CONNECTIONS)))


async def _calls(proxy_port: int, port: int, stop: float) -> tuple[int, int, list[str], list[float]]:
    attempted = connected = 0
    errors: list[str] = []
    setups: list[float] = []
    async with UserAgent(UAConfig(aor="sip:proxy@127.0.0.1", port=proxy_port)) as caller:
        while asyncio.get_running_loop().time() < stop - 5:
            attempted += 1
            try:
                t0 = time.monotonic()
                call = await caller.invite(f"sip:bob@127.0.0.1:{port}", SDP)
                ok = await call.answered(8)
                if ok.status == 200:
                    connected += 1
                    setups.append((time.monotonic() - t0) * 1000)
                await call.bye(timeout=3)
            except (SipError, TimeoutError) as exc:
                errors.append(str(exc)[:80])
            await asyncio.sleep(1.0)
    return attempted, connected, errors, setups


async def _attack(proxy_port: int, port: int, seconds: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    sent, opened = [0], [0]
    flood = loop.create_task(_flood(port, stop, sent))
    idle = loop.create_task(_idle(port, stop, opened))
    await asyncio.sleep(2.0)  # the flood and the idle sockets are in place before the first call
    attempted, connected, errors, setups = await _calls(proxy_port, port, stop)
    await asyncio.gather(flood, idle)
    return {"attempted": attempted, "connected": connected, "errors": errors[:5], "flood_sent": sent[0],
            "idle_opened": opened[0], "setup_ms_median": round(statistics.median(setups), 1) if setups else None}


# -- the phone (this process) -----------------------------------------------------------------------
async def _answer(session: InviteSession) -> None:
    try:
        await session.ring()
        await session.answer(SDP, ack_timeout=5)
    except SipError:
        pass


async def _phone(seconds: float) -> dict[str, object]:
    proxy_port = free_port()
    ua = UserAgent(UAConfig(aor="sip:bob@127.0.0.1", proxy=f"sip:127.0.0.1:{proxy_port}"))
    await ua.start()
    peak = [_rss_mb()]
    tasks: set[asyncio.Task[None]] = set()

    async def accept() -> None:
        while True:
            session = await ua.incoming.get()
            task = asyncio.get_running_loop().create_task(_answer(session))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], _rss_mb())
            await asyncio.sleep(0.5)

    helpers = [asyncio.get_running_loop().create_task(c) for c in (accept(), sample())]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.dos", "--attacker", str(proxy_port), str(ua.port), str(seconds),
        stdout=subprocess.PIPE)
    t0 = time.monotonic()
    out, _ = await child.communicate()
    wall = time.monotonic() - t0
    for helper in helpers:
        helper.cancel()
    peak[0] = max(peak[0], _rss_mb())
    stats = {"dropped": ua.transport.dropped, "refused": ua.transport.refused, "requests": ua.stats["requests"]}
    await ua.close()
    attack = json.loads(out.decode().strip().splitlines()[-1])
    return {"sip_calls_attempted": attack["attempted"], "sip_calls_connected": attack["connected"],
            "sip_rss_mb": round(peak[0], 1), "sip_flood_sent": attack["flood_sent"],
            "sip_flood_rate": round(attack["flood_sent"] / wall), "sip_flood_dropped": stats["dropped"],
            "sip_requests_handled": stats["requests"], "sip_idle_connections_opened": attack["idle_opened"],
            "sip_call_errors": attack["errors"], "sip_call_setup_ms_median": attack["setup_ms_median"],
            "sip_idle_refused": stats["refused"], "seconds": seconds}


# -- the KMS (a softphone-kms serve subprocess) ---------------------------------------------------------
KMS_IDLE = 2000
KMS_SLOWLORIS = 100


async def _kms_attack(port: int, cafile: str, seconds: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    counts = {"idle_opened": 0, "slow_opened": 0}
    ctx = ssl.create_default_context(cafile=cafile)

    async def idle() -> None:
        while loop.time() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            counts["idle_opened"] += 1
            try:
                await asyncio.wait_for(reader.read(), max(0.1, stop - loop.time()))
            except (TimeoutError, OSError):
                pass
            writer.close()
            await asyncio.sleep(0.5)

    async def slowloris() -> None:
        head = b"POST /keymanagement/identity/v1/keyprov HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
        while loop.time() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.5)
                continue
            counts["slow_opened"] += 1
            try:
                for byte in head + b"a" * 10_000:
                    if loop.time() >= stop or reader.at_eof():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
            except (OSError, ssl.SSLError):
                pass
            writer.close()
            await asyncio.sleep(0.5)

    await asyncio.gather(*(idle() for _ in range(KMS_IDLE)), *(slowloris() for _ in range(KMS_SLOWLORIS)))
    return counts


def _pid_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _kms(seconds: float) -> dict[str, object]:
    import tempfile
    import threading
    from pathlib import Path

    from benchmarks.kms import percentile, run_load
    from lab.kms import make_community, serve_kms

    passphrase = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="dos-kms-") as tmp:
        uris = tuple(f"sip:user{i}@example.org" for i in range(20))
        users = make_community(Path(tmp) / "kms", "kms.example.org", passphrase, users=uris)
        tokens = [users[u].token for u in uris]
        with serve_kms(Path(tmp) / "kms", passphrase, "--max-per-client", "0") as server:
            pid = server.proc.proc.pid
            run_load(server.host, server.port, server.cafile, tokens, 40, 8)  # first-time issuing, not measured
            baseline = run_load(server.host, server.port, server.cafile, tokens, 400, 8)
            child = subprocess.Popen([sys.executable, "-m", "benchmarks.dos", "--kms-attacker", str(server.port),
                                      str(server.cafile), str(seconds)], stdout=subprocess.PIPE)
            peak = [_pid_rss_mb(pid)]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    peak[0] = max(peak[0], _pid_rss_mb(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            time.sleep(min(12.0, seconds / 3))  # the idle sockets and slowloris clients are in place
            loads = []
            while child.poll() is None:
                loads.append(run_load(server.host, server.port, server.cafile, tokens, 200, 8, timeout=60))
                if len(loads) * 200 >= 1000:
                    break
            out, _ = child.communicate(timeout=seconds + 30)
            done.set()
            sampler.join()
    attack = json.loads(out.decode().strip().splitlines()[-1])
    latencies = sorted(lat for load in loads for lat in load.latencies)
    ok200 = sum(1 for load in loads for r in load.results if r[1] == 200)
    errors = sum(len(load.errors) for load in loads)
    return {"kms_p99_ms": round(percentile(latencies, 0.99), 1),
            "kms_p50_ms": round(percentile(latencies, 0.50), 1),
            "kms_p99_ms_baseline": round(percentile(baseline.latencies, 0.99), 1),
            "kms_requests_ok": ok200, "kms_requests": len(latencies) + errors, "kms_errors": errors,
            "kms_rss_mb": round(peak[0], 1), "kms_idle_opened": attack["idle_opened"],
            "kms_slowloris_opened": attack["slow_opened"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _raise_nofile(8192)
    if argv[:1] == ["--attacker"]:
        proxy_port, port, seconds = int(argv[1]), int(argv[2]), float(argv[3])
        print(json.dumps(asyncio.run(_attack(proxy_port, port, seconds))))
        return 0
    if argv[:1] == ["--kms-attacker"]:
        print(json.dumps(asyncio.run(_kms_attack(int(argv[1]), argv[2], float(argv[3])))))
        return 0
    parser = argparse.ArgumentParser(prog="scripts/bench dos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each attack (default 30)")
    parser.add_argument("--no-kms", action="store_true", help="the SIP half only")
    args = parser.parse_args(argv)
    result = asyncio.run(_phone(args.seconds))
    rss = result["sip_rss_mb"]
    ok = result["sip_calls_connected"] == result["sip_calls_attempted"] and isinstance(rss, float) and rss < 300
    result["sip_ok"] = ok
    if not args.no_kms:
        result.update(_kms(args.seconds))
    emit(result, args.json)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
