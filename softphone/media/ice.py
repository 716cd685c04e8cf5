"""Full ICE (RFC 8445) for the audio stream with aioice: gathering host, server-reflexive (STUN) and relayed
(TURN over UDP, TCP or TLS) candidates, connectivity checks as controlling or controlled agent, nomination,
and consent freshness (RFC 7675, done by aioice once connected). One component: RTP and RTCP multiplexed
(RFC 5761), which is what a Secure Chorus phone offers with ICE.

**Where media runs.** Without ICE a :class:`~softphone.media.session.MediaSession` runs on the media engine
thread with its own sockets. aioice owns its sockets (and, for a relay, the TURN allocation, permission
refreshes and channel bindings) on the asyncio loop, so an ICE call's session is given an
:class:`IceNetwork` and runs on that loop (``LoopClock``): its one "endpoint" sends every datagram on the
nominated pair and hands every datagram aioice receives to the session. Taking the selected pair's socket
over to the engine thread would work for host/srflx pairs only, and would break consent freshness
(aioice reads the STUN answers on that socket) and every relay, so we do not. The SRTP keys still come from
MIKEY-SAKKE; ICE only decides where the packets go.

The SDP text of candidates is read and written by :mod:`softphone.sip.ice` (the call layer joins them);
this module speaks aioice's ``Candidate.to_sdp()`` form, which is the same RFC 8839 grammar.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from aioice import Candidate as AioCandidate
from aioice import Connection, TransportPolicy

from softphone.media.errors import MediaError
from softphone.media.transport import Address, Endpoint, Receive

MAX_REMOTE_CANDIDATES = 32
MAX_PENDING_SENDS = 64  # datagrams queued to a TURN channel being bound; beyond that they are dropped


class IceError(MediaError):
    """ICE could not start (bad server or credentials) or found no working candidate pair."""


class IcePolicy(enum.Enum):
    ALL = "all"  # host, srflx and relay candidates
    RELAY = "relay"  # relay only: nothing about the local network is revealed, every packet goes via TURN


@dataclass(frozen=True)
class IceSettings:
    """From the account: STUN and TURN servers (``host:port``), TURN credentials and transport, policy."""

    stun_server: Address | None = None
    turn_server: Address | None = None
    turn_username: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    turn_transport: str = "udp"  # "udp" | "tcp"
    turn_tls: bool = False  # TLS over TCP to the TURN server (turns:), certificate verified
    turn_ca_file: str | None = None  # trust for turns: (default: the system's CAs)
    policy: IcePolicy = IcePolicy.ALL
    use_ipv6: bool = False

    def __post_init__(self) -> None:
        if self.turn_transport not in ("udp", "tcp"):
            raise IceError(f"TURN transport must be udp or tcp, got {self.turn_transport!r}")
        if self.turn_tls and self.turn_transport != "tcp":
            raise IceError("TURN over TLS needs turn_transport tcp")
        if self.policy is IcePolicy.RELAY and self.turn_server is None:
            raise IceError("ice_policy relay needs a turn_server")
        if self.turn_server is not None and (not self.turn_username or not self.turn_password):
            raise IceError("a TURN server needs turn_username and turn_password")


@dataclass(frozen=True)
class IceState:
    """What the GUI and call events show: the agent's role and, once connected, the pair in use."""

    state: str  # "new" | "gathering" | "checking" | "connected" | "failed" | "closed"
    controlling: bool
    local_type: str | None = None  # "host" | "srflx" | "prflx" | "relay"
    remote_type: str | None = None
    local_addr: Address | None = None
    remote_addr: Address | None = None


