"""SDES a=crypto (RFC 4568): parse, build, offer/answer selection, refusals."""

import base64

import pytest

from softphone.calls import sdes

# RFC 4568 §6.1-style example line (AES_CM with lifetime and MKI).
RFC_LINE = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"


def test_parse_rfc_example():
    a = sdes.parse(RFC_LINE)
    assert a.tag == 1 and a.suite == "AES_CM_128_HMAC_SHA1_80"
    raw = base64.b64decode("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR")
    assert a.master_key == raw[:16] and a.master_salt == raw[16:] and len(a.master_salt) == 14
    assert a.lifetime == "2^20" and a.mki == b"\x00\x00\x00\x01"
    assert a.to_sdp_value() == RFC_LINE
    assert "PS1uQ" not in repr(a)  # keys never in repr


def test_gcm_round_trip_is_40_chars_with_padding():
    a = sdes.generate(3, "AEAD_AES_128_GCM")
    value = a.to_sdp_value()
    b64 = value.split("inline:")[1]
    assert len(b64) == 40 and b64.endswith("==")
    assert sdes.parse(value) == a


@pytest.mark.parametrize(
    "value, words",
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "tag"),
        ("1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "unsupported"),
        ("1 AES_CM_128_HMAC_SHA1_80 uri:http://x", "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "base64"),
        ("1 AEAD_AES_128_GCM inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "28 octets"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|bad", "malformed"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|300:1", "fit"),
    ],
)
def test_malformed_lines_are_refused(value, words):
    with pytest.raises(sdes.SdesError, match=words):
        sdes.parse(value)


def test_answer_picks_offerers_preference_among_acceptable():
    offer = sdes.make_offer(["AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80"])
    values = [a.to_sdp_value() for a in offer]
    offered, ours = sdes.answer(values, ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
    assert offered.suite == "AEAD_AES_128_GCM" and ours.tag == 1 and ours.suite == offered.suite
    assert ours.master_key != offered.master_key
    mine, theirs = sdes.select_answered(offer, ours.to_sdp_value())
    assert mine is offer[0] and theirs == ours
    # Only AES-CM acceptable → tag 2.
    offered, ours = sdes.answer(values, ["AES_CM_128_HMAC_SHA1_80"])
    assert ours.tag == 2


def test_answer_with_nothing_acceptable_says_why():
    with pytest.raises(sdes.SdesError, match="no acceptable SRTP crypto suite"):
        sdes.answer(["1 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"], ["AEAD_AES_128_GCM"])


def test_select_answered_refuses_changed_suite_or_unknown_tag():
    offer = sdes.make_offer(["AEAD_AES_128_GCM"])
    other = sdes.generate(1, "AES_CM_128_HMAC_SHA1_80")
    with pytest.raises(sdes.SdesError, match="changed the suite"):
        sdes.select_answered(offer, other.to_sdp_value())
    with pytest.raises(sdes.SdesError, match="not offered"):
        sdes.select_answered(offer, sdes.generate(9, "AEAD_AES_128_GCM").to_sdp_value())
