"""The capture analyser on captures the tests make from real protocol objects (tests/analyze/synth.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from lab.captures import (
    ALICE,
    BOB,
    KEYPROV,
    KMS_INIT,
    VECTOR,
    Impairments,
    build_call,
    user_keys,
)
from softphone.analyze import KeyRing, analyse
from softphone.analyze.audio import read_wav
from softphone.analyze.html import render
from softphone.analyze.report import text, to_json
from softphone.cli import main

FRAMES = 250  # 5 s each way
LOST = len(range(7, FRAMES, 20))  # every 20th frame: 5 %


def ring(*names: str) -> KeyRing:
    r = KeyRing()
    for n in names:
        r.add([user_keys(n)])
    return r


def correlation(got: np.ndarray, sent: np.ndarray, max_lag: int = 2000) -> tuple[int, float]:
    """Best lag of ``got`` behind ``sent`` and the normalised correlation there."""
    n = min(len(got), len(sent)) - max_lag
    g, s = got.astype(float), sent[:n].astype(float)
    scores = [float(np.dot(g[lag:lag + n], s)) for lag in range(max_lag)]
    lag = int(np.argmax(scores))
    w = g[lag:lag + n]
    return lag, scores[lag] / float(np.sqrt(np.dot(w, w) * np.dot(s, s)))


@pytest.fixture(scope="module")
def impaired(tmp_path_factory: pytest.TempPathFactory):
    """The vendor-vector call with a re-INVITE rekey: alice→bob with 5 % loss, a tampered packet, a duplicate
    and a swap; bob kept his old key for 14 packets after the rekey."""
    d = tmp_path_factory.mktemp("impaired")
    call = build_call(frames=FRAMES, a_imp=Impairments(drop_every=20, tamper=(50,), duplicate=(60,), swap=(80,)),
                      b_imp=Impairments(old_key_after_rekey=14))
    pcap = call.write(d / "call.pcap")
    return call, analyse(pcap, ring("alice", "bob"), d / "out"), d


def test_ladder_and_mikey_verdicts(impaired) -> None:
    call, a, _ = impaired
    assert len(a.dialogs) == 1
    dlg = a.dialogs[0]
    assert (dlg.call_id, dlg.from_uri, dlg.to_uri) == ("call-1@test", ALICE, BOB)
    assert [e.label for e in dlg.entries] == ["INVITE", "200 OK", "ACK", "INVITE", "200 OK", "ACK", "BYE", "200 OK"]
    assert [r.entry.number for r in a.imessages] == [1, 4]
    first, rekey = (r.verdict.description for r in a.imessages)
    assert (first["valid"], first["verified"], first["error"]) == (True, True, None)
    assert (first["key_type"], first["key_id"], first["initiator"], first["responder"]) == (
        "PCK", "16992638", ALICE, BOB)
    assert (first["timestamp"], first["signature_scope"], first["age_seconds"]) == (
        "2025-10-02T23:47:52Z", "standard", 5)
    assert rekey["valid"] and rekey["key_id"] == f"{call.verified[1].key_id:08x}" != first["key_id"]


def test_stream_counts(impaired) -> None:
    _, a, _ = impaired
    j = to_json(a)
    s1, s2 = j["streams"]
    assert (s1["ssrc"], s1["src"], s1["dst"], s1["codec"]) == (0x11111111, "127.0.0.1:40000", "127.0.0.1:40002", "opus")
    assert (s1["packets"], s1["lost"], s1["duplicates"], s1["reordered"], s1["auth_failures"], s1["replays"]) == (
        FRAMES - LOST + 1, LOST, 1, 1, 1, 1)
    assert (s1["srtp"], s1["mki"], s1["old_key_packets"]) == ("AEAD_AES_128_GCM", True, 0)
    assert (s2["packets"], s2["lost"], s2["duplicates"], s2["reordered"], s2["auth_failures"], s2["replays"]) == (
        FRAMES, 0, 0, 0, 14, 0)
    assert s2["old_key_packets"] == 14 and (s2["sender"], s2["receiver"]) == (BOB, ALICE)
    # arrivals jitter by 0..4 ms around the 20 ms clock: a few ms of RFC 3550 jitter, not zero, not tens
    assert 0.5 < s1["jitter_ms"] < 5 and 0.5 < s2["jitter_ms"] < 5
    last_offset = ((FRAMES - 1) * 7 % 5) * 0.001  # synth's arrival wobble of the last frame
    assert s1["first"] == pytest.approx(0.2) and s1["last"] == pytest.approx(0.2 + (FRAMES - 1) * 0.02 + last_offset)


def test_findings_in_words(impaired) -> None:
    _, a, _ = impaired
    a2b, b2a = f"stream 1 ({ALICE} → {BOB})", f"stream 2 ({BOB} → {ALICE})"
    assert a.findings == [
        f"{a2b}: 1 packet failed SRTP authentication",
        f"{a2b}: 1 packet rejected as replayed by the SRTP replay check",
        f"{a2b}: {LOST} of {FRAMES} packets lost (5.2 %)",
        f"{b2a}: 14 packets failed authentication after a re-INVITE — sender kept the old key",
    ]


def test_decoded_audio_matches_what_was_sent(impaired) -> None:
    call, a, _ = impaired
    for st, who, floor in zip(a.streams, ("alice", "bob"), (0.95, 0.9), strict=True):
        assert st.wav is not None and Path(st.wav).name == f"stream{st.number}-{st.ssrc:08x}.wav"
        got = read_wav(Path(st.wav))
        assert len(got) == len(call.audio[who])  # lost frames concealed, not skipped
        lag, corr = correlation(got, call.audio[who])
        assert lag < 960 and corr > floor, (who, lag, corr)


def test_text_and_html_reports(impaired) -> None:
    _, a, _ = impaired
    t = text(a)
    assert "  #1       0.000" in t and "udp  INVITE" in t
    assert "INVITE   [I_MESSAGE valid: PCK 16992638 sip:alice@streamwide.com → sip:bob@streamwide.com" in t
    assert "14 packets failed authentication after a re-INVITE" in t
    page = render(a)
    assert page.count("<tr>") >= 8 + 3 and "data:image/png;base64," in page
    assert "sender kept the old key" in page


def test_cli_json_contract(impaired, capsys) -> None:
    _, _, d = impaired
    out = d / "cli"
    argv = ["analyze", str(d / "call.pcap"), "--kms-init", str(KMS_INIT), "--keyprov", str(KEYPROV["alice"]),
            "--keyprov", str(KEYPROV["bob"]), "--out", str(out), "--json"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    j = json.loads(printed)
    assert {"dialogs", "imessages", "streams", "findings"} <= set(j)
    assert set(j["dialogs"][0]) >= {"call_id", "from", "to", "messages"}
    assert [m["label"] for m in j["dialogs"][0]["messages"]][:3] == ["INVITE", "200 OK", "ACK"]
    assert j["dialogs"][0]["messages"][0]["imessage"] == 0
    im = j["imessages"][0]
    assert set(im) >= {"valid", "error", "key_type", "key_id", "initiator", "responder", "timestamp",
                       "signature_scope"}
    assert "key" not in im and "srtp" not in im
    for s in j["streams"]:
        assert set(s) >= {"ssrc", "src", "dst", "codec", "packets", "lost", "duplicates", "reordered", "jitter_ms",
                          "auth_failures", "replays", "wav"}
        assert Path(s["wav"]).is_file()
    assert (out / "report.html").is_file()
    assert main([*argv, "--show-secrets"]) == 0
    secret = json.loads(capsys.readouterr().out)["imessages"][0]
    assert secret["key"] == "b4c96b703acd5c1bf7d4cc45068d9965"
    assert {e["cs_id"] for e in secret["srtp"]} >= {0, 1}


def test_text_output_and_usage_errors(impaired, capsys) -> None:
    _, _, d = impaired
    assert main(["analyze", str(d / "call.pcap")]) == 0  # no keys: decoded, not verified, not decrypted
    out = capsys.readouterr().out
    assert "I_MESSAGE decoded (not verified) PCK 16992638" in out
    assert "not decrypted" in out
    assert main(["analyze", str(d / "call.pcap"), "--keyprov", str(KEYPROV["bob"])]) == 2
    assert "--keyprov needs --kms-init" in capsys.readouterr().err
    (d / "junk.pcap").write_bytes(b"not a capture at all")
    assert main(["analyze", str(d / "junk.pcap")]) == 2
    assert "not a pcap/pcapng capture" in capsys.readouterr().err


def test_rejection_uses_the_inspectors_words(tmp_path, capsys) -> None:
    """Only alice's keys: the INVITE's I_MESSAGE (for bob) is refused with `mikey inspect`'s error."""
    pcap = build_call(frames=10, rekey_frame=None).write(tmp_path / "c.pcap")
    a = analyse(pcap, ring("alice"))
    d = a.imessages[0].verdict.description
    assert main(["mikey", "inspect", "--json", str(VECTOR), "--kms-init", str(KMS_INIT), "--keyprov",
                 str(KEYPROV["alice"]), "--from", ALICE]) == 1
    inspected = json.loads(capsys.readouterr().out)
    assert d["valid"] is False and d["error"] == inspected["error"]
    assert "another receiver" in d["error"]
    assert a.findings[0] == f"INVITE #1 carries an I_MESSAGE that was rejected: {inspected['error']}"
    assert any("not decrypted: message is for another receiver" in f for f in a.findings)
    assert a.streams[0].auth_failures == 0 and a.streams[0].wav is None


