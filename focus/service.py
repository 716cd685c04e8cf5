"""The focus as a service: registers the group URI, answers each member's INVITE, forwards over UDP.

asyncio only here; every forwarding decision is :class:`focus.core.Forwarder`'s. The answer SDP offers
the same ``RTP/SAVP`` audio formats back on a port of the focus's own and carries no ``a=key-mgmt`` and no
``a=crypto``: the focus has no key to offer and needs none (the members key media from the group's GMK).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass

from focus.core import Address, Forwarder, LegCounters
from focus.errors import FocusError
from softphone.sip.errors import ParseError, SipError
from softphone.sip.invite import CallState
from softphone.sip.sdp import Attributes, Media, SessionDescription, connection_line
from softphone.sip.session import InviteSession
from softphone.sip.ua import UAConfig, UserAgent

log = logging.getLogger(__name__)

SECURE_PROTOS = ("RTP/SAVP", "RTP/SAVPF")
MAX_CALL_SECONDS = 24 * 3600.0
_COPIED = ("rtpmap", "fmtp", "ptime", "maxptime", "rtcp-mux")


class _LegProtocol(asyncio.DatagramProtocol):
    def __init__(self, focus: Focus, leg_id: int) -> None:
        self.focus = focus
        self.leg_id = leg_id

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.focus.on_datagram(self.leg_id, data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from a departed member: keep going
        pass


def answer_sdp(offer: bytes, host: str, port: int) -> bytes:
    """The focus's answer to a member's offer: its first secure audio m-line mirrored on ``port``.

    Raises :class:`FocusError` (→ 488) for an offer without ``RTP/SAVP`` audio."""
    try:
        sdp = SessionDescription.parse(offer)
    except ParseError as exc:
        raise FocusError(f"bad SDP offer: {exc}") from None
    audio = next((m for m in sdp.media if m.media == "audio" and m.port and m.proto in SECURE_PROTOS), None)
    if audio is None:
        raise FocusError("offer has no secure (RTP/SAVP) audio stream")
    attrs = Attributes()
    for name in _COPIED:
        for value in audio.attributes.get_all(name):
            attrs.add(name, value or None)
    attrs.add("sendrecv")
    media = Media("audio", port, audio.proto, list(audio.formats), None, [], attrs)
    answer = SessionDescription(origin_user="focus", session_id=secrets.randbits(31), session_version=1,
                                address=host, name="group focus", connection=connection_line(host),
                                media=[media])
    return answer.encode()


def offer_address(offer: bytes) -> Address | None:
    sdp = SessionDescription.parse(offer)
    audio = next((m for m in sdp.media if m.media == "audio" and m.port), None)
    if audio is None:
        return None
    host = sdp.connection_address(audio)
    return (host, audio.port) if host else None


@dataclass
class FocusConfig:
    """The group URI and the account it registers with; ``media_host`` is where the legs' ports are bound."""

    group_uri: str
    username: str | None = None
    password: str | None = None
    proxy: str | None = None
    host: str = "127.0.0.1"
    media_host: str = "127.0.0.1"
    max_legs: int = 64

    def __repr__(self) -> str:
        return f"FocusConfig(group_uri={self.group_uri!r}, proxy={self.proxy!r}, host={self.host!r})"


class Focus:
    """``async with Focus(cfg) as f:`` registers and serves until closed; :meth:`counters` any time."""

    def __init__(self, config: FocusConfig, ua: UAConfig | None = None) -> None:
        """``ua`` replaces the UA settings made from ``config`` (TLS contexts, timers: see ``lab.focus``)."""
        self.config = config
        self.forwarder = Forwarder(config.max_legs)
        self.ua = UserAgent(ua or UAConfig(aor=config.group_uri, username=config.username, password=config.password,
                                           proxy=config.proxy, host=config.host, display_name="group focus"))
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._serve: asyncio.Task[None] | None = None
        self.calls_answered = 0
        self.calls_refused = 0
        self.departed: list[tuple[str, LegCounters]] = []  # counters of legs that have ended

    async def __aenter__(self) -> Focus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.ua.start()
        try:
            await self.ua.register()
        except SipError as exc:
            await self.ua.close()
            raise FocusError(f"focus cannot register {self.config.group_uri}: {exc}") from None
        self._serve = asyncio.get_running_loop().create_task(self._accept())

    async def close(self) -> None:
        if self._serve is not None:
            self._serve.cancel()
        for task in list(self._tasks):
            task.cancel()
        pending = [*self._tasks] + ([self._serve] if self._serve is not None else [])
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for t in self._transports.values():
            t.close()
        self._transports.clear()
        with contextlib.suppress(SipError, OSError):
            await self.ua.unregister()
        await self.ua.close()

    def counters(self) -> dict[str, LegCounters]:
        return self.forwarder.counters()

    def on_datagram(self, leg_id: int, data: bytes, source: Address) -> None:
        if leg_id not in self.forwarder.legs:
            return
        for out in self.forwarder.receive(leg_id, data, source):
            transport = self._transports.get(out.leg)
            if transport is not None:
                transport.sendto(out.data, out.dest)

    async def _accept(self) -> None:
        while True:
            session = await self.ua.incoming.get()
            task = asyncio.get_running_loop().create_task(self._serve_member(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_member(self, session: InviteSession) -> None:
        member = session.invite.from_.uri.aor()
        offer = session.remote_body
        loop = asyncio.get_running_loop()
        try:
            remote = offer_address(offer)
            leg_id = self.forwarder.add_leg(member, remote)
        except (ParseError, FocusError) as exc:
            self.calls_refused += 1
            await session.reject(488 if isinstance(exc, ParseError) else 486, warning=f"focus: {exc}")
            return
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _LegProtocol(self, leg_id), local_addr=(self.config.media_host, 0))
        except OSError as exc:
            self.forwarder.remove_leg(leg_id)
            self.calls_refused += 1
            await session.reject(500, warning=f"focus cannot bind a media port: {exc.strerror or exc}")
            return
        self._transports[leg_id] = transport
        try:
            try:
                body = answer_sdp(offer, self.config.media_host, transport.get_extra_info("sockname")[1])
            except FocusError as exc:
                self.calls_refused += 1
                await session.reject(488, warning=str(exc))
                return
            self.calls_answered += 1  # counted as the 200 OK goes out (answer() returns on the ACK)
            await session.answer(body)
            log.info("focus: %s joined %s (leg %d)", member, self.config.group_uri, leg_id)
            await session.wait_state(CallState.TERMINATED, timeout=MAX_CALL_SECONDS)
        except (SipError, TimeoutError) as exc:
            log.info("focus: leg %d (%s) ended: %s", leg_id, member, exc)
        finally:
            self._transports.pop(leg_id, None)
            transport.close()
            leg = self.forwarder.legs.get(leg_id)
            if leg is not None:
                self.departed.append((leg.name, leg.counters))
                self.forwarder.remove_leg(leg_id)
