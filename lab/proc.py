"""Subprocess helpers shared by the lab harnesses: free ports, log capture, bounded waits."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path


def free_port(kind: int = socket.SOCK_DGRAM, also_tcp: bool = True) -> int:
    """A port free for UDP (and TCP when ``also_tcp``) on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if also_tcp:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class LogProcess:
    """A subprocess whose merged stdout/stderr lines are collected by a reader thread."""

    def __init__(self, argv: list[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.argv = argv
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.PIPE, text=True, errors="replace", env=env, cwd=cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def matching(self, pattern: str) -> list[str]:
        """Collected lines matching the regular expression ``pattern``."""
        rx = re.compile(pattern)
        with self._cond:
            return [ln for ln in self.lines if rx.search(ln)]

    def wait_for(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        """Block until ``count`` lines match ``pattern``; TimeoutError with the log tail otherwise."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [ln for ln in self.lines if rx.search(ln)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-15:])
                    raise TimeoutError(f"{self.argv[0]}: no {count}x {pattern!r} within {timeout}s; log tail:\n{tail}")
                self._cond.wait(min(left, 0.2))

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill if needed; always reaps the process."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(2.0)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()


def wait_tcp(port: int, timeout: float = 10.0, proc: LogProcess | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.argv[0]} exited early:\n" + "\n".join(proc.lines[-15:]))
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")
