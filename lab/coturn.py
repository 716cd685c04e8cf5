"""coturn (Debian ``coturn``) as the lab's STUN + TURN server: long-term credentials for one user, UDP and
TCP on ``port``, TLS over TCP on ``tls_port`` when ``tls`` files are given. Runs ``turnserver`` in the
foreground with its own command line only (no /etc/turnserver.conf, no CLI, no database), optionally inside
a network namespace (``netns``, see :mod:`lab.netns`).

    with Coturn(tmp_path, "203.0.113.1", netns=lab.public) as turn:
        turn.url("turn", "tcp")      # "turn:203.0.113.1:3478?transport=tcp"
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path
from types import TracebackType

from lab.certs import CertFiles
from lab.proc import LogProcess

REALM = "lab.test"


class CoturnError(RuntimeError):
    """turnserver is missing or did not start."""


class Coturn:
    def __init__(self, workdir: Path, listen_ip: str, *, port: int = 3478, tls: CertFiles | None = None,
                 tls_port: int = 5349, netns: str | None = None, username: str = "lab") -> None:
        self.workdir = Path(workdir)
        self.listen_ip = listen_ip
        self.port = port
        self.tls = tls
        self.tls_port = tls_port
        self.netns = netns
        self.username = username
        self.password = secrets.token_hex(12)  # a test credential, not logged by us
        self.proc: LogProcess | None = None

    def __repr__(self) -> str:
        return f"Coturn({self.listen_ip}:{self.port}, netns={self.netns})"

    def argv(self) -> list[str]:
        binary = shutil.which("turnserver")
        if binary is None:
            raise CoturnError("turnserver not installed (Debian package coturn)")
        argv = [binary, "-n", "--no-cli", "--fingerprint", "--lt-cred-mech", "--realm", REALM,
                "--user", f"{self.username}:{self.password}", "--listening-ip", self.listen_ip,
                "--relay-ip", self.listen_ip, "--listening-port", str(self.port), "--min-port", "49152",
                "--max-port", "49999", "--no-dtls", "--log-file", "stdout", "--simple-log",
                "--pidfile", str(self.workdir / "turnserver.pid"), "--no-software-attribute"]
        if self.tls is not None:
            argv += ["--tls-listening-port", str(self.tls_port), "--cert", str(self.tls.cert),
                     "--pkey", str(self.tls.key)]
        else:
            argv += ["--no-tls"]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = LogProcess(self.argv(), cwd=self.workdir)
        try:
            self.proc.wait_for(r"(?i)(relay|listener).*opened|Total General servers", timeout)
        except TimeoutError as exc:
            self.stop()
            raise CoturnError(str(exc)) from None
        time.sleep(0.2)  # listeners open in worker threads just after the banner

    def url(self, scheme: str = "turn", transport: str = "udp") -> str:
        port = self.tls_port if scheme == "turns" else self.port
        suffix = "" if scheme == "stun" or scheme == "turns" else f"?transport={transport}"
        return f"{scheme}:{self.listen_ip}:{port}{suffix}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