def test_stale_t_and_alea_span_findings(tmp_path) -> None:
    pcap = build_call(frames=150, rekey_frame=60, age_seconds=412, alea_rekey=True).write(tmp_path / "c.pcap")
    a = analyse(pcap, ring("bob"))
    assert "INVITE #1: T is 412 s old at capture time (receivers accept ±300 s)" in a.findings
    assert ("INVITE #4 carries an I_MESSAGE signed over the Alea span (without the SIGN payload header)"
            in a.findings)
    assert a.imessages[1].verdict.description["signature_scope"] == "without-sign-header"
    assert [s.auth_failures for s in a.streams] == [0, 0]


def test_aes_cm_without_mki_is_opened_and_reported(tmp_path) -> None:
    from softphone.media.srtp import SrtpSuite

    pcap = build_call(frames=60, rekey_frame=None, b_suite=SrtpSuite.AES_CM_128_HMAC_SHA1_80,
                      b_mki=False).write(tmp_path / "c.pcap")
    a = analyse(pcap, ring("bob"))
    s2 = to_json(a)["streams"][1]
    assert (s2["srtp"], s2["mki"], s2["auth_failures"], s2["packets"]) == ("AES_CM_128_HMAC_SHA1_80", False, 0, 60)
    b2a = f"stream 2 ({BOB} → {ALICE})"
    assert a.findings == [
        f"{b2a}: {BOB} sent with AES_CM_128_HMAC_SHA1_80 although MIKEY-SAKKE (TS 33.180) requires AEAD_AES_128_GCM",
        f"{b2a}: SRTP packets carry no MKI (the key ID is expected as a 4-octet MKI)",
    ]


