"""Wireshark's MIKEY dissector (Debian tshark) decodes an INVITE carrying our I_MESSAGE.

A hand-built SIP INVITE whose SDP holds a PCK I_MESSAGE (empty CS ID map, session-level
``a=key-mgmt`` — what tshark 4.0 decodes, PEERS.md) is sent over UDP on 127.0.0.1 and captured on
``lo``; ``tshark -V`` and field export must show our SAKKE and ECCSI SIGN payloads, octet for octet.
"""

from __future__ import annotations

import select
import socket
import subprocess
import time
from pathlib import Path

import pytest

from crypto.eccsi import EccsiMasterKey
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KmsParams, UserKeys
from crypto.mikey.sdp import add_key_mgmt
from crypto.sakke import SakkeMasterKey
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


def _imessage() -> bytes:
    e, s = EccsiMasterKey.generate(), SakkeMasterKey.generate()
    kms = KmsParams("kms.example.org", 2592000, 0, s.Z, e.kpak)
    now = ntp_seconds()
    n = key_period_no(now, 2592000, 0)
    uid = kms.uid("sip:alice@example.org", n)
    ssk, pvt = e.issue(uid)
    alice = UserKeys("sip:alice@example.org", kms, n, ssk, pvt)
    return Initiator(alice).build("sip:bob@example.org", ntp_time=now).data


def _invite(port: int, imessage: bytes) -> bytes:
    sdp = add_key_mgmt("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                       "m=audio 40000 RTP/SAVP 96\r\na=rtpmap:96 opus/48000/2\r\n", imessage, None)
    head = (f"INVITE sip:bob@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK776asdhds\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.org>;tag=1928301774\r\nTo: <sip:bob@example.org>\r\n"
            "Call-ID: a84b4c76e66710@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5999>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return (head + sdp).encode()


def test_tshark_decodes_our_sakke_and_eccsi_sign(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    imessage = _imessage()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    pcap = tmp_path / "invite.pcap"
    proc = subprocess.Popen([tshark, "-i", "lo", "-f", f"udp dst port {port}", "-c", "1", "-a", "duration:30",
                             "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        seen = b""
        while b"Capturing on" not in seen:
            assert time.monotonic() < deadline, f"tshark did not start: {seen!r}"
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                chunk = proc.stderr.read1(4096)
                assert chunk or proc.poll() is None, f"tshark exited: {seen!r}"
                seen += chunk
        packet = _invite(port, imessage)
        for _ in range(50):  # resend until the one-packet capture completes (bounded)
            tx.sendto(packet, ("127.0.0.1", port))
            try:
                proc.wait(timeout=0.3)
                break
            except subprocess.TimeoutExpired:
                continue
        assert proc.returncode == 0, "tshark did not capture the INVITE"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
        rx.close()
        tx.close()
    decode = [tshark, "-r", str(pcap), "-d", f"udp.port=={port},sip"]
    verbose = subprocess.run([*decode, "-V"], capture_output=True, text=True, timeout=60).stdout
    assert "Multimedia Internet KEYing" in verbose and "Malformed" not in verbose
    assert "Data Type: SAKKE (26)" in verbose
    assert "SAKKE Encapsulated Data (SAKKE)" in verbose and "SAKKE data length: 273" in verbose
    assert "Signature type: ECCSI (2)" in verbose and "Signature len: 129" in verbose
    fields = subprocess.run([*decode, "-T", "fields", "-e", "mikey.csb_id", "-e", "mikey.sakke.data",
                             "-e", "mikey.sign.data", "-e", "mikey.rand.data"],
                            capture_output=True, text=True, timeout=60).stdout.strip().split("\t")
    csb_id, sed, signature, rand = (f.replace(":", "") for f in fields)
    assert int(csb_id, 16) == int.from_bytes(imessage[4:8], "big")
    assert bytes.fromhex(sed) in imessage and len(bytes.fromhex(sed)) == 273
    assert bytes.fromhex(signature) == imessage[-129:]
    assert bytes.fromhex(rand) == imessage[22:38]
