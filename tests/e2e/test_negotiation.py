"""Offer/answer with MIKEY-SAKKE and SDES (softphone.calls.negotiation), sans-IO, with fresh KMS keys."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from crypto.eccsi import EccsiMasterKey
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KmsParams, UserKeys
from crypto.mikey.verify import Responder
from crypto.sakke import SakkeMasterKey
from softphone.calls.negotiation import Answerer, NegotiationError, Offerer
from softphone.calls.profile import load_profile

ALICE, BOB, CAROL = "sip:alice@example.org", "sip:bob@example.org", "sip:carol@example.org"


@pytest.fixture(scope="module")
def keys() -> dict[str, UserKeys]:
    e, s = EccsiMasterKey.generate(), SakkeMasterKey.generate()
    kms = KmsParams("kms.example.org", 2592000, 0, s.Z, e.kpak)
    n = key_period_no(ntp_seconds(), 2592000, 0)
    out = {}
    for uri in (ALICE, BOB, CAROL):
        uid = kms.uid(uri, n)
        ssk, pvt = e.issue(uid)
        out[uri] = UserKeys(uri, kms, n, ssk, pvt, s.issue_rsk(uid))
    return out


def _pair(keys: dict[str, UserKeys]) -> tuple[Offerer, Answerer]:
    profile = load_profile("securechorus")
    return (Offerer(profile, "127.0.0.1", 40000, BOB, Initiator(keys[ALICE])),
            Answerer(profile, "127.0.0.1", 40002, Responder(keys[BOB])))


def test_mikey_pck_keys_mirror_and_hold_keeps_them_rekey_changes_them(keys) -> None:
    offerer, answerer = _pair(keys)
    offer = offerer.offer()
    assert b"m=audio 40000 RTP/SAVP 111 0 8 101" in offer and b"a=key-mgmt:mikey " in offer
    theirs = answerer.process_offer(offer, ALICE)
    ours = offerer.apply_answer(answerer.answer())
    assert b"key-mgmt" not in answerer.answer()                      # no MIKEY response in the answer
    assert theirs.peer_identity == ALICE and ours.key_id == theirs.key_id
    assert theirs.peer_assurance == "verified-by-eccsi"               # the caller's ECCSI signature verified
    assert ours.peer_assurance == "keyed-to"                          # the callee signed nothing: only keyed to it
    assert (ours.srtp.send_key, ours.srtp.send_salt) == (theirs.srtp.recv_key, theirs.srtp.recv_salt)
    assert (ours.srtp.recv_key, ours.srtp.recv_salt) == (theirs.srtp.send_key, theirs.srtp.send_salt)
    assert ours.srtp.send_key != ours.srtp.recv_key                    # CS ID 0 vs CS ID 1
    assert ours.srtp.send_mki == bytes.fromhex(ours.key_id) and ours.suite == "AEAD_AES_128_GCM"
    assert ours.codec.name == "opus" and ours.dtmf_payload_type == 101 and ours.remote_addr == ("127.0.0.1", 40002)
    for secret in (ours.srtp.send_key, ours.srtp.recv_key, ours.srtp.send_salt):
        assert secret.hex() not in repr(ours) + repr(offerer) + repr(answerer)

    held = answerer.process_offer(offerer.offer("sendonly"), ALICE)  # same I_MESSAGE: not a replay, same keys
    assert held.direction == "recvonly" and held.srtp == theirs.srtp
    rekeyed = answerer.process_offer(offerer.offer("sendrecv", rekey=True), ALICE)
    assert rekeyed.key_id != theirs.key_id and rekeyed.srtp != theirs.srtp
    assert offerer.apply_answer(answerer.answer()).srtp.send_key == rekeyed.srtp.recv_key


def test_mikey_refusals_name_the_reason(keys) -> None:
    offerer, answerer = _pair(keys)
    offer = offerer.offer()
    with pytest.raises(NegotiationError, match="unknown identity") as err:
        answerer.process_offer(offer, CAROL)                          # From is not the signer
    assert err.value.status == 488
    text = offer.decode()
    imessage = base64.b64decode(text.split("a=key-mgmt:mikey ")[1].split("\r\n")[0])
    forged = bytearray(imessage)
    forged[-10] ^= 0x80
    with pytest.raises(NegotiationError, match="bad signature"):
        answerer.process_offer(text.replace(base64.b64encode(imessage).decode(),
                                            base64.b64encode(bytes(forged)).decode()).encode(), ALICE)
    answerer.process_offer(offer, ALICE)
    fresh = Answerer(load_profile("securechorus"), "127.0.0.1", 40004, answerer.responder)
    with pytest.raises(NegotiationError, match="replay"):
        fresh.process_offer(offer, ALICE)
    with pytest.raises(NegotiationError, match="mandatory"):
        answerer.process_offer(text.replace(text.split("a=key-mgmt:")[1].split("\r\n")[0], "x")
                               .replace("a=key-mgmt:x\r\n", "").encode(), ALICE)
    with pytest.raises(NegotiationError, match="SRTP is mandatory"):
        answerer.process_offer(offer.replace(b"RTP/SAVP", b"RTP/AVP"), ALICE)
    with pytest.raises(NegotiationError, match="no common audio codec"):
        answerer.process_offer(offer.replace(b"RTP/SAVP 111 0 8 101", b"RTP/SAVP 9 101"), ALICE)
    with pytest.raises(NegotiationError, match="malformed SDP"):
        answerer.process_offer(b"garbage", ALICE)


def test_sdes_answer_picks_the_first_suite_both_accept_and_keys_mirror() -> None:
    profile = load_profile("interop-sdes")
    offerer = Offerer(profile, "127.0.0.1", 40000, BOB)
    offer = offerer.offer()
    assert offer.count(b"a=crypto:") == 2 and b"a=crypto:1 AEAD_AES_128_GCM" in offer
    only_cm = replace(profile, srtp_suites=("AES_CM_128_HMAC_SHA1_80",))
    answerer = Answerer(only_cm, "127.0.0.1", 40002)
    theirs = answerer.process_offer(offer, ALICE)
    ours = offerer.apply_answer(answerer.answer())
    assert ours.suite == theirs.suite == "AES_CM_128_HMAC_SHA1_80" and ours.security_label.endswith("not Secure Chorus")
    assert ours.srtp.send_key == theirs.srtp.recv_key and ours.srtp.recv_key == theirs.srtp.send_key
    assert answerer.process_offer(offerer.offer("sendonly"), ALICE).srtp == theirs.srtp   # hold keeps SDES keys
    with pytest.raises(NegotiationError, match="SDES"):
        Answerer(profile, "127.0.0.1", 40002).process_offer(offer.replace(b"a=crypto", b"a=x-crypto"), ALICE)


def test_mikey_offer_carries_ice_beside_key_mgmt_and_answer_only_with_ice_offered(keys) -> None:
    from softphone.calls.negotiation import LocalIce
    from softphone.sip.ice import Candidate, IceDescription
    host = Candidate("1", 1, "udp", 2130706431, "10.1.0.2", 40000, "host")
    srflx = Candidate("2", 1, "udp", 1694498815, "203.0.113.11", 40000, "srflx", "10.1.0.2", 40000)
    alice_ice = LocalIce(IceDescription("aaaa", "a" * 22, (host, srflx), end_of_candidates=True, rtcp_mux=True),
                         ("203.0.113.11", 40000))
    bob_ice = LocalIce(IceDescription("bbbb", "b" * 22, (replace(host, host="10.2.0.2"),), rtcp_mux=True),
                       ("10.2.0.2", 40000))
    offerer, answerer = _pair(keys)
    offerer.ice, answerer.ice = alice_ice, bob_ice
    offer = offerer.offer()
    assert b"a=key-mgmt:mikey " in offer and b"a=ice-ufrag:aaaa" in offer
    assert b"c=IN IP4 203.0.113.11" in offer and b"m=audio 40000 RTP/SAVP" in offer  # the default: srflx
    assert offer.count(b"a=rtcp-mux") == 1 and b"a=end-of-candidates" in offer
    theirs = answerer.process_offer(offer, ALICE)
    assert theirs.ice == alice_ice.description and theirs.peer_identity == ALICE  # keys verified as without ICE
    ours = offerer.apply_answer(answerer.answer())
    assert ours.ice == bob_ice.description and ours.key_id == theirs.key_id

    plain, answerer2 = _pair(keys)  # a caller without ICE gets an answer without ICE, even from an ICE phone
    answerer2.ice = bob_ice
    assert answerer2.process_offer(plain.offer(), ALICE).ice is None
    answer = answerer2.answer()
    assert b"ice-ufrag" not in answer and b"candidate" not in answer and b"c=IN IP4 127.0.0.1" in answer

    bad = offer.replace(b"typ srflx", b"typ bogus")
    with pytest.raises(NegotiationError, match="bad ICE attributes"):
        _pair(keys)[1].process_offer(bad, ALICE)


def test_an_ice_answer_to_an_offer_without_rtcp_mux_names_its_rtcp_component(keys) -> None:
    """Answering ``a=rtcp-mux`` to an ICE offer that lacked it (baresip 1.0 sends one), with no RTCP
    candidate, made baresip give up ICE ("audio.2: no remote candidates found", then "ICE not supported by
    peer") and send nothing. The answer now carries both components and ``a=rtcp`` (RFC 3605), no rtcp-mux."""
    from softphone.calls.negotiation import LocalIce
    from softphone.sip.ice import Candidate, IceDescription
    host = Candidate("1", 1, "udp", 2130706431, "10.1.0.2", 40000, "host")
    alice_ice = LocalIce(IceDescription("aaaa", "a" * 22, (host, replace(host, component=2, port=40001))),
                         ("10.1.0.2", 40000))
    bob_host = replace(host, host="10.2.0.2", port=41000)
    bob_ice = LocalIce(IceDescription("bbbb", "b" * 22, (bob_host, replace(bob_host, component=2, port=41234))),
                       ("10.2.0.2", 41000), rtcp=("10.2.0.2", 41234))
    offerer, answerer = _pair(keys)
    offerer.ice, answerer.ice = alice_ice, bob_ice
    offer = offerer.offer()
    assert b"a=ice-ufrag:aaaa" in offer and b"a=rtcp-mux" not in offer
    theirs = answerer.process_offer(offer, ALICE)
    assert theirs.ice is not None and not theirs.ice.rtcp_mux
    answer = answerer.answer()
    assert b"a=rtcp-mux" not in answer and b"a=rtcp:41234 IN IP4 10.2.0.2\r\n" in answer
    assert b" 2 udp 2130706431 10.2.0.2 41234 typ host" in answer and b"m=audio 41000 " in answer


@pytest.mark.parametrize(("fmtp", "cap"), [
    ("useinbandfec=1; maxaveragebitrate=20000", 20000),
    ("maxaveragebitrate=510000;useinbandfec=1", 510000),
    ("useinbandfec=1", None),
    ("maxaveragebitrate=5999", None),        # below RFC 7587's range: ignored like an unknown parameter
    ("maxaveragebitrate=２0000", None),      # not ASCII digits
    ("maxaveragebitrate=99999999999", None),
])
def test_the_answerer_reads_the_offerers_opus_maxaveragebitrate(keys, fmtp: str, cap: int | None) -> None:
    offerer, answerer = _pair(keys)
    offer = offerer.offer().replace(b"a=fmtp:111 useinbandfec=1", f"a=fmtp:111 {fmtp}".encode())
    theirs = answerer.process_offer(offer, ALICE)
    assert theirs.codec.name == "opus" and theirs.codec.max_bitrate == cap
    ours = offerer.apply_answer(answerer.answer())
    assert ours.codec.max_bitrate is None and b"maxaveragebitrate" not in answerer.answer()
