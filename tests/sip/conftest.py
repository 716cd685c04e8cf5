"""SIP test fixtures: lab certificates, a Kamailio per module, UA configs pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import certs
from lab.kamailio import Kamailio
from softphone.sip.transaction import Timers
from softphone.sip.ua import UAConfig
from tests.conftest import require_tool

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "carol": "carol-pw-3"}
FAST = Timers(t1=0.1, t2=0.4, t4=0.5)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, certs.CertFiles]:
    base = tmp_path_factory.mktemp("pki")
    ca = certs.make_ca(base)
    return {"ca": ca, "kamailio": certs.issue(ca, base, "kamailio"), "ua": certs.issue(ca, base, "ua")}


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, certs.CertFiles]) -> Iterator[Kamailio]:
    require_tool("kamailio")
    kam = Kamailio(tmp_path_factory.mktemp("kamailio"), USERS, tls=pki["kamailio"], algorithm="SHA-256")
    with kam:
        yield kam


def ua_config(user: str, kam: Kamailio | None = None, **kw: object) -> UAConfig:
    """A UA config for ``user``@lab.test using ``kam`` as registrar and outbound proxy."""
    base: dict[str, object] = {"aor": f"sip:{user}@lab.test", "timers": FAST}
    if kam is not None:
        base.update(username=user, password=USERS[user], proxy=kam.uri)
    base.update(kw)
    return UAConfig(**base)  # type: ignore[arg-type]


def sdp_offer(port: int = 40000, direction: str = "sendrecv") -> bytes:
    """A small audio offer with a session-level key-mgmt attribute (~2 kB, like a MIKEY offer)."""
    from softphone.sip.sdp import Attributes, Media, SessionDescription, connection_line
    sdp = SessionDescription(session_id=1, session_version=1, connection=connection_line("127.0.0.1"))
    sdp.attributes.add("key-mgmt", "mikey " + "A" * 1800)
    sdp.media.append(Media("audio", port, "RTP/AVP", ["0", "101"], attributes=Attributes(
        [("rtpmap", "0 PCMU/8000"), ("rtpmap", "101 telephone-event/8000"), (direction, None)])))
    return sdp.encode()


def tool_dir(name: str) -> Path:
    return Path(__file__).parent / name
