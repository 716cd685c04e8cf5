"""Digest responses pinned by the RFC 2617 §3.5 (MD5) and RFC 7616 §3.9.1 (SHA-256) examples."""

from __future__ import annotations

import pytest

from softphone.sip.auth import Challenge, DigestCredentials, parse_auth_params
from softphone.sip.errors import ParseError


def _response(auth: str) -> str:
    return parse_auth_params(auth.partition(" ")[2])["response"]


def test_md5_qop_auth_matches_rfc2617_example() -> None:
    ch = Challenge.parse('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                         'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    creds = DigestCredentials("Mufasa", "Circle Of Life")
    auth = creds.authorization(ch, "GET", "/dir/index.html", cnonce="0a4f113b")
    assert _response(auth) == "6629fae49393a05397450978507c4ef1"
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in auth and "nc=00000001" in auth
    assert "nc=00000002" in creds.authorization(ch, "GET", "/dir/index.html")  # nonce count increments


def test_sha256_matches_rfc7616_example() -> None:
    ch = Challenge.parse('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
                         'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                         'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
    auth = DigestCredentials("Mufasa", "Circle of Life").authorization(
        ch, "GET", "/dir/index.html", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert _response(auth) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert "algorithm=SHA-256" in auth


def test_password_never_in_repr_and_bad_challenges_rejected() -> None:
    creds = DigestCredentials("alice", "s3cret-pw")
    assert "s3cret-pw" not in repr(creds)
    for bad in ('Basic realm="x"', 'Digest nonce="n"', 'Digest realm="x, nonce="n'):
        with pytest.raises(ParseError):
            Challenge.parse(bad)
    ch = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512-256')
    assert not ch.supported
    with pytest.raises(ParseError):
        creds.authorization(ch, "REGISTER", "sip:x")