def test_sip_over_tcp_out_of_order_segments(tmp_path) -> None:
    call = build_call(frames=20, rekey_frame=10, transport="tcp")
    a = analyse(call.write(tmp_path / "c.pcap"), ring("bob"))
    entries = a.dialogs[0].entries
    assert [e.label for e in entries] == ["INVITE", "200 OK", "ACK", "INVITE", "200 OK", "ACK", "BYE", "200 OK"]
    assert {e.transport for e in entries} == {"tcp"}
    assert [r.verdict.description["valid"] for r in a.imessages] == [True, True]
    assert [(s.stats.packets, s.auth_failures) for s in a.streams] == [(20, 0), (20, 0)]
    assert a.findings == []


def test_capture_written_to_a_stream(tmp_path) -> None:
    """write_pcap takes any binary stream (the phone's own capture will write through it)."""
    from softphone.analyze.pcap import read_packets, write_pcap

    call = build_call(frames=5, rekey_frame=None)
    buf = io.BytesIO()
    write_pcap(buf, call.packets)
    (tmp_path / "x.pcap").write_bytes(buf.getvalue())
    back = read_packets(tmp_path / "x.pcap")
    assert [(p.src, p.dst, p.payload) for p in back] == [(p.src, p.dst, p.payload) for p in call.packets]


def test_sip_over_tls13_with_a_key_log(tmp_path, capsys) -> None:
    keylog = tmp_path / "keys.log"
    call = build_call(frames=20, rekey_frame=10, transport="tls", keylog=keylog)
    pcap = call.write(tmp_path / "c.pcap")
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()
    assert b"INVITE sip:" not in pcap.read_bytes()  # the signalling really is encrypted
    a = analyse(pcap, ring("bob"), keylog=keylog)
    entries = a.dialogs[0].entries
    assert [e.label for e in entries] == ["INVITE", "200 OK", "ACK", "INVITE", "200 OK", "ACK", "BYE", "200 OK"]
    assert {e.transport for e in entries} == {"tls"}
    assert [r.verdict.description["valid"] for r in a.imessages] == [True, True]
    assert [(s.stats.packets, s.auth_failures) for s in a.streams] == [(20, 0), (20, 0)]
    assert a.findings == []
    blind = analyse(pcap, ring("bob"))
    assert blind.dialogs == [] and blind.streams == []
    assert blind.findings == [
        "TLS connection 127.0.0.1:5060 → 127.0.0.1:5070 not opened: no TLS key log given (--keylog)",
        "UDP 127.0.0.1:40000 → 127.0.0.1:40002: 20 RTP-like packets that no SDP in the capture describes "
        "(signalling not captured, or an address rewritten by a NAT)",
        "UDP 127.0.0.1:40002 → 127.0.0.1:40000: 20 RTP-like packets that no SDP in the capture describes "
        "(signalling not captured, or an address rewritten by a NAT)"]
    keylog.write_text("# nothing useful\n")
    assert main(["analyze", str(pcap), "--keylog", str(keylog)]) == 0
    assert "not opened: the key log has no secrets for client random" in capsys.readouterr().out


