"""Helpers shared by the KMS and phone tests: a community on disk and a running ``softphone-kms serve``."""

from __future__ import annotations

import http.client
import os
import re
import selectors
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kms.issue import Issuer, NewUser, init_community, open_community

PASSPHRASE = "correct horse battery staple"
KMS_URI = "kms.example.org"
REPO = Path(__file__).resolve().parents[2]


def kms_env() -> dict[str, str]:
    env = dict(os.environ, SOFTPHONE_KMS_PASSPHRASE=PASSPHRASE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    return env


def make_community(directory: Path, db: str | None = None, users: tuple[str, ...] = (),
                   trk_users: tuple[str, ...] = ()) -> dict[str, NewUser]:
    """Create a community in ``directory`` and add ``users`` (+ ``trk_users`` with a transport key)."""
    init_community(directory, KMS_URI, PASSPHRASE.encode(), db=db)
    issuer = Issuer(open_community(directory, PASSPHRASE.encode()))
    try:
        made = {u: issuer.add_user(u) for u in users}
        made.update({u: issuer.add_user(u, transport_key=True) for u in trk_users})
    finally:
        issuer.close()
    return made


def run_kms(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kms.cli", *args], capture_output=True, text=True,
                          env=kms_env(), timeout=timeout, cwd=REPO)


@dataclass
class RunningKms:
    """A ``softphone-kms serve`` subprocess on 127.0.0.1:<free port>."""

    proc: subprocess.Popen
    url: str
    host: str
    port: int
    cafile: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))

    def post(self, path: str, token: str | None, method: str = "POST") -> tuple[int, bytes, dict]:
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context())
        try:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            conn.request(method, "/keymanagement/identity/v1" + path, body=b"", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def start_kms(directory: Path, *extra: str, timeout: float = 30) -> RunningKms:
    """Start ``softphone-kms serve`` and wait (bounded) for its 'serving https://…' line."""
    proc = subprocess.Popen([sys.executable, "-m", "kms.cli", "serve", "--dir", str(directory),
                             "--listen", "127.0.0.1:0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=kms_env(), cwd=REPO)
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline, line = time.monotonic() + timeout, b""
    try:
        while time.monotonic() < deadline and b"\n" not in line:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        m = re.search(rb"serving (https://127\.0\.0\.1:(\d+))\S* \(certificate (.+)\)", line)
        if m is None:
            raise RuntimeError(f"KMS did not start: {line.decode(errors='replace')[:500]}")
    except BaseException:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
        raise
    finally:
        sel.close()
    return RunningKms(proc, m.group(1).decode(), "127.0.0.1", int(m.group(2)), Path(m.group(3).decode()))
