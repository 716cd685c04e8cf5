"""Sealing and opening secure messages: round trips, PCK reuse, and every refusal with its reason."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from crypto import mcdata
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.keys import UserKeys
from softphone.messaging import secure, wire
from tests.crypto.test_mikey_roundtrip import PERIOD, World

NOW_UNIX = 1_790_000_000
ALICE, BOB, CAROL = "sip:alice@example.org", "sip:bob@example.org", "sip:carol@example.org"


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def _period(unix: float) -> int:
    return key_period_no(ntp_seconds(unix), PERIOD, 0)


class Keys:
    def __init__(self, world: World) -> None:
        self.world = world
        self.cache: dict[tuple[str, int], UserKeys] = {}

    def get(self, uri: str, n: int) -> UserKeys:
        if (uri, n) not in self.cache:
            self.cache[(uri, n)] = self.world.user(uri, n)
        return self.cache[(uri, n)]

    def sealer(self, uri: str, **kw: object) -> secure.Sealer:
        return secure.Sealer(lambda ntp: Initiator(self.get(uri, key_period_no(ntp, PERIOD, 0))), **kw)  # type: ignore[arg-type]

    def opener(self, uri: str, periods: list[int] | None = None, **kw: object) -> secure.Opener:
        held = periods if periods is not None else [_period(NOW_UNIX)]
        return secure.Opener(uri, lambda: [self.get(uri, n) for n in held], **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def keys(world: World) -> Keys:
    return Keys(world)


def test_text_round_trip_and_pck_reuse(keys: Keys) -> None:
    sealer, opener = keys.sealer(ALICE), keys.opener(BOB)
    first = sealer.seal_text(BOB, "hello bob", now=NOW_UNIX)
    second = sealer.seal_text(BOB, "second", now=NOW_UNIX + 5, conversation_id=first.conversation_id)
    assert first.key_id == second.key_id and first.payload_id != second.payload_id
    a = opener.open(first.content_type, first.body, ALICE)
    b = opener.open(second.content_type, second.body, ALICE)
    assert (a.text, b.text, a.sender, a.kind) == ("hello bob", "second", ALICE, "message")
    assert a.conversation_id == b.conversation_id == first.conversation_id and a.message_id == first.message_id
    assert a.date_time == NOW_UNIX and a.disposition_request == 3
    assert b"hello bob" not in first.body  # the store sees only ciphertext


def test_binary_attachment_and_limit(keys: Keys) -> None:
    blob = bytes(range(256)) * 64  # exactly MAX_ATTACHMENT
    sealed = keys.sealer(ALICE).seal(BOB, [mcdata.DataItem(mcdata.ContentType.BINARY, blob)], now=NOW_UNIX)
    opened = keys.opener(BOB).open(sealed.content_type, sealed.body, ALICE)
    assert opened.items[0].data == blob and opened.items[0].content_type == mcdata.ContentType.BINARY
    with pytest.raises(secure.SealError, match="at most"):
        keys.sealer(ALICE).seal(BOB, [mcdata.DataItem(2, blob + b"x")], now=NOW_UNIX)


def test_pck_bounded_by_count_age_and_period(keys: Keys) -> None:
    sealer = keys.sealer(ALICE, max_count=2, max_age=60)
    ids = [sealer.seal_text(BOB, "x", now=NOW_UNIX).key_id for _ in range(3)]
    assert ids[0] == ids[1] != ids[2]
    aged = sealer.seal_text(BOB, "x", now=NOW_UNIX + 61).key_id
    assert aged != ids[2]
    next_period = (_period(NOW_UNIX) + 1) * PERIOD - 2_208_988_800 + 10
    assert sealer.seal_text(BOB, "x", now=next_period).key_id != aged  # same count and age, new key period


def test_notification_round_trip(keys: Keys) -> None:
    msg = keys.sealer(ALICE).seal_text(BOB, "hi", now=NOW_UNIX)
    note = keys.sealer(BOB).seal_notification(ALICE, msg.conversation_id, msg.message_id, mcdata.Disposition.READ,
                                              now=NOW_UNIX + 1)
    opened = keys.opener(ALICE).open(note.content_type, note.body, BOB)
    assert opened.kind == "notification" and opened.disposition is mcdata.Disposition.READ
    assert opened.message_id == msg.message_id and opened.sender == BOB
    assert b"\x05" not in wire.decode(note.content_type, note.body).signalling[:1]  # protected type 0x45, not 5


def test_replay_refused(keys: Keys) -> None:
    sealed, opener = keys.sealer(ALICE).seal_text(BOB, "once", now=NOW_UNIX), keys.opener(BOB)
    opener.open(sealed.content_type, sealed.body, ALICE)
    with pytest.raises(secure.MessageRefused) as exc:
        opener.open(sealed.content_type, sealed.body, ALICE)
    assert exc.value.reason == secure.REPLAY


def _tamper(body: bytes, part: str) -> bytes:
    env = wire.decode(wire.CONTENT_TYPE, body)
    raw = bytearray(getattr(env, part))
    raw[len(raw) // 2] ^= 0x10
    return wire.encode(dataclasses.replace(env, **{part: bytes(raw)}))


@pytest.mark.parametrize("part, reasons", [("payload", {secure.TAMPERED}), ("signalling", {secure.TAMPERED}),
                                           ("imessage", {secure.FORGED, secure.TAMPERED, secure.MALFORMED})])
def test_tampering_refused(keys: Keys, part: str, reasons: set[str]) -> None:
    sealed = keys.sealer(ALICE).seal_text(BOB, "do not change", now=NOW_UNIX)
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB).open(sealed.content_type, _tamper(sealed.body, part), ALICE)
    assert exc.value.reason in reasons


def test_spliced_parts_refused(keys: Keys) -> None:
    sealer = keys.sealer(ALICE)
    one, two = sealer.seal_text(BOB, "one", now=NOW_UNIX), sealer.seal_text(BOB, "two", now=NOW_UNIX)
    e1, e2 = wire.decode(one.content_type, one.body), wire.decode(two.content_type, two.body)
    spliced = wire.encode(wire.Envelope(e1.imessage, e1.signalling, e2.payload))
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB).open(wire.CONTENT_TYPE, spliced, ALICE)
    assert exc.value.reason == secure.TAMPERED


def test_wrong_recipient_forged_sender_revoked_unknown_kms(keys: Keys, world: World) -> None:
    sealed = keys.sealer(ALICE).seal_text(BOB, "for bob", now=NOW_UNIX)
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(CAROL).open(sealed.content_type, sealed.body, ALICE)
    assert exc.value.reason == secure.WRONG_RECIPIENT and "unknown identity" in exc.value.detail
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB).open(sealed.content_type, sealed.body, CAROL)  # From claims carol
    assert exc.value.reason == secure.FORGED
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB, revoked=frozenset({ALICE})).open(sealed.content_type, sealed.body, ALICE)
    assert exc.value.reason == secure.REVOKED
    other = World("kms.elsewhere.org")
    mallory = Initiator(other.user("sip:mallory@elsewhere.org", _period(NOW_UNIX)))
    rogue = secure.Sealer(lambda ntp: mallory, kms_for=lambda uri: world.kms).seal_text(BOB, "hi", now=NOW_UNIX)
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB).open(rogue.content_type, rogue.body, "sip:mallory@elsewhere.org")
    assert exc.value.reason == secure.UNKNOWN_KMS


def test_trusted_foreign_kms_accepted(keys: Keys, world: World) -> None:
    other = World("kms.partner.org")
    dave = Initiator(other.user("sip:dave@partner.org", _period(NOW_UNIX)))
    sealed = secure.Sealer(lambda ntp: dave, kms_for=lambda uri: world.kms).seal_text(BOB, "cross", now=NOW_UNIX)
    opened = keys.opener(BOB, trusted_kms=[other.kms]).open(sealed.content_type, sealed.body, "sip:dave@partner.org")
    assert opened.text == "cross" and opened.sender == "sip:dave@partner.org"


def test_old_period_fetched_by_time(keys: Keys) -> None:
    sealed = keys.sealer(ALICE).seal_text(BOB, "from last period", now=NOW_UNIX)
    later = _period(NOW_UNIX) + 2
    held = [later]
    asked: list[int] = []

    def fetch(ntp: int) -> bool:
        asked.append(ntp)
        held.append(key_period_no(ntp, PERIOD, 0))
        return True

    opener = secure.Opener(BOB, lambda: [keys.get(BOB, n) for n in held], fetch_period=fetch)
    assert opener.open(sealed.content_type, sealed.body, ALICE).text == "from last period"
    assert asked == [ntp_seconds(NOW_UNIX)]
    no_fetch = keys.opener(BOB, periods=[later])
    with pytest.raises(secure.MessageRefused) as exc:
        no_fetch.open(sealed.content_type, sealed.body, ALICE)
    assert exc.value.reason == secure.NO_KEYS


def test_boundary_taken_from_body_when_header_lost(keys: Keys) -> None:
    sealed = keys.sealer(ALICE).seal_text(BOB, "via msilo", now=NOW_UNIX)
    assert keys.opener(BOB).open("multipart/mixed", sealed.body, ALICE).text == "via msilo"
    with pytest.raises(secure.MessageRefused) as exc:
        keys.opener(BOB).open("text/plain", base64.b64encode(sealed.body), ALICE)
    assert exc.value.reason == secure.MALFORMED
