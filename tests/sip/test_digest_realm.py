"""Digest harvesting: credentials answer only our registrar's realm, with the strongest challenge offered."""

from __future__ import annotations

import asyncio

import pytest

from softphone.sip.errors import CallFailed, RegistrationFailed
from softphone.sip.message import Request, Response, make_response, parse_message
from softphone.sip.ua import UserAgent

from .conftest import ua_config

MD5 = 'Digest realm="{realm}", nonce="attacker-nonce-1", algorithm=MD5'
SMALL_SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
SHA = 'Digest realm="{realm}", nonce="nonce-2", algorithm=SHA-256, qop="auth"'


class FakePeer(asyncio.DatagramProtocol):
    """A UDP peer that challenges every INVITE without credentials and answers the rest with 486."""

    def __init__(self, status: int, challenges: list[str]) -> None:
        self.status = status
        self.challenges = challenges
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        msg = parse_message(data)
        assert isinstance(msg, Request)
        self.requests.append(msg)
        if msg.method != "INVITE":
            return
        authorized = "Authorization" in msg.headers or "Proxy-Authorization" in msg.headers
        if authorized:
            resp = make_response(msg, 486, to_tag="peer")
        else:
            name = "WWW-Authenticate" if self.status == 401 else "Proxy-Authenticate"
            resp = make_response(msg, self.status, to_tag="peer", extra=[(name, c) for c in self.challenges])
        assert self.transport is not None
        self.transport.sendto(resp.encode(), addr)

    def invites(self) -> list[Request]:
        return [r for r in self.requests if r.method == "INVITE"]


async def _call(status: int, challenges: list[str], **config: object) -> tuple[FakePeer, CallFailed]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(lambda: FakePeer(status, challenges),
                                                          local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with UserAgent(ua_config("alice", username="alice", password="alice-pw-1", **config)) as ua:
            call = await ua.invite(f"sip:bob@127.0.0.1:{port}", SMALL_SDP)
            with pytest.raises(CallFailed) as err:
                await call.answered(5)
            await asyncio.sleep(0.05)
    finally:
        transport.close()
    return peer, err.value


async def test_a_challenge_for_a_foreign_realm_gets_no_credentials_and_the_call_fails_clearly() -> None:
    peer, err = await _call(401, [MD5.format(realm="harvest.example")])
    assert len(peer.invites()) == 1  # never re-sent with an Authorization header
    assert all("Authorization" not in r.headers for r in peer.requests)
    assert err.status == 401 and "realm" in err.reason and "refused" in err.reason


async def test_configured_realms_are_the_only_ones_answered() -> None:
    peer, err = await _call(407, [MD5.format(realm="lab.test")], auth_realms=("corp.example",))
    assert len(peer.invites()) == 1 and err.status == 407
    peer, err = await _call(407, [MD5.format(realm="corp.example")], auth_realms=("corp.example",))
    assert len(peer.invites()) == 2 and err.status == 486


async def test_sha256_and_qop_auth_are_preferred_over_md5() -> None:
    peer, err = await _call(407, [MD5.format(realm="lab.test"), SHA.format(realm="lab.test"),
                                  MD5.format(realm="harvest.example")])
    assert err.status == 486
    answer = peer.invites()[1].headers.get("Proxy-Authorization") or ""
    assert "algorithm=SHA-256" in answer and "qop=auth" in answer and 'nonce="nonce-2"' in answer


def test_choose_challenge_orders_by_strength_and_keeps_to_our_realms() -> None:
    resp = Response(status=401, reason="Unauthorized")
    for value in [MD5.format(realm="lab.test"), 'Digest realm="lab.test", nonce="n3", algorithm=SHA-256',
                  SHA.format(realm="other.example")]:
        resp.headers.add("WWW-Authenticate", value)

    async def pick() -> str:
        async with UserAgent(ua_config("alice", username="alice", password="pw")) as ua:
            chosen = ua.choose_challenge(resp, "INVITE")
            with pytest.raises(RegistrationFailed):
                UserAgent(ua_config("alice", username="alice", password="pw",
                                    auth_realms=("x",))).choose_challenge(resp, "INVITE")
            return f"{chosen.realm} {chosen.algorithm} {chosen.nonce}"

    assert asyncio.run(pick()) == "lab.test SHA-256 n3"
