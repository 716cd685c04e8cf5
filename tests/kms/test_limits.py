"""What one hostile peer can hold of ``softphone-kms serve``: idle sockets, slowloris, per-client limit."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.kms import KmsServer
from tests.kms.helpers import make_community, start_kms

ALICE = "sip:alice@example.org"


@pytest.fixture(scope="module")
def community(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("kms-limits") / "community"
    users = make_community(d, users=(ALICE,))
    return d, users[ALICE].token


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def _open_idle(server: KmsServer, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection((server.host, server.port), timeout=10)
        socks.append(s)
    return socks


def _wait_sockets(pid: int, at_least: int, timeout: float = 10.0) -> int:
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        seen = _sockets(pid)
        if seen >= at_least:
            break
        time.sleep(0.1)
    return seen


def _timed_post(server: KmsServer, token: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    status, _, _ = server.post("/keyprov", token)
    return status, time.perf_counter() - t0


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closes/resets ``sock`` within ``seconds`` (reads only, bounded)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
    return False


@pytest.fixture
def kms_idle(community: tuple[Path, str]) -> Iterator[KmsServer]:
    server = start_kms(community[0], "--max-per-client", "0", "--deadline", "60")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("idle", [500])
def test_idle_sockets_neither_block_a_client_nor_cost_threads(kms_idle: KmsServer, community, idle: int) -> None:
    server, token = kms_idle, community[1]
    pid = server.proc.proc.pid
    assert server.post("/keyprov", token)[0] == 200
    before, rss_before = _threads(pid), _rss_mb(pid)
    socks = _open_idle(server, idle)
    try:
        assert _wait_sockets(pid, idle) >= idle  # the server accepted and holds every idle socket
        status, seconds = _timed_post(server, token)
        assert status == 200 and seconds < 5.0
        threads = _threads(pid)
        assert threads <= before + 2 and threads < 16, f"{threads} threads for {idle} idle sockets"
        grown = _rss_mb(pid) - rss_before
        assert grown < 25, f"{grown:.0f} MB more resident memory for {idle} idle sockets"
    finally:
        for s in socks:
            s.close()


def test_slowloris_cut_at_the_deadline(community: tuple[Path, str]) -> None:
    d, token = community
    server = start_kms(d, "--deadline", "2")
    ctx = ssl.create_default_context(cafile=str(server.cafile))
    try:
        # Headers one byte at a time, well within any per-read timeout: cut at 2 s from accept.
        raw = socket.create_connection((server.host, server.port), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        request = b"POST /keymanagement/identity/v1/keyprov HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        t0, cut = time.monotonic(), False
        for i in range(len(request)):
            try:
                tls.sendall(request[i:i + 1])
            except (OSError, ssl.SSLError):
                cut = True
                break
            if _closed_within(tls, 0.3):
                cut = True
                break
            if time.monotonic() - t0 > 8:
                break
        elapsed = time.monotonic() - t0
        tls.close()
        assert cut and 1.5 <= elapsed <= 4.0, f"slow header client held the connection for {elapsed:.1f} s"

        # Complete headers, body trickled: the same deadline.
        tls = ctx.wrap_socket(socket.create_connection((server.host, server.port), timeout=10),
                              server_hostname="127.0.0.1")
        t0 = time.monotonic()
        tls.sendall(b"POST /keymanagement/identity/v1/keyprov HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                    b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
        cut = False
        for _ in range(40):
            try:
                tls.sendall(b"x")
            except (OSError, ssl.SSLError):
                cut = True
                break
            if _closed_within(tls, 0.2):
                cut = True
                break
        elapsed = time.monotonic() - t0
        tls.close()
        assert cut and elapsed <= 4.0, f"slow body held the connection for {elapsed:.1f} s"

        # No TLS handshake at all: cut at the deadline too.
        raw = socket.create_connection((server.host, server.port), timeout=10)
        t0 = time.monotonic()
        assert _closed_within(raw, 5.0)
        assert time.monotonic() - t0 <= 3.5
        raw.close()

        # Meanwhile, and afterwards, a real client is served at once.
        status, seconds = _timed_post(server, token)
        assert status == 200 and seconds < 2.0
    finally:
        server.stop()


def test_real_client_served_during_slowloris(community: tuple[Path, str]) -> None:
    d, token = community
    server = start_kms(d, "--deadline", "3", "--max-per-client", "0")
    ctx = ssl.create_default_context(cafile=str(server.cafile))
    slow: list[ssl.SSLSocket] = []
    try:
        for _ in range(50):
            tls = ctx.wrap_socket(socket.create_connection((server.host, server.port), timeout=10),
                                  server_hostname="127.0.0.1")
            tls.sendall(b"POST /keymanagement/identity/v1/keyprov HTTP/1.1\r\n")
            slow.append(tls)
        latencies = []
        for _ in range(10):
            status, seconds = _timed_post(server, token)
            assert status == 200
            latencies.append(seconds)
        assert max(latencies) < 2.0, latencies
        assert all(_closed_within(s, 5.0) for s in slow)  # every slow client was cut
    finally:
        for s in slow:
            s.close()
        server.stop()


def test_per_client_connection_limit(community: tuple[Path, str]) -> None:
    d, token = community
    server = start_kms(d, "--max-per-client", "8", "--deadline", "60")
    socks: list[socket.socket] = []
    try:
        socks = _open_idle(server, 8)
        assert _wait_sockets(server.proc.proc.pid, 8) >= 8
        extra = socket.create_connection((server.host, server.port), timeout=10)
        assert _closed_within(extra, 3.0)  # the ninth from this address is dropped at accept
        extra.close()
        for s in socks:
            s.close()
        socks = []
        deadline, status = time.monotonic() + 10, 0
        while time.monotonic() < deadline and status != 200:  # slots are freed as the server sees the closes
            try:
                status = server.post("/keyprov", token)[0]
            except (OSError, ssl.SSLError):
                time.sleep(0.2)
        assert status == 200
    finally:
        for s in socks:
            s.close()
        server.stop()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hostile_input_leaves_no_trace_on_the_console(community: tuple[Path, str]) -> None:
    d, token = community
    server = start_kms(d, "--deadline", "1")
    ctx = ssl.create_default_context(cafile=str(server.cafile))
    try:
        tls = ctx.wrap_socket(socket.create_connection((server.host, server.port), timeout=10),
                              server_hostname="127.0.0.1")
        tls.sendall(b"POST /keymanagement/identity/v1/keyprov HTTP/1.1\r\nAuthorization Bearer SECRET-"
                    + token.encode() + b"\r\n\r\n")  # malformed header line carrying a token
        tls.settimeout(5)
        assert tls.recv(4096).startswith(b"HTTP/1.")
        tls.close()
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode, old.maximum_version = False, ssl.CERT_NONE, ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(socket.create_connection((server.host, server.port), timeout=10))
        raw = socket.create_connection((server.host, server.port), timeout=10)
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP on the TLS port
        assert _closed_within(raw, 3.0)
        raw.close()
        assert server.post("/keyprov", token)[0] == 200
    finally:
        server.stop()
    said = [line for line in server.proc.lines if not line.startswith("serving https://")]
    assert said == [], said[:5]