def test_sdes_call_opened_and_judged_against_a_profile(tmp_path, capsys) -> None:
    from softphone.calls.profile import load_profile

    pcap = build_call(frames=40, rekey_frame=None, sdes_answer="AES_CM_128_HMAC_SHA1_80").write(tmp_path / "c.pcap")
    a = analyse(pcap, KeyRing(), tmp_path / "out")
    assert a.imessages == [] and a.findings == []
    assert [(s.stats.packets, s.auth_failures, s.layout.value if s.layout else None) for s in a.streams] == [
        (40, 0, ("AES_CM_128_HMAC_SHA1_80", False))] * 2
    assert all(s.wav for s in a.streams)
    strict = analyse(pcap, KeyRing(), profile=load_profile("securechorus"))
    assert strict.findings == [
        "INVITE #1 went over UDP although profile securechorus requires SIP over TLS",
        f"INVITE #1 from {ALICE} offers SDES keys (a=crypto) although profile securechorus requires MIKEY-SAKKE",
        f"{BOB} answered with AES_CM_128_HMAC_SHA1_80 although profile securechorus requires AEAD_AES_128_GCM",
    ]
    interop = analyse(pcap, KeyRing(), profile=load_profile("interop-sdes"))
    assert interop.findings == ["INVITE #1 went over UDP although profile interop-sdes requires SIP over TLS"]
    assert main(["analyze", str(pcap), "--profile", "no-such-profile"]) == 2
    assert "no-such-profile" in capsys.readouterr().err


def test_two_calls_reusing_the_same_ports(tmp_path) -> None:
    """A later call on the same addresses gets its own streams and keys."""
    one = build_call(frames=30, rekey_frame=None)
    two = build_call(frames=30, rekey_frame=None, age_seconds=20, call_id="call-2@test", fresh_first=True)
    both = one.packets + two.packets
    from softphone.analyze import analyse_packets

    a = analyse_packets(sorted(both, key=lambda p: p.time), ring("bob"))
    assert [d.call_id for d in a.dialogs] == ["call-1@test", "call-2@test"]
    assert [r.verdict.description["key_id"] for r in a.imessages] == [
        "16992638", f"{two.verified[0].key_id:08x}"]
    assert [(s.receiver.dialog.call_id, s.stats.packets, s.auth_failures) for s in a.streams] == [
        ("call-1@test", 30, 0), ("call-1@test", 30, 0), ("call-2@test", 30, 0), ("call-2@test", 30, 0)]
    assert a.findings == []


@pytest.mark.parametrize("ciphers", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                     "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_sip_over_tls12_with_a_key_log(tmp_path, ciphers) -> None:
    keylog = tmp_path / "keys.log"
    call = build_call(frames=10, rekey_frame=None, transport="tls", keylog=keylog, tls12_ciphers=ciphers)
    assert "CLIENT_RANDOM " in keylog.read_text()
    a = analyse(call.write(tmp_path / "c.pcap"), ring("bob"), keylog=keylog)
    assert [e.label for e in a.dialogs[0].entries] == ["INVITE", "200 OK", "ACK", "BYE", "200 OK"]
    assert {e.transport for e in a.dialogs[0].entries} == {"tls"}
    assert a.imessages[0].verdict.description["valid"] and a.findings == []


def test_media_without_signalling_is_reported(tmp_path) -> None:
    from softphone.analyze import analyse_packets
    from softphone.analyze.pcap import Packet
    from softphone.media.rtp import RtpPacket

    call = build_call(frames=10, rekey_frame=None)
    stray = [Packet(call.t0 + i * 0.02, "udp", ("127.0.0.1", 41000), ("127.0.0.1", 41002),
                    RtpPacket(0, i, i * 160, 0x33333333, b"\xff" * 160).serialize()) for i in range(25)]
    a = analyse_packets(sorted(call.packets + stray, key=lambda p: p.time), ring("bob"))
    assert len(a.streams) == 2
    assert a.findings == ["UDP 127.0.0.1:41000 → 127.0.0.1:41002: 25 RTP-like packets that no SDP in the capture "
                          "describes (signalling not captured, or an address rewritten by a NAT)"]
