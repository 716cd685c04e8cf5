"""dnsmasq as a lab DNS server for RFC 3263 tests: NAPTR, SRV and A records on 127.0.0.1:<free port>.

    with Dnsmasq(tmp_path, naptr=[("lab.test", 10, 10, "s", "SIPS+D2T", "_sips._tcp.lab.test")],
                 srv=[("_sips._tcp.lab.test", "kam1.lab.test", 5061, 10, 50)],
                 hosts={"kam1.lab.test": "127.0.0.1"}, domain="lab.test") as dns:
        UAConfig(..., nameserver=dns.nameserver)       # "127.0.0.1:<port>"

Runs Debian's ``dnsmasq`` binary (package ``dnsmasq-base``: no system service) in the foreground
with its own config file only: no upstream servers, no /etc/hosts, answers only for ``domain``.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from lab.proc import LogProcess, free_port

Naptr = tuple[str, int, int, str, str, str]      # name, order, preference, flags, service, replacement
Srv = tuple[str, str, int, int, int]              # name, target, port, priority, weight


class Dnsmasq:
    """A foreground dnsmasq on 127.0.0.1 (UDP and TCP on one free port), logging its queries."""

    def __init__(self, workdir: Path, *, naptr: Sequence[Naptr] = (), srv: Sequence[Srv] = (),
                 hosts: dict[str, str] | None = None, domain: str = "lab.test") -> None:
        self.workdir = Path(workdir)
        self.naptr = list(naptr)
        self.srv = list(srv)
        self.hosts = dict(hosts or {})
        self.domain = domain
        self.port = free_port()
        self.proc: LogProcess | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
                 "no-poll", "log-queries", "cache-size=0", f"local=/{self.domain}/", "pid-file="]
        lines += [f'naptr-record={n},{o},{p},"{f}","{s}","",{r}' for n, o, p, f, s, r in self.naptr]
        lines += [f"srv-host={n},{t},{port},{prio},{w}" for n, t, port, prio, w in self.srv]
        lines += [f"host-record={name},{addr}" for name, addr in self.hosts.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> Dnsmasq:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "dnsmasq.conf"
        cfg.write_text(self.config())
        self.proc = LogProcess([binary, "--keep-in-foreground", "--log-facility=-", f"--conf-file={cfg}",
                                "--user=root" if _is_root() else "--user="])
        try:
            self._wait_ready(10.0)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited early:\n" + "\n".join(self.proc.lines[-15:]))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"dnsmasq not listening on 127.0.0.1:{self.port}")

    def matching(self, pattern: str) -> list[str]:
        assert self.proc is not None
        return self.proc.matching(pattern)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _is_root() -> bool:
    import os
    return os.geteuid() == 0
