"""KMS provisioning throughput over HTTPS: ``scripts/bench kms [--json]``.

A fresh community (SQLite) with ``--users`` users is served by a ``softphone-kms serve``
subprocess; ``--concurrency`` client threads, each on its own keep-alive TLS connection, send
``--requests`` KeyProvision POSTs in total. Every response is checked (HTTP 200, parses, is for
the requesting user, current+next period). Reported: ``keysets_per_s`` (KeyProvision responses
per second, each delivering the user's current and next key set, first-time issuing included),
``p50_ms`` and ``p99_ms`` request latency.
"""

from __future__ import annotations

import argparse
import http.client
import secrets
import ssl
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._util import emit


@dataclass
class LoadResult:
    """Per request: (user index, HTTP status, body, latency ms), in completion order."""

    results: list[tuple[int, int, bytes, float]] = field(default_factory=list)
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return sorted(r[3] for r in self.results)


def run_load(host: str, port: int, cafile: Path, tokens: list[str], total: int, concurrency: int,
             timeout: float = 120.0) -> LoadResult:
    """``total`` POST /keyprov requests, request i for user ``i % len(tokens)``, ``concurrency`` clients."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    out = LoadResult()
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.monotonic() + timeout

    def worker() -> None:
        conn = http.client.HTTPSConnection(host, port, timeout=30, context=ctx)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                user = i % len(tokens)
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/keymanagement/identity/v1/keyprov", body=b"",
                                 headers={"Authorization": f"Bearer {tokens[user]}"})
                    resp = conn.getresponse()
                    body = resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPSConnection(host, port, timeout=30, context=ctx)
                    with lock:
                        out.errors.append(f"request {i}: {exc.__class__.__name__}")
                    continue
                with lock:
                    out.results.append((user, status, body, (time.perf_counter() - t0) * 1000.0))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 1)
    out.wall_s = time.perf_counter() - start
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench kms")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="repeat with a fresh community; medians reported")
    args = parser.parse_args(argv)

    from kmsinterface.xml import parse_key_prov
    from lab.kms import make_community, serve_kms

    passphrase = secrets.token_urlsafe(16)

    rates, p50s, p99s = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kms-bench-") as tmp:
            uris = tuple(f"sip:user{i}@example.org" for i in range(args.users))
            users = make_community(Path(tmp) / "kms", "kms.example.org", passphrase, users=uris)
            with serve_kms(Path(tmp) / "kms", passphrase) as server:
                result = run_load(server.host, server.port, server.cafile, [users[u].token for u in uris],
                                  args.requests, args.concurrency)
        bad = [r for r in result.results if r[1] != 200 or parse_key_prov(r[2]).user_uri != uris[r[0]]]
        if result.errors or bad or len(result.results) != args.requests:
            print(f"bench kms: {len(result.errors)} transport errors, {len(bad)} bad responses, "
                  f"{len(result.results)}/{args.requests} answered")
            return 1
        rates.append(args.requests / result.wall_s)
        p50s.append(percentile(result.latencies, 0.50))
        p99s.append(percentile(result.latencies, 0.99))
    emit({"keysets_per_s": round(statistics.median(rates), 1), "p50_ms": round(statistics.median(p50s), 2),
          "p99_ms": round(statistics.median(p99s), 2), "requests": args.requests,
          "concurrency": args.concurrency, "users": args.users}, args.json)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
