"""Fuzz the MIKEY-SAKKE codec and verifier: ``scripts/fuzz mikey [--count N] [--seed S]``.

Three kinds of input, in turn:

* mutations of a valid signed I_MESSAGE (bit flips, octet overwrites, insertions, deletions,
  truncations, payload splices, duplicated payloads);
* random payload trees built from the payload classes (random HDR maps, IDRs, SP parameters,
  extensions, SAKKE data and signatures), serialised and, half of the time, mutated again;
* either of the above *re-signed by the legitimate sender*, so that the checks after the
  signature (identities, SAKKE decapsulation, key-ID tags, key parameters) see hostile input.

For every input: parsing either fails with :class:`MalformedMessage` or gives a message whose
re-serialisation is the input; the inspector's :func:`describe` never fails on a parsed message;
the verifier raises nothing but :class:`crypto.errors.CryptoError` subclasses; whatever it accepts
unsigned-by-us has exactly the signed octets of an original valid message (ECCSI's (r, q − s) twin
is the only other signature that can pass); and a re-signed message is accepted only with an
original SAKKE payload, yielding that payload's key. Exits 1 on the first violation, printing it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass

from crypto.eccsi import EccsiMasterKey, EccsiSigner
from crypto.errors import CryptoError
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey import payloads as pl
from crypto.mikey.build import Initiator
from crypto.mikey.errors import MalformedMessage
from crypto.mikey.inspect import describe
from crypto.mikey.keys import KeyType, KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.verify import Responder
from crypto.sakke import SakkeMasterKey

PERIOD = 2592000
NOW = ntp_seconds(1_790_000_000)
SENDER = "sip:alice@example.org"
RECEIVER = "sip:bob@example.org"


class FuzzFailure(AssertionError):
    """An invariant of the codec or verifier was broken by ``data``."""

    def __init__(self, what: str, data: bytes) -> None:
        super().__init__(f"{what}: {data.hex()}")
        self.data = data


@dataclass
class Target:
    """A KMS, a receiver and valid messages (one per key type) to mutate."""

    responder: Responder
    valid: list[bytes]
    signed: set[bytes]
    uids: tuple[bytes, bytes]
    signer: EccsiSigner
    keys: dict[bytes, bytes]  # SED -> the key it carries

    @classmethod
    def create(cls) -> Target:
        e, s = EccsiMasterKey.generate(), SakkeMasterKey.generate()
        kms = KmsParams("kms.example.org", PERIOD, 0, s.Z, e.kpak)
        n = key_period_no(NOW, PERIOD, 0)

        def user(uri: str) -> UserKeys:
            uid = kms.uid(uri, n)
            ssk, pvt = e.issue(uid)
            return UserKeys(uri, kms, n, ssk, pvt, s.issue_rsk(uid))

        alice, bob = user(SENDER), user(RECEIVER)
        ini = Initiator(alice)
        built = [ini.build(RECEIVER, key_type=kt, ntp_time=NOW) for kt in (KeyType.PCK, KeyType.GMK, KeyType.CSK)]
        valid = [b.data for b in built]
        signed = {b.imessage.signed_octets() for b in built}
        keys = {b.imessage.sakke.sed: b.key for b in built}
        signer = EccsiSigner(alice.uid, alice.ssk, alice.pvt, kms.kpak)
        responder = Responder(bob, precompute=True, check_replay=False)
        return cls(responder, valid, signed, (alice.uid, bob.uid), signer, keys)

    def resign(self, data: bytes) -> bytes | None:
        """``data`` with a fresh valid signature of the sender, if it parses with a 129-octet SIGN last."""
        try:
            msg = IMessage.parse(data)
            if len(msg.sign.signature) != 129:
                return None
            signed = msg.signed_octets()
        except MalformedMessage:
            return None
        return signed + self.signer.sign(signed)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three random structural or octet-level mutations of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice((0, 1, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 4:
            del buf[pos:]
        elif op == 5 and len(buf) > 20:
            a, b = sorted(rng.sample(range(len(buf)), 2))
            buf[pos:pos] = buf[a:b]
        elif op == 6 and len(buf) > 4:
            i = rng.randrange(len(buf) - 1)
            buf[i:i + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\x01\x11", b"\x20\x81"))
    return bytes(buf)


def _random_payload(rng: random.Random, uids: tuple[bytes, bytes]) -> pl.Payload:
    kind = rng.randrange(7)
    if kind == 0:
        ts_type = rng.choice((0, 0, 1, 2))
        return pl.Timestamp(rng.getrandbits(32 if ts_type == 2 else 64), ts_type)
    if kind == 1:
        return pl.Rand(rng.randbytes(rng.randint(1, 40)))
    if kind == 2:
        data = rng.choice((rng.choice(uids), rng.randbytes(rng.randint(0, 40)), b"sip:bob@example.org", b"kms\x00"))
        return pl.Idr(rng.choice((1, 2, 6, 7, 8, 9, rng.randrange(256))), data, rng.randrange(3))
    if kind == 3:
        params = tuple((rng.randrange(25), rng.randbytes(rng.randint(0, 3))) for _ in range(rng.randint(0, 12)))
        return pl.SecurityPolicy(rng.randrange(3), params, rng.choice((0, 0, 1)))
    if kind == 4:
        return pl.SakkePayload(rng.randbytes(rng.choice((0, 16, 273, 289, rng.randint(1, 300)))),
                               rng.choice((1, 1, 2)), rng.choice((2, 2, 1, 3)))
    if kind == 5:
        return pl.GeneralExtension(rng.choice((0, 6, 7, 7, rng.randrange(256))), rng.randbytes(rng.randint(0, 80)))
    return pl.Rand(rng.randbytes(16))


def random_message(rng: random.Random, uids: tuple[bytes, bytes]) -> bytes:
    """A random payload tree: random HDR and 0..14 payloads, usually ending in an ECCSI-sized SIGN."""
    map_type = rng.choice((0, 1, 2))
    entries: tuple = ()
    if map_type == 0:
        entries = tuple(pl.SrtpIdEntry(rng.randrange(256), rng.getrandbits(32), rng.getrandbits(32))
                        for _ in range(rng.randint(0, 3)))
    elif map_type == 2:
        entries = tuple(pl.GenericIdEntry(rng.randrange(10), rng.randrange(2), rng.random() < 0.3,
                                          tuple(rng.randrange(4) for _ in range(rng.randint(0, 3))),
                                          rng.randbytes(rng.choice((0, 4, 10))), rng.randbytes(rng.choice((0, 4, 8))))
                        for _ in range(rng.randint(0, 3)))
    header = pl.Header(rng.getrandbits(32), map_type, entries, rng.choice((26, 26, 27, 0)), 1,
                       rng.random() < 0.2, rng.choice((0, 1, 1)))
    body = [_random_payload(rng, uids) for _ in range(rng.randint(0, 14))]
    if rng.random() < 0.9:
        body.append(pl.Sign(rng.randbytes(rng.choice((129, 129, 0, 64))), rng.choice((2, 2, 0, 1))))
    return IMessage.from_payloads(header, body).raw


def check(target: Target, data: bytes, resigned: bool = False) -> str:
    """Run one input through codec, inspector and verifier; return the outcome's error class name."""
    try:
        msg = IMessage.parse(data)
    except MalformedMessage:
        return "MalformedMessage"
    except Exception as exc:  # noqa: BLE001 - the point of a fuzzer: anything else is a finding
        raise FuzzFailure(f"parse raised {type(exc).__name__}: {exc}", data) from exc
    if IMessage.from_payloads(msg.header, msg.payloads).raw != data:
        raise FuzzFailure("re-serialisation differs from the input", data)
    try:
        describe(msg, now_ntp=NOW)
    except Exception as exc:  # noqa: BLE001
        raise FuzzFailure(f"describe raised {type(exc).__name__}: {exc}", data) from exc
    try:
        result = target.responder.process(msg, claimed_sender=SENDER, now=None)
    except CryptoError as exc:
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001
        raise FuzzFailure(f"process raised {type(exc).__name__}: {exc}", data) from exc
    if resigned:
        if target.keys.get(msg.sakke.sed) != result.key:
            raise FuzzFailure("verifier accepted a key that was never encapsulated", data)
    elif msg.signed_octets() not in target.signed:
        raise FuzzFailure("verifier accepted a message that was never signed", data)
    return f"accepted:{result.key_type.name}"


def run(count: int, seed: int, target: Target | None = None) -> dict[str, int]:
    """``count`` fuzz inputs from ``seed``; returns outcome counts. Raises :class:`FuzzFailure`."""
    target = target or Target.create()
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for i in range(count):
        if i % 3 != 1:
            data = mutate(rng, rng.choice(target.valid))
        else:
            data = random_message(rng, target.uids)
            if rng.random() < 0.5:
                data = mutate(rng, data)
        resigned = target.resign(data) if i % 3 == 2 else None
        outcome = check(target, resigned or data, resigned is not None)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz mikey", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="number of inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time based, printed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    t0 = time.perf_counter()
    try:
        outcomes = run(args.count, seed)
    except FuzzFailure as exc:
        print(f"FAIL (seed {seed}): {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    print(f"mikey fuzz: {args.count} inputs, seed {seed}, {elapsed:.1f} s, no invariant broken")
    for name, n in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>8}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
