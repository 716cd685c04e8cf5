"""A NAT lab in Linux network namespaces: two phones, each behind its own masquerading NAT, and a "public"
side for the servers (coturn, Kamailio). Needs root (``ip netns``, iptables); :func:`unavailable` says why
not where it cannot run.

```
 phone A 10.1.0.2 ── NAT A (10.1.0.1 | 203.0.113.11) ──┐
                                                       br0 in PUBLIC 203.0.113.1 (servers here)
 phone B 10.2.0.2 ── NAT B (10.2.0.1 | 203.0.113.12) ──┤
                                                       │ (``host_link=True``)
 this machine's own namespace 203.0.113.254 ───────────┘
```

With ``host_link=True`` the namespace this process runs in gets a port on the public bridge too, at
:data:`HOST_IP`: servers started the usual way (Kamailio, the KMS) then listen on the public side, and
phones run inside ``phone_a``/``phone_b`` (``ip netns exec``) reach them only through their NAT.

The NATs masquerade (Linux conntrack: port-preserving where it can, address-and-port-dependent
filtering), so a phone's private address is unreachable from the other side and ICE has to find the
server-reflexive or relayed path. :meth:`NatLab.block_udp` drops all forwarded UDP at both NATs (only TCP
to the TURN server is left). Every namespace is deleted on :meth:`close`, on ``with`` exit, and at
interpreter exit, even after a failure; stale namespaces from a killed run (same prefix) are removed first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

PUBLIC_IP = "203.0.113.1"
NAT_A_PUBLIC, NAT_B_PUBLIC = "203.0.113.11", "203.0.113.12"
PHONE_A_IP, PHONE_B_IP = "10.1.0.2", "10.2.0.2"
HOST_IP = "203.0.113.254"  # this machine's own namespace on the public side (``NatLab.create(host_link=True)``)
PREFIX = "scnat"


class NetnsError(RuntimeError):
    """A namespace command failed (the message has the command and its stderr)."""


def unavailable() -> str | None:
    """Why the lab cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def _run(argv: Sequence[str], ns: str | None = None) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    done = subprocess.run(full, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(full)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class NatLab:
    """Names of the four namespaces; build with :meth:`create` (or ``with NatLab.create() as lab``)."""

    tag: str
    public: str
    nat_a: str
    nat_b: str
    phone_a: str
    phone_b: str
    host_link: bool = False

    @classmethod
    def create(cls, host_link: bool = False) -> NatLab:
        """Build the namespaces; ``host_link`` also puts this namespace on the public side at :data:`HOST_IP`."""
        tag = f"{PREFIX}{os.getpid() % 100000}"
        lab = cls(tag, f"{tag}p", f"{tag}na", f"{tag}nb", f"{tag}a", f"{tag}b", host_link)
        lab.cleanup_stale()
        atexit.register(lab.close)
        try:
            lab._build()
            if host_link:
                lab._link_host()
        except BaseException:
            lab.close()
            raise
        return lab

    def __enter__(self) -> NatLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.public, self.nat_a, self.nat_b, self.phone_a, self.phone_b)

    def _build(self) -> None:
        for ns in self.namespaces:
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "set", "lo", "up"], ns)
        _run(["ip", "link", "add", "br0", "type", "bridge"], self.public)
        _run(["ip", "addr", "add", f"{PUBLIC_IP}/24", "dev", "br0"], self.public)
        _run(["ip", "link", "set", "br0", "up"], self.public)
        for side, nat, phone, pub_ip, net in (("a", self.nat_a, self.phone_a, NAT_A_PUBLIC, "10.1.0"),
                                              ("b", self.nat_b, self.phone_b, NAT_B_PUBLIC, "10.2.0")):
            out, up = f"{self.tag}o{side}", f"{self.tag}u{side}"  # NAT outside ↔ bridge port
            inn, ph = f"{self.tag}i{side}", f"{self.tag}f{side}"  # NAT inside ↔ phone
            _run(["ip", "link", "add", out, "netns", nat, "type", "veth", "peer", "name", up, "netns", self.public])
            _run(["ip", "link", "add", inn, "netns", nat, "type", "veth", "peer", "name", ph, "netns", phone])
            _run(["ip", "link", "set", up, "master", "br0", "up"], self.public)
            _run(["ip", "addr", "add", f"{pub_ip}/24", "dev", out], nat)
            _run(["ip", "addr", "add", f"{net}.1/24", "dev", inn], nat)
            _run(["ip", "link", "set", out, "up"], nat)
            _run(["ip", "link", "set", inn, "up"], nat)
            _run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], nat)
            _run(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", out, "-j", "MASQUERADE"], nat)
            # Unsolicited packets from outside are dropped silently, as a home router does. Dropping them in
            # INPUT also keeps their conntrack entry unconfirmed: otherwise the peer's first ICE check would
            # claim the public port the phone is about to use and MASQUERADE would pick another one.
            _run(["iptables", "-A", "INPUT", "-i", out, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"], nat)
            _run(["ip", "addr", "add", f"{net}.2/24", "dev", ph], phone)
            _run(["ip", "link", "set", ph, "up"], phone)
            _run(["ip", "route", "add", "default", "via", f"{net}.1"], phone)

    def _link_host(self) -> None:
        here, port = f"{self.tag}h", f"{self.tag}hb"  # deleted with the public namespace (its peer is there)
        _run(["ip", "link", "add", here, "type", "veth", "peer", "name", port, "netns", self.public])
        _run(["ip", "link", "set", port, "master", "br0", "up"], self.public)
        _run(["ip", "addr", "add", f"{HOST_IP}/24", "dev", here])
        _run(["ip", "link", "set", here, "up"])

    def block_udp(self) -> None:
        """Drop every forwarded UDP datagram at both NATs: only TCP (to TURN) gets out."""
        for nat in (self.nat_a, self.nat_b):
            _run(["iptables", "-A", "FORWARD", "-p", "udp", "-j", "DROP"], nat)

    def exec_argv(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *argv]

    def cleanup_stale(self) -> None:
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.tag) and name[len(self.tag):] in ("p", "na", "nb", "a", "b"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)

    def close(self) -> None:
        """Delete every namespace of this lab (their veths and NAT state go with them); idempotent."""
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
