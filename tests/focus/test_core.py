"""The focus's forwarding table: byte-identical fan-out, exact counters, latching, and nothing kept but counts."""

from __future__ import annotations

import os

import pytest

import focus.core
import focus.service
from focus.core import Forwarder, LegCounters, Outgoing, UnknownLeg
from focus.errors import FocusError
from focus.service import answer_sdp, offer_address
from lab.focus import reachable_values

A, B, C = ("192.0.2.1", 4000), ("192.0.2.2", 4002), ("192.0.2.3", 4004)


def three() -> tuple[Forwarder, int, int, int]:
    f = Forwarder()
    return f, f.add_leg("sip:a@lab.test", A), f.add_leg("sip:b@lab.test", B), f.add_leg("sip:c@lab.test", C)


def test_each_datagram_goes_unchanged_to_every_other_member() -> None:
    f, a, b, c = three()
    data = os.urandom(120)
    assert f.receive(a, data, A) == [Outgoing(b, data, B), Outgoing(c, data, C)]
    assert f.receive(c, b"x", C) == [Outgoing(a, b"x", A), Outgoing(b, b"x", B)]
    assert f.counters() == {
        "sip:a@lab.test": LegCounters(packets_in=1, octets_in=120, packets_out=1, octets_out=1),
        "sip:b@lab.test": LegCounters(packets_in=0, octets_in=0, packets_out=2, octets_out=121),
        "sip:c@lab.test": LegCounters(packets_in=1, octets_in=1, packets_out=1, octets_out=120),
    }


def test_first_packet_latches_the_source_and_strangers_are_dropped() -> None:
    f = Forwarder()
    a = f.add_leg("a", None)
    b = f.add_leg("b", B)
    assert f.receive(b, b"1", B) == []  # a's address not known yet: nothing to send it to
    nat = ("198.51.100.7", 31000)
    assert f.receive(a, b"2", nat) == [Outgoing(b, b"2", B)]
    assert f.receive(b, b"3", B) == [Outgoing(a, b"3", nat)]
    assert f.receive(a, b"4", ("203.0.113.9", 1)) == []
    assert f.counters()["a"].dropped_wrong_source == 1


def test_legs_come_and_go_and_the_table_is_bounded() -> None:
    f, a, b, c = three()
    f.remove_leg(b)
    assert [o.leg for o in f.receive(a, b"z", A)] == [c]
    with pytest.raises(UnknownLeg):
        f.receive(b, b"z", B)
    with pytest.raises(UnknownLeg):
        f.remove_leg(b)
    small = Forwarder(max_legs=1)
    small.add_leg("one")
    with pytest.raises(FocusError):
        small.add_leg("two")


def test_it_never_parses_what_it_forwards() -> None:
    """Anything at all (not RTP, not SRTP, empty) is forwarded as is: the focus does not look into packets."""
    f, a, b, _ = three()
    for data in (b"", b"\x00", b"not rtp at all", os.urandom(1400), bytes(12) + b"\xff" * 30):
        out = f.receive(a, data, A)
        assert [o.data for o in out] == [data, data]
        assert all(o.data is data for o in out)  # the very object: not decoded, not re-encoded


def test_its_state_holds_no_bytes_after_forwarding_srtp() -> None:
    """After forwarding group SRTP, nothing the focus holds is a bytes value (no payload, no key material)."""
    f, a, b, c = three()
    for i in range(50):
        f.receive([a, b, c][i % 3], os.urandom(100), [A, B, C][i % 3])
    held = reachable_values(f)
    assert not [v for v in held if isinstance(v, (bytes, bytearray, memoryview))]
    assert {type(v).__name__ for v in held} <= {"Forwarder", "dict", "int", "Leg", "str", "tuple", "bool",
                                                 "LegCounters"}


def test_the_focus_modules_import_no_crypto() -> None:
    for module in (focus.core, focus.service):
        names = set(vars(module))
        assert not names & {"crypto", "pylibsrtp", "AESGCM", "cryptography", "Keystore", "GroupKey"}


OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 5004 RTP/SAVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n"
         b"a=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\na=sendrecv\r\n")


def test_answer_mirrors_the_offer_without_any_key() -> None:
    answer = answer_sdp(OFFER, "127.0.0.1", 40123).decode()
    assert "m=audio 40123 RTP/SAVP 111 101" in answer
    assert "a=rtpmap:111 opus/48000/2" in answer and "a=rtcp-mux" in answer
    assert "key-mgmt" not in answer and "crypto" not in answer
    assert offer_address(OFFER) == ("127.0.0.1", 5004)
    with pytest.raises(FocusError):
        answer_sdp(OFFER.replace(b"RTP/SAVP", b"RTP/AVP"), "127.0.0.1", 1)
    with pytest.raises(FocusError):
        answer_sdp(b"garbage", "127.0.0.1", 1)


@pytest.mark.slow  # the registration attempt times out (about 30 s)
def test_cli_errors_are_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "focus", "--group", "sip:team@lab.test", "--password-file",
                          str(tmp_path / "missing.pw")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "cannot read" in out.stderr
    out = subprocess.run([sys.executable, "-m", "focus", "--group", "sip:team@lab.test", "--proxy",
                          "sip:127.0.0.1:9;transport=udp", "--duration", "1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot register" in out.stderr
