"""Crypto core speed: ``scripts/bench crypto [--json] [--repeat N]`` prints median ms per operation.

Keys (all medians, milliseconds):

* ``eccsi_sign`` / ``eccsi_verify`` — RFC 6507 sign and verify of a 100-octet message (verify with
  the signer's ``[HS]PVT + KPAK`` cached, as for a peer seen before); ``eccsi_verify_new_signer``
  — verify for a signer not seen before.
* ``sakke_encapsulate_first`` — encapsulation to an identity never used before (the KMS key Z is
  known); ``sakke_encapsulate_cached`` — the same identity again; ``sakke_kms_key_first`` — first
  use of a new KMS key Z (builds its fixed-base table, once per KMS).
* ``sakke_decapsulate`` — with a validated :class:`SakkeReceiver`, plain pairing;
  ``sakke_decapsulate_table`` — with the per-RSK Miller-loop table; ``sakke_receiver_table_build``.
* ``pairing`` — one ⟨K, R⟩; ``pairing_table`` — the same from K's line table; ``sakke_rsk_validate`` — the
  RFC 6508 §6.1.2 RSK check.
* ``kms_rsk_issue`` / ``kms_ssk_issue`` — KMS-side user key issue (SAKKE RSK; ECCSI SSK + PVT).
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import time

from benchmarks._util import emit, median_ms
from crypto import eccsi, sakke
from crypto.pairing import SAKKE_CURVE, MillerTable, pairing


def _once_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def run(repeat: int) -> dict[str, float]:
    """All measurements, keyed as documented in the module docstring."""
    out: dict[str, float] = {}
    master_e = eccsi.EccsiMasterKey.generate()
    ident = secrets.token_bytes(32)
    ssk, pvt = master_e.issue(ident)
    signer = eccsi.EccsiSigner(ident, ssk, pvt, master_e.kpak)
    msg = secrets.token_bytes(100)
    sig = signer.sign(msg)
    out["eccsi_sign"] = median_ms(lambda: signer.sign(msg), repeat * 4)
    out["eccsi_verify"] = median_ms(lambda: eccsi.verify(msg, sig, ident, master_e.kpak), repeat * 4)
    signers = []
    for _ in range(repeat):
        i = secrets.token_bytes(32)
        k, v = master_e.issue(i)
        s = eccsi.EccsiSigner(i, k, v, master_e.kpak)
        signers.append((i, s.sign(msg)))
    fresh = iter(signers)
    out["eccsi_verify_new_signer"] = median_ms(
        lambda: _verify_next(fresh, msg, master_e.kpak), repeat - 2
    )
    out["kms_ssk_issue"] = median_ms(lambda: master_e.issue(secrets.token_bytes(32)), repeat * 2)

    master_s = sakke.SakkeMasterKey.generate()
    out["sakke_kms_key_first"] = _once_ms(lambda: sakke.encapsulate(bytes(16), b"warm-up", master_s.Z))
    out["kms_rsk_issue"] = median_ms(lambda: master_s.issue_rsk(secrets.token_bytes(32)), repeat)
    ssv = secrets.token_bytes(16)
    new_ids = (secrets.token_bytes(32) for _ in itertools.count())
    out["sakke_encapsulate_first"] = median_ms(lambda: sakke.encapsulate(ssv, next(new_ids), master_s.Z), repeat)
    bob = secrets.token_bytes(32)
    rsk = master_s.issue_rsk(bob)
    out["sakke_encapsulate_cached"] = median_ms(lambda: sakke.encapsulate(ssv, bob, master_s.Z), repeat)
    out["sakke_rsk_validate"] = median_ms(lambda: sakke.validate_rsk(bob, rsk, master_s.Z), max(3, repeat // 4))
    plain = sakke.SakkeReceiver(bob, rsk, master_s.Z)
    out["sakke_receiver_table_build"] = median_ms(
        lambda: sakke.SakkeReceiver(bob, rsk, master_s.Z, validate=False, precompute=True), max(3, repeat // 4)
    )
    table = sakke.SakkeReceiver(bob, rsk, master_s.Z, validate=False, precompute=True)
    sed = sakke.encapsulate(ssv, bob, master_s.Z)
    assert plain.decapsulate(sed) == ssv and table.decapsulate(sed) == ssv
    out["sakke_decapsulate"] = median_ms(lambda: plain.decapsulate(sed), repeat)
    out["sakke_decapsulate_table"] = median_ms(lambda: table.decapsulate(sed), repeat)
    R = SAKKE_CURVE.decode(sed[:257])
    K = SAKKE_CURVE.decode(rsk)
    out["pairing"] = median_ms(lambda: pairing(K, R), repeat)
    lines = MillerTable(K)
    out["pairing_table"] = median_ms(lambda: lines.pairing(R), repeat)
    return out


def _verify_next(fresh, msg: bytes, kpak: bytes) -> None:
    identifier, sig = next(fresh)
    eccsi.verify(msg, sig, identifier, kpak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench crypto", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object of medians")
    parser.add_argument("--repeat", type=int, default=40, help="timed runs per operation (default 40)")
    args = parser.parse_args(argv)
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    emit({k: round(v, 4) for k, v in run(args.repeat).items()}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
