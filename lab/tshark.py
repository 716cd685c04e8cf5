"""tshark capturing on loopback for the tests: started, waited for until it really captures, stopped."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path


def start_capture(tshark: str, pcap: Path, bpf: str, duration_s: int = 60) -> subprocess.Popen[bytes]:
    """tshark writing ``pcap`` from ``lo`` with the capture filter ``bpf``; stops by itself after
    ``duration_s``. Raises :class:`RuntimeError` if it does not start within 20 s."""
    proc = subprocess.Popen([tshark, "-i", "lo", "-f", bpf, "-a", f"duration:{duration_s}", "-w", str(pcap)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + 20, b""
    while b"Capturing on" not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"tshark did not start: {seen!r}")
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += os.read(proc.stderr.fileno(), 4096)
    time.sleep(1.0)  # dumpcap announces itself a moment before packets are really captured
    return proc


def stop_capture(proc: subprocess.Popen[bytes]) -> None:
    """Stop tshark (it flushes the file on SIGTERM); kill it if it does not go within 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stderr:
        proc.stderr.close()
