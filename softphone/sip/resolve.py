"""Locating SIP servers (RFC 3263): NAPTR -> SRV -> A/AAAA, and the order to try the targets in.

The ordering is pure (:func:`targets_from_records`, :func:`order_naptr`, :func:`order_srv`): records
and a random source in, an ordered list of :class:`Target` out. :class:`Resolver` does the DNS
queries with dnspython's asyncio resolver, against the system's nameservers or one given as
``host:port`` (tests point it at their own server).

Transport choice (§4.1): a ``transport`` parameter or a numeric host or an explicit port decides
without NAPTR (``sips:`` means TLS, otherwise UDP unless named). Otherwise the NAPTR records of
the domain are ordered by ``order``, then by the caller's transport preference (``transports``,
e.g. ``("tls",)`` for the Secure Chorus profile, ``("tls", "tcp", "udp")`` for request targets),
then by ``preference``; the server's preference only breaks ties, which §4.1 permits. Without
NAPTR records the SRV names of the wanted transports are queried in preference order, and
without those the A/AAAA records of the domain with the default port (§4.2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import TransportError
from .uri import SipUri

log = logging.getLogger(__name__)

# NAPTR service field -> transport (RFC 3263 §4.1, RFC 3261 §26.3.1 sips over TLS only)
SERVICES = {"SIPS+D2T": "tls", "SIP+D2T": "tcp", "SIP+D2U": "udp"}
SRV_PREFIX = {"tls": "_sips._tcp", "tcp": "_sip._tcp", "udp": "_sip._udp"}
DEFAULT_PORT = {"tls": 5061, "tcp": 5060, "udp": 5060}
ALL_TRANSPORTS = ("tls", "tcp", "udp")


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Target:
    """One place to send to: transport, numeric address, port; ``name`` is the host it came from
    and ``tls_name`` the name a TLS server certificate must match (the URI's domain, RFC 5922 §4)."""

    proto: str
    address: str
    port: int
    name: str = ""
    tls_name: str = ""


def is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def uri_transport(uri: SipUri) -> str | None:
    """The transport an URI fixes by itself, None when NAPTR/SRV must choose (§4.1)."""
    if "transport" in uri.params:
        proto = (uri.params.get("transport") or "udp").lower()
        if uri.scheme == "sips" and proto == "tcp":
            return "tls"
        return proto
    if is_numeric(uri.host) or uri.port is not None:
        return "tls" if uri.scheme == "sips" else "udp"
    return None   # a domain name without port: NAPTR/SRV decide (sips: among TLS records only)


def allowed(uri: SipUri, transports: Sequence[str]) -> tuple[str, ...]:
    """The caller's transports that the URI permits (``sips:`` only TLS)."""
    return tuple(t for t in transports if t == "tls") if uri.scheme == "sips" else tuple(transports)


def order_naptr(records: Sequence[Naptr], transports: Sequence[str]) -> list[tuple[str, str]]:
    """``(transport, SRV name)`` pairs to try, from the domain's NAPTR records (§4.1)."""
    usable = [r for r in records if r.flags.lower() == "s" and SERVICES.get(r.service.upper()) in transports]
    usable.sort(key=lambda r: (r.order, transports.index(SERVICES[r.service.upper()]), r.preference))
    return [(SERVICES[r.service.upper()], r.replacement.rstrip(".")) for r in usable]


def order_srv(records: Sequence[Srv], rng: Callable[[], float]) -> list[Srv]:
    """SRV records in the order to try them: by priority, weighted random within one (RFC 2782).

    Within a priority, records of weight 0 are put first (RFC 2782 says so), then each pick draws
    ``rng() * (sum of remaining weights)`` and takes the first record whose running sum reaches it.
    A single ``.`` target means "no service here" and yields nothing.
    """
    if len(records) == 1 and records[0].target.rstrip(".") == "":
        return []
    out: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng() * total
            running = 0
            chosen = group[-1]
            for r in group:
                running += r.weight
                if running >= pick:
                    chosen = r
                    break
            out.append(chosen)
            group.remove(chosen)
    return out


def targets_from_records(uri: SipUri, transports: Sequence[str], naptr: Sequence[Naptr],
                         srv: Mapping[str, Sequence[Srv]], addresses: Mapping[str, Sequence[str]],
                         rng: Callable[[], float]) -> list[Target]:
    """Every target for ``uri`` in order, from already-fetched records.

    ``srv`` maps SRV names, ``addresses`` host names to their A/AAAA results (absent: not
    looked up or empty). Used by :class:`Resolver` and by the tests with fixed records.
    """
    host = uri.host.strip("[]")
    tls_name = host
    fixed = uri_transport(uri)
    wanted = allowed(uri, transports)
    if fixed is not None or is_numeric(host):
        proto = fixed or "udp"
        port = uri.port or DEFAULT_PORT.get(proto, 5060)
        addrs = [host] if is_numeric(host) else list(addresses.get(host, ()))
        if uri.port is None and not is_numeric(host) and fixed is not None and "transport" in uri.params:
            # a transport but no port: SRV for that transport first (§4.2)
            found = _from_srv([(proto, f"{SRV_PREFIX[proto]}.{host}")], srv, addresses, rng, tls_name)
            if found:
                return found
        return [Target(proto, a, port, host, tls_name) for a in addrs]
    pairs = order_naptr(naptr, wanted) if naptr else []
    if not pairs:
        pairs = [(t, f"{SRV_PREFIX[t]}.{host}") for t in wanted if t in SRV_PREFIX]
    found = _from_srv(pairs, srv, addresses, rng, tls_name)
    if found:
        return found
    proto = wanted[0] if wanted else "udp"
    return [Target(proto, a, DEFAULT_PORT[proto], host, tls_name) for a in addresses.get(host, ())]


def _from_srv(pairs: Sequence[tuple[str, str]], srv: Mapping[str, Sequence[Srv]],
              addresses: Mapping[str, Sequence[str]], rng: Callable[[], float], tls_name: str) -> list[Target]:
    out: list[Target] = []
    for proto, name in pairs:
        for rec in order_srv(list(srv.get(name, ())), rng):
            target = rec.target.rstrip(".")
            out.extend(Target(proto, a, rec.port, target, tls_name) for a in addresses.get(target, ()))
    return out


def split_hostport(text: str, default: int = 53) -> tuple[str, int]:
    """``"127.0.0.1:5353"``, ``"[::1]:5353"``, ``"::1"`` or ``"127.0.0.1"`` -> host and port."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default


class Resolver:
    """RFC 3263 lookups with dnspython's asyncio resolver.

    ``nameserver`` is ``"host:port"`` (or ``"host"``, port 53), default the system resolver.
    ``rng`` draws the SRV weighted selection.
    """

    def __init__(self, nameserver: str | None = None, *, rng: Callable[[], float] | None = None,
                 timeout: float = 3.0) -> None:
        import random

        import dns.asyncresolver

        self.rng = rng or random.SystemRandom().random
        self.system = not nameserver
        if nameserver:
            host, port = split_hostport(nameserver)
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [host]
            self._resolver.port = port
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            raise TransportError(f"DNS timeout for {name} {rdtype}") from None
        except dns.exception.DNSException as exc:
            raise TransportError(f"DNS error for {name} {rdtype}: {exc}") from None
        return list(answer)

    async def addresses(self, host: str) -> list[str]:
        """A then AAAA records of ``host`` (numeric hosts as they are)."""
        if is_numeric(host):
            return [host.strip("[]")]
        if self.system:  # /etc/hosts and the system's resolver, as every other program sees them
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except socket.gaierror:
                return []
            return list(dict.fromkeys(str(i[4][0]) for i in infos))
        out = [r.address for r in await self._query(host, "A")]
        out += [r.address for r in await self._query(host, "AAAA")]
        return out

    async def resolve(self, uri: SipUri, transports: Sequence[str] = ALL_TRANSPORTS) -> list[Target]:
        """Every target for ``uri`` in the order to try; raises :class:`TransportError` if none."""
        host = uri.host.strip("[]")
        naptr: list[Naptr] = []
        srv: dict[str, list[Srv]] = {}
        addresses: dict[str, list[str]] = {}
        fixed = uri_transport(uri)
        if fixed is None and not is_numeric(host):
            naptr = [Naptr(r.order, r.preference, r.flags.decode(), r.service.decode(), r.replacement.to_text())
                     for r in await self._query(host, "NAPTR")]
            pairs = order_naptr(naptr, allowed(uri, transports))
            names = [n for _, n in pairs] or [f"{SRV_PREFIX[t]}.{host}" for t in allowed(uri, transports)]
        elif fixed is not None and uri.port is None and not is_numeric(host) and "transport" in uri.params:
            names = [f"{SRV_PREFIX[fixed]}.{host}"]
        else:
            names = []
        for name in names:
            srv[name] = [Srv(r.priority, r.weight, r.port, r.target.to_text()) for r in await self._query(name, "SRV")]
            for rec in srv[name]:
                target = rec.target.rstrip(".")
                if target and target not in addresses:
                    addresses[target] = await self.addresses(target)
        if not any(srv.values()) and not is_numeric(host):
            addresses[host] = await self.addresses(host)
        found = targets_from_records(uri, transports, naptr, srv, addresses, self.rng)
        if not found:
            raise TransportError(f"cannot resolve {uri.host!r} (no NAPTR/SRV/A/AAAA records)")
        log.debug("resolved %s -> %s", uri, found)
        return found


T = TypeVar("T")

# why an attempt at one target failed (RFC 3263 §4.3)
FAILOVER_REASONS = ("connect", "transport", "timeout", "503")


class Failover(Generic[T]):
    """Which RFC 3263 target an INVITE goes to next (§4.3); pure, no clock or I/O.

    An INVITE moves on to the next target when the current one cannot be connected, a send to it
    fails, Timer B fires, or it answers 503, as long as that target has sent no provisional response
    beyond ``100 Trying`` (a 180/183 means a phone may be alerted: trying elsewhere could ring it
    twice; a ``100`` is only the next hop's "got it", RFC 3261 §16.2). A 503 from the last target is
    the call's answer, like any other final response. ``tried`` records ``(target, reason)``.
    """

    def __init__(self, targets: Sequence[T]) -> None:
        self.targets = list(targets)
        self.index = 0
        self.provisional = False
        self.tried: list[tuple[T, str]] = []

    @property
    def current(self) -> T | None:
        return self.targets[self.index] if self.index < len(self.targets) else None

    def provisional_received(self, status: int) -> None:
        """A 1xx from the current target; beyond 100 it pins the INVITE there."""
        if 100 < status < 200:
            self.provisional = True

    def failed(self, reason: str) -> T | None:
        """The current target failed for ``reason`` (one of :data:`FAILOVER_REASONS`); the next target
        to try, or None when the INVITE must fail with this outcome."""
        if reason not in FAILOVER_REASONS:
            raise ValueError(f"unknown failover reason {reason!r}")
        current = self.current
        if current is None or self.provisional:
            return None
        if reason == "503" and self.index + 1 >= len(self.targets):
            return None
        self.tried.append((current, reason))
        self.index += 1
        return self.current