class IceAgent:
    """One ICE agent for one audio stream: ``await gather()``, exchange :attr:`ufrag`/:attr:`pwd` and
    :meth:`candidate_lines` in SDP, ``set_remote(...)``, ``await connect(timeout)``, then give
    :meth:`network` to the media session; ``await close()`` at the end."""

    def __init__(self, settings: IceSettings, controlling: bool, components: int = 1) -> None:
        """``components``: 1 with RTCP muxed on the RTP flow (RFC 5761; what we offer), 2 when answering an
        offer without ``a=rtcp-mux`` (RFC 8445 §4: an RTCP component the peer checks too); media and RTCP
        then still go on component 1, as rtcp-mux answered in our SDP says."""
        if components not in (1, 2):
            raise IceError(f"ICE components must be 1 or 2, got {components}")
        self.settings = settings
        self.components = components
        turn_host = settings.turn_server
        tls: bool | ssl.SSLContext = False
        if settings.turn_tls:
            try:
                tls = ssl.create_default_context(cafile=settings.turn_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise IceError(f"cannot load TURN CA file: {type(exc).__name__}") from None
        self._conn = Connection(
            ice_controlling=controlling, components=components,
            stun_server=settings.stun_server, turn_server=turn_host,
            turn_username=settings.turn_username, turn_password=settings.turn_password,
            turn_ssl=cast(bool, tls),  # aioice passes it on as create_connection(ssl=...): a context works
            turn_transport=settings.turn_transport,
            use_ipv4=True, use_ipv6=settings.use_ipv6,
            transport_policy=TransportPolicy.RELAY if settings.policy is IcePolicy.RELAY else TransportPolicy.ALL)
        self._state = "new"

    def __repr__(self) -> str:
        return f"IceAgent(state={self._state}, controlling={self._conn.ice_controlling})"

    @property
    def ufrag(self) -> str:
        return self._conn.local_username

    @property
    def pwd(self) -> str:
        return self._conn.local_password

    @property
    def controlling(self) -> bool:
        return self._conn.ice_controlling

    async def gather(self, timeout: float = 10.0) -> None:
        """Gather host, srflx and relay candidates (bounded: STUN/TURN that do not answer are left out)."""
        self._state = "gathering"
        try:
            await asyncio.wait_for(self._conn.gather_candidates(), timeout)
        except (OSError, ConnectionError, TimeoutError) as exc:
            self._state = "failed"
            raise IceError(f"ICE gathering failed: {type(exc).__name__}") from None
        if not self._conn.local_candidates:
            self._state = "failed"
            raise IceError("ICE gathering found no candidate (relay policy without a reachable TURN server?)")

    def candidate_lines(self) -> list[str]:
        """Our candidates as ``a=candidate`` values (RFC 8839 grammar)."""
        return [c.to_sdp() for c in self._conn.local_candidates]

    def default_address(self, component: int = 1) -> Address:
        """The address for ``c=``/``m=`` (RFC 8839 §4.2.1.1): what aioice picks (relay > srflx > host);
        ``component=2``: the RTCP component's, for ``a=rtcp``."""
        cand = self._conn.get_default_candidate(component)
        if cand is None:
            raise IceError("no ICE candidate to put in c=/m=")
        return cand.host, cand.port

    async def set_remote(self, ufrag: str, pwd: str, candidate_lines: Iterable[str], lite: bool = False) -> None:
        """The peer's ICE attributes from its SDP (all candidates: end-of-candidates is implied)."""
        self._conn.remote_username = ufrag
        self._conn.remote_password = pwd
        self._conn.remote_is_lite = lite
        lines = list(candidate_lines)
        if len(lines) > MAX_REMOTE_CANDIDATES:
            raise IceError("too many remote ICE candidates")
        for line in lines:
            try:
                cand = AioCandidate.from_sdp(line)
            except (ValueError, IndexError):
                raise IceError("malformed remote ICE candidate") from None
            if cand.component <= self.components:
                await self._conn.add_remote_candidate(cand)
        await self._conn.add_remote_candidate(None)

    async def connect(self, timeout: float = 15.0) -> IceState:
        """Run the checks until a pair is nominated; IceError on failure or after ``timeout`` seconds."""
        self._state = "checking"
        try:
            await asyncio.wait_for(self._conn.connect(), timeout)
        except (ConnectionError, OSError, TimeoutError) as exc:
            self._state = "failed"
            reason = "timed out" if isinstance(exc, TimeoutError) else "no candidate pair worked"
            raise IceError(f"ICE failed: {reason}") from None
        self._state = "connected"
        return self.state()

    def state(self) -> IceState:
        pair = self._conn._nominated.get(1)  # aioice keeps the selected pair private; read-only use
        if pair is None:
            return IceState(self._state, self.controlling)
        local, remote = pair.local_candidate, pair.remote_candidate
        return IceState(self._state, self.controlling, local.type, remote.type,
                        (local.host, local.port), (remote.host, remote.port))

    def network(self) -> IceNetwork:
        return IceNetwork(self._conn)

    async def close(self) -> None:
        if self._state != "closed":
            self._state = "closed"
            await self._conn.close()


class IceEndpoint:
    """The media session's endpoint over an ICE connection: ``sendto`` ignores ``addr`` (ICE chose it)."""

    def __init__(self, conn: Connection, receive: Receive) -> None:
        self._conn = conn
        self._receive = receive
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def local_addr(self) -> Address:
        pair = self._conn._nominated.get(1)
        if pair is None:
            return ("0.0.0.0", 0)
        return pair.local_candidate.host, pair.local_candidate.port

    def _remote(self) -> Address:
        pair = self._conn._nominated.get(1)
        return pair.remote_addr if pair is not None else ("0.0.0.0", 0)

    async def _read(self) -> None:
        while True:  # bounded by the connection: recvfrom raises once it is closed or consent expires
            try:
                data, _component = await self._conn.recvfrom()
            except ConnectionError:
                return
            self._receive(data, self._remote())

    def sendto(self, data: bytes, addr: Address) -> None:
        if len(self._pending) >= MAX_PENDING_SENDS:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._send(data))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, data: bytes) -> None:
        try:
            await self._conn.sendto(data, 1)
        except (ConnectionError, OSError):
            self.dropped += 1

    def close(self) -> None:
        self._reader.cancel()
        for task in list(self._pending):
            task.cancel()


class IceNetwork:
    """A :class:`~softphone.media.transport.Network` whose only endpoint is the nominated ICE pair."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def open(self, local_addr: Address, receive: Receive) -> Endpoint:
        if not self._conn._nominated:
            raise OSError(107, "ICE not connected")
        return IceEndpoint(self._conn, receive)
