"""RTP (RFC 3550 §5.1), RTCP SR/RR/BYE (§6.4, §6.6), telephone-event (RFC 4733) wire formats."""

from __future__ import annotations

import pytest

from softphone.media import rtcp
from softphone.media.dtmf import DtmfError, DtmfReceiver, TelephoneEvent, event_payloads
from softphone.media.rtp import RtpError, RtpPacket, SequenceTracker, is_rtcp


def test_rtp_header_bytes_and_round_trip() -> None:
    pkt = RtpPacket(111, 0xBEEF, 0x01020304, 0xCAFEBABE, b"abc", marker=True)
    wire = pkt.serialize()
    assert wire == bytes.fromhex("80efbeef01020304cafebabe") + b"abc"
    assert RtpPacket.parse(wire) == pkt


def test_rtp_parse_skips_csrc_extension_and_padding() -> None:
    wire = (bytes.fromhex("b1 00 0001 00000002 00000003".replace(" ", "")) + b"\x00\x00\x00\x09"  # 1 CSRC
            + b"\xbe\xde\x00\x01" + b"\x11\x22\x33\x44" + b"pay" + b"\x00\x00\x03")
    pkt = RtpPacket.parse(wire)
    assert (pkt.payload, pkt.sequence, pkt.ssrc) == (b"pay", 1, 3)


@pytest.mark.parametrize("wire, msg", [
    (b"\x80\x00", "too short"),
    (bytes.fromhex("40000001000000020000000300"), "version"),
    (bytes.fromhex("8f000001000000020000000300"), "longer"),
    (bytes.fromhex("a0000001000000020000000300"), "padding"),
])
def test_rtp_parse_rejects_malformed(wire: bytes, msg: str) -> None:
    with pytest.raises(RtpError, match=msg):
        RtpPacket.parse(wire)


def test_rtcp_mux_demultiplexing() -> None:
    assert is_rtcp(rtcp.serialize(rtcp.ReceiverReport(1)))
    assert not is_rtcp(RtpPacket(111, 1, 1, 1, b"").serialize())
    assert not is_rtcp(RtpPacket(0, 1, 1, 1, b"", marker=True).serialize())


def test_sequence_tracker_wrap_loss_and_reorder() -> None:
    t = SequenceTracker(8000)
    exts = [t.update(s, s * 160, s * 0.02) for s in (65534, 65535, 1, 0, 3)]  # 2 lost, 0 reordered
    assert exts == [65534, 65535, 65537, 65536, 65539]
    assert t.expected == 6 and t.received == 5 and t.lost == 1
    assert t.fraction_lost() == (1 << 8) // 6
    assert t.jitter == pytest.approx(0.0, abs=1e-6)


def test_sender_report_round_trip_and_rtt() -> None:
    block = rtcp.ReportBlock(0x11, 25, 7, 70000, 12, 0x12345678, 0x00010000)
    sr = rtcp.SenderReport(0x22, 0xE0000000_80000000, 960, 10, 1000, (block,))
    wire = rtcp.serialize(sr) + rtcp.serialize(rtcp.Bye((0x22,), "hangup"))
    assert len(rtcp.serialize(sr)) == 28 + 24
    parsed = rtcp.parse(wire).packets
    assert parsed == [sr, rtcp.Bye((0x22,), "hangup")]
    # arrival 1.5 s after LSR, DLSR 1.0 s: RTT 0.5 s
    arrival = (0x12345678 + 0x00018000) << 16
    assert rtcp.rtt_seconds(block, arrival) == pytest.approx(0.5)
    assert rtcp.rtt_seconds(rtcp.ReportBlock(1, 0, 0, 0, 0, 0, 0), arrival) is None


def test_compound_with_sdes_cname() -> None:
    sdes = rtcp.Sdes(((0x22, "a1b2@softphone"), (0x33, "x")))
    wire = rtcp.serialize(rtcp.ReceiverReport(0x22)) + rtcp.serialize(sdes)
    assert len(wire) % 4 == 0
    assert rtcp.serialize(sdes)[:8] == bytes.fromhex("82ca0008 00000022".replace(" ", ""))
    assert rtcp.parse(wire).packets == [rtcp.ReceiverReport(0x22), sdes]
    with pytest.raises(rtcp.RtcpError):
        rtcp.parse(rtcp.serialize(rtcp.ReceiverReport(1)) + bytes.fromhex("81ca0001 00000022".replace(" ", "")))


def test_receiver_report_negative_cumulative_loss() -> None:
    rr = rtcp.ReceiverReport(5, (rtcp.ReportBlock(1, 0, -2, 9, 0, 0, 0),))
    assert rtcp.parse(rtcp.serialize(rr)).packets == [rr]


@pytest.mark.parametrize("wire", [b"\x80\xc9\x00", b"\x80\xc9\x00\x05" + b"\x00" * 8,
                                  b"\x81\xc8\x00\x01\x00\x00\x00\x01", b"\x40\xc9\x00\x01\x00\x00\x00\x01"])
def test_rtcp_parse_rejects_malformed(wire: bytes) -> None:
    with pytest.raises(rtcp.RtcpError):
        rtcp.parse(wire)


def test_telephone_event_sequence() -> None:
    packets = event_payloads("#", 100, 8000)
    assert [m for m, _ in packets] == [True, False, False, False, False, False, False]
    events = [TelephoneEvent.parse(p) for _, p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert events[0].serialize() == bytes([11, 10, 0, 160])
    rx = DtmfReceiver()
    assert [rx.feed(1234, p) for _, p in packets] == ["#"] + [None] * 6


@pytest.mark.parametrize("digit", ["x", "", "12"])
def test_bad_dtmf_digit(digit: str) -> None:
    with pytest.raises(DtmfError):
        event_payloads(digit, 100, 8000)


def test_short_telephone_event_rejected() -> None:
    with pytest.raises(DtmfError):
        DtmfReceiver().feed(1, b"\x01")
