"""MIKEY PRF / SRTP master keys, GUK-ID and DPCK against mikey_kdf_guk.txt and the v5 expectations."""

from __future__ import annotations

import re

import pytest

from crypto.kdf import (
    ENCR_CONST,
    SALT_CONST,
    TEK_CONST,
    KdfError,
    dpck,
    gmk_id_from_guk_id,
    guk_id,
    mikey_label,
    mikey_prf,
    srtp_master,
)


@pytest.fixture(scope="module")
def kdf_text(vectors_dir) -> str:
    return (vectors_dir / "mikey_kdf_guk.txt").read_text()


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def test_key_deriv_vectors(kdf_text: str) -> None:
    ssv, rand = (_h(x) for x in re.search(r"ssv=(\w+) rand=(\w+)", kdf_text).groups())
    rows = re.findall(r"^(encr|tek)_and_salt\s+cs_id=(\w+) csb_id=(\w+) -> \S+\s+= (\w+) (\w+)$", kdf_text, re.M)
    assert len(rows) == 3
    for kind, cs, csb, first, salt in rows:
        const = ENCR_CONST if kind == "encr" else TEK_CONST
        cs_id, csb_id = int(cs, 16), int(csb, 16)
        assert mikey_prf(ssv, mikey_label(const, cs_id, csb_id, rand), 16).hex() == first
        assert mikey_prf(ssv, mikey_label(SALT_CONST, cs_id, csb_id, rand), 12).hex() == salt


def test_etherstack_guk_and_srtp_vectors(kdf_text: str) -> None:
    gmk = _h(re.search(r"GMK=(\w+) GMK-ID=", kdf_text).group(1))
    gmk_id = int(re.search(r"GMK=\w+ GMK-ID=(\w+)", kdf_text).group(1), 16)
    rand = _h(re.search(r"GMK-ID=\w+ .*?RAND=(\w+)", kdf_text).group(1))
    rows = re.findall(r"^S0\d uri=(\S+)\s+GUK-ID=(\w+) master_key=(\w+) master_salt=(\w+)", kdf_text, re.M)
    assert len(rows) == 3
    for uri, guk_hex, key, salt in rows:
        guk = guk_id(gmk, gmk_id, uri)
        assert f"{guk:08x}" == guk_hex
        assert gmk_id_from_guk_id(gmk, guk, uri) == gmk_id
        m = srtp_master(gmk, 4, guk, rand)
        assert (m.master_key.hex(), m.master_salt.hex()) == (key, salt)


def test_spk_and_guk_only_vectors(kdf_text: str) -> None:
    cs, csb, key, rand, mk, ms = re.search(
        r"SPK cs_id=(\d+) csb_id\(key-id\)=(\w+) key=(\w+) rand=(\w+) -> master_key=(\w+) master_salt=(\w+)", kdf_text
    ).groups()
    m = srtp_master(_h(key), int(cs), int(csb, 16), _h(rand))
    assert (m.master_key.hex(), m.master_salt.hex()) == (mk, ms)
    uri, gmk, gmk_id, guk = re.search(r"guk_only uri=(\S+) GMK=(\w+) GMK-ID=(\w+) -> GUK-ID=(\w+)", kdf_text).groups()
    assert f"{guk_id(_h(gmk), int(gmk_id, 16), uri):08x}" == guk
    # StreamwideTestVectors.md Test 1
    assert guk_id(_h("07d1a1677ac36d8e81620484689b3c2d"), 0x0DF9BC39, "sip:alice@streamwide.com") == 0x06A12AEA


def test_dpck_vectors(kdf_text: str, derived_vectors: dict) -> None:
    assert dpck(bytes(range(16)), 0xDEADBAAD).hex() == "d853d0bd6916ffc9837e2a2012a39491"
    t3 = derived_vectors["streamwide_v5_test3_pck"]
    assert dpck(_h(t3["SSV_PCK"]), 0x16992638).hex() == t3["DPCK_kdf_0x53_PCKID_PCK"]


def test_streamwide_test3_srtp(derived_vectors: dict) -> None:
    t3 = derived_vectors["streamwide_v5_test3_pck"]
    for cs, expect in t3["srtp"].items():
        m = srtp_master(_h(t3["SSV_PCK"]), int(cs), 0x16992638, _h("02a28bddaf984c5e0563bc1ce857df83"),
                        b"\x16\x99\x26\x38")
        assert m.master_key.hex() == expect["master_key"]
        assert m.master_salt.hex() == expect["master_salt"]
        assert "redacted" in repr(m) and m.master_key.hex() not in repr(m)


def test_prf_long_key_splits_in_chunks() -> None:
    # A 40-octet in-key is two chunks whose P outputs are XORed (RFC 3830 §4.1.2).
    key = bytes(range(40))
    label = mikey_label(TEK_CONST, 0, 1, b"r" * 16)
    import hashlib
    import hmac

    def p(s: bytes) -> bytes:
        a1 = hmac.new(s, label, hashlib.sha256).digest()
        return hmac.new(s, a1 + label, hashlib.sha256).digest()

    expect = bytes(x ^ y for x, y in zip(p(key[:32]), p(key[32:]), strict=True))
    assert mikey_prf(key, label, 32) == expect


@pytest.mark.parametrize(
    "call",
    [
        lambda: mikey_prf(b"", b"l", 16),
        lambda: mikey_prf(b"k", b"l", 0),
        lambda: mikey_label(TEK_CONST, 256, 0, b""),
        lambda: mikey_label(TEK_CONST, 0, 1 << 32, b""),
        lambda: guk_id(b"k", 1 << 32, "sip:a"),
        lambda: dpck(b"k", -1),
    ],
)
def test_bad_inputs(call) -> None:
    with pytest.raises(KdfError):
        call()
