"""MIKEY-SAKKE I_MESSAGE speed: ``scripts/bench mikey [--json]``.

Medians over ``--repeat`` runs for a PCK I_MESSAGE between two users of a fresh KMS:
``create_ms`` (Initiator.build: SAKKE encapsulation + ECCSI signature + KDF, signer prepared once),
``process_ms`` (Responder.process: parse, identities, ECCSI verify, SAKKE decapsulation with a
precomputed RSK table, SRTP keys; replay cache on), ``parse_ms`` (codec only). Each created message is
checked to open to the same key.

Secure messages (:mod:`softphone.messaging.secure`, a 100-character text): ``message_create_ms``
(seal with a fresh PCK: I_MESSAGE + two protected payloads), ``message_create_reuse_ms`` (the
conversation's PCK reused: payloads only), ``message_open_ms`` (verify the I_MESSAGE and decrypt),
``message_open_reuse_ms`` (the I_MESSAGE already verified for this conversation: payloads only).
The fresh-PCK figures run a quarter of ``--repeat`` times (at least 10).
First open of a phone's first message: ``message_first_open_cold_ms`` (a new Opener, nothing built: the
SAKKE receiver and its precomputed tables are built inside the open) and
``message_first_open_prepared_ms`` (a new Opener after ``Opener.prepare()``, which the Messenger runs in
a worker thread at start); medians over a few fresh openers.
"""

from __future__ import annotations

import argparse
import time

from benchmarks._util import emit, median_ms
from crypto.eccsi import EccsiMasterKey
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KeyType, KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.verify import ReplayCache, Responder
from crypto.sakke import SakkeMasterKey
from softphone.messaging import secure

PERIOD = 2592000


def message_figures(alice: UserKeys, bob: UserKeys, now: int, repeat: int) -> dict[str, float | int]:
    text = "x" * 100
    unix = now - 2_208_988_800
    a_init = Initiator(alice)
    fresh = secure.Sealer(lambda _ntp: a_init, max_count=1)
    reuse = secure.Sealer(lambda _ntp: a_init)
    few = max(10, repeat // 4)
    create_ms = median_ms(lambda: fresh.seal_text(bob.uri, text, now=unix), few)
    create_reuse_ms = median_ms(lambda: reuse.seal_text(bob.uri, text, now=unix), repeat)
    new_ones = iter([fresh.seal_text(bob.uri, text, now=unix) for _ in range(few + 2)])
    same_list = [reuse.seal_text(bob.uri, text, now=unix) for _ in range(repeat + 2)]
    same_key = iter(same_list)
    opener = secure.Opener(bob.uri, lambda: [bob])

    def open_from(source: object) -> None:
        sealed = next(source)  # type: ignore[call-overload]
        if opener.open(sealed.content_type, sealed.body, alice.uri).text != text:
            raise SystemExit("benchmark self-check failed: message text differs")

    firsts = iter([fresh.seal_text(bob.uri, text, now=unix) for _ in range(12)])

    def first_open(prepared: bool) -> float:
        cold = secure.Opener(bob.uri, lambda: [bob])
        if prepared:
            cold.prepare()
        sealed = next(firsts)
        t0 = time.perf_counter()
        if cold.open(sealed.content_type, sealed.body, alice.uri).text != text:
            raise SystemExit("benchmark self-check failed: message text differs")
        return (time.perf_counter() - t0) * 1000.0

    first_cold = sorted(first_open(False) for _ in range(5))[2]
    first_prepared = sorted(first_open(True) for _ in range(5))[2]
    open_ms = median_ms(lambda: open_from(new_ones), few)
    open_reuse_ms = median_ms(lambda: open_from(same_key), repeat)
    return {"message_create_ms": create_ms, "message_create_reuse_ms": create_reuse_ms, "message_open_ms": open_ms,
            "message_open_reuse_ms": open_reuse_ms, "message_octets": len(same_list[0].body),
            "message_first_open_cold_ms": first_cold, "message_first_open_prepared_ms": first_prepared}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench mikey")
    parser.add_argument("--json", action="store_true", help="print one JSON object of medians")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per figure (default 200)")
    args = parser.parse_args(argv)

    e, s = EccsiMasterKey.generate(), SakkeMasterKey.generate()
    kms = KmsParams("kms.example.org", PERIOD, 0, s.Z, e.kpak)
    now = ntp_seconds()
    n = key_period_no(now, PERIOD, 0)

    def user(uri: str) -> UserKeys:
        uid = kms.uid(uri, n)
        ssk, pvt = e.issue(uid)
        return UserKeys(uri, kms, n, ssk, pvt, s.issue_rsk(uid))

    alice, bob = user("sip:alice@example.org"), user("sip:bob@example.org")
    initiator = Initiator(alice)
    responder = Responder(bob, replay_cache=ReplayCache(), precompute=True)

    create_ms = median_ms(lambda: initiator.build(bob.uri, key_type=KeyType.PCK, ntp_time=now), args.repeat)
    messages = [initiator.build(bob.uri, key_type=KeyType.PCK, ntp_time=now) for _ in range(args.repeat + 2)]
    pending = iter(messages)

    def process_one() -> None:
        built = next(pending)
        if responder.process(built.data, claimed_sender=alice.uri, now=now).key != built.key:
            raise SystemExit("benchmark self-check failed: decrypted key differs")

    process_ms = median_ms(process_one, args.repeat)
    raw = messages[0].data
    parse_ms = median_ms(lambda: IMessage.parse(raw), args.repeat)
    figures = {"create_ms": create_ms, "process_ms": process_ms, "parse_ms": parse_ms, "imessage_octets": len(raw)}
    figures.update(message_figures(alice, bob, now, args.repeat))
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
