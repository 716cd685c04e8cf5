"""The KMS for the lab: a community on disk and ``softphone-kms`` in a subprocess (``serve`` or one command).

    users = make_community(d, "kms.lab.test", passphrase, users=("sip:alice@lab.test",))
    with serve_kms(d, passphrase) as kms:        # softphone-kms serve --listen 127.0.0.1:0
        kms.url, kms.cafile                       # https://127.0.0.1:<port>, its self-signed certificate
        kms.post("/keyprov", users["sip:alice@lab.test"].token)
    run_kms(passphrase, "user", "revoke", "--dir", str(d), "sip:alice@lab.test")

The child runs the ``kms`` package that this process imports (its parent directory goes first on
``PYTHONPATH``), so a source tree exercises its own server, not whichever one is installed.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import kms
from kms.issue import Issuer, NewUser, init_community, open_community
from lab.proc import LogProcess

#: The directory holding the imported ``kms`` package.
SOURCE_ROOT = Path(kms.__file__).resolve().parents[1]
API = "/keymanagement/identity/v1"
_SERVING = re.compile(r"serving (https://([0-9.]+):(\d+))\S* \(certificate (.+)\)")


def kms_env(passphrase: str) -> dict[str, str]:
    """The environment for a ``softphone-kms`` child: the master passphrase and our source tree."""
    env = dict(os.environ, SOFTPHONE_KMS_PASSPHRASE=passphrase)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def kms_command(*args: str) -> list[str]:
    """``softphone-kms ARGS`` as an argv for this interpreter."""
    return [sys.executable, "-m", "kms.cli", *args]


def make_community(directory: Path, kms_uri: str, passphrase: str, *, db: str | None = None,
                   users: tuple[str, ...] = (), trk_users: tuple[str, ...] = ()) -> dict[str, NewUser]:
    """Create a community in ``directory`` and add ``users`` (+ ``trk_users`` with a transport key)."""
    init_community(directory, kms_uri, passphrase.encode(), db=db)
    issuer = Issuer(open_community(directory, passphrase.encode()))
    try:
        made = {u: issuer.add_user(u) for u in users}
        made.update({u: issuer.add_user(u, transport_key=True) for u in trk_users})
    finally:
        issuer.close()
    return made


def run_kms(passphrase: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one ``softphone-kms`` command to completion, output captured."""
    return subprocess.run(kms_command(*args), capture_output=True, text=True, env=kms_env(passphrase),
                          timeout=timeout, cwd=SOURCE_ROOT)


@dataclass
class KmsServer:
    """A running ``softphone-kms serve`` on 127.0.0.1 (from :func:`serve_kms`); a context manager."""

    proc: LogProcess
    url: str
    host: str
    port: int
    cafile: Path

    def context(self) -> ssl.SSLContext:
        """A client TLS context trusting the server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cafile))

    def post(self, path: str, token: str | None, method: str = "POST") -> tuple[int, bytes, dict[str, str]]:
        """One request to ``API + path`` (bearer ``token``); status, body and headers."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context())
        try:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            conn.request(method, API + path, body=b"", headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.stop(timeout=10.0)

    def __enter__(self) -> KmsServer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def serve_kms(directory: Path, passphrase: str, *extra: str, timeout: float = 30.0,
              host: str = "127.0.0.1") -> KmsServer:
    """Start ``softphone-kms serve`` for the community in ``directory`` on a free port of ``host`` (an IPv4
    address of this machine); wait (bounded) for it.

    RuntimeError (with the server's output) when it does not come up within ``timeout`` seconds.
    """
    proc = LogProcess(kms_command("serve", "--dir", str(directory), "--listen", f"{host}:0", *extra),
                      env=kms_env(passphrase), cwd=SOURCE_ROOT)
    try:
        line = proc.wait_for(_SERVING.pattern, timeout)[0]
    except TimeoutError:
        proc.stop()
        raise RuntimeError("KMS did not start: " + " | ".join(proc.lines[-10:])[:500]) from None
    except BaseException:
        proc.stop()
        raise
    m = _SERVING.search(line)
    assert m is not None
    return KmsServer(proc, m.group(1), m.group(2), int(m.group(3)), Path(m.group(4)))
