"""What the network and the proxy see of a secure call, from a tshark capture on loopback.

SIP runs over TLS; the test logs the TLS session keys (SSLKEYLOGFILE style) so tshark can show the
INVITE as Kamailio sees it: the MIKEY I_MESSAGE is there, no key is. The media is PCMU silence, whose
clear RTP payload would be 160 octets of 0xFF: on the wire it must be SRTP (random-looking, +16 tag,
+4 MKI = the PCK-ID).
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from lab.deployment import Lab
from lab.tshark import start_capture, stop_capture
from softphone.calls.phone import Phone
from softphone.media.audio import ArraySink, ArraySource
from tests.conftest import require_tool

pytestmark = pytest.mark.slow




async def test_capture_shows_mikey_and_srtp_but_no_key(lab: Lab, tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    profile = tmp_path / "pcmu.toml"
    profile.write_text(resources.files("profiles").joinpath("securechorus.toml").read_text().replace(
        'codecs = ["opus/48000/2", "PCMU/8000", "PCMA/8000"]', 'codecs = ["PCMU/8000"]').replace(
        'key_mgmt_level = "media"', 'key_mgmt_level = "session"'))   # where tshark 4.0 dissects MIKEY
    keylog = tmp_path / "tls-keys.log"
    a_set, b_set = lab.settings("alice", str(profile)), lab.settings("bob", str(profile))
    for ctx in (a_set.ua.tls_client, a_set.ua.tls_server, b_set.ua.tls_client, b_set.ua.tls_server):
        assert ctx is not None
        ctx.keylog_filename = str(keylog)
    assert lab.kamailio is not None and lab.kamailio.tls_port
    pcap = tmp_path / "call.pcap"
    proc = start_capture(tshark, pcap, f"udp or tcp port {lab.kamailio.tls_port}")
    try:
        async with Phone(a_set) as alice, Phone(b_set) as bob:
            await alice.register()
            await bob.register()
            async def answer():  # type: ignore[no-untyped-def]
                return await (await bob.next_incoming(10)).accept(ArraySource(np.zeros(48000, np.int16)), ArraySink())

            answering = asyncio.create_task(answer())
            call = await alice.call(lab.uri("bob"), ArraySource(np.zeros(48000, np.int16)), ArraySink(), timeout=10)
            bob_call = await asyncio.wait_for(answering, 10)
            await asyncio.sleep(1.2)
            neg = bob_call.negotiated
            assert neg is not None and bob_call.answerer is not None and bob_call.answerer.verified is not None
            secrets_hex = [bob_call.answerer.verified.key.hex(), neg.srtp.send_key.hex(), neg.srtp.recv_key.hex(),
                           neg.srtp.send_salt.hex(), neg.srtp.recv_salt.hex()]
            key_id, media_port, call_id = neg.key_id, bob_call.port, call.call_id
            await call.hangup()
        await asyncio.sleep(0.5)
    finally:
        stop_capture(proc)

    port = lab.kamailio.tls_port
    tls = ["-o", f"tls.keylog_file:{keylog}", "-d", f"tcp.port=={port},tls", "-d", f"tls.port=={port},sip"]
    select_invite = ["-Y", f'sip.Method == "INVITE" && sip.Call-ID == "{call_id}"']
    invite = subprocess.run([tshark, "-r", str(pcap), *tls, *select_invite, "-V"],
                            capture_output=True, text=True, timeout=60).stdout
    assert "Session Initiation Protocol (INVITE)" in invite, "INVITE not decoded from the TLS capture"
    assert "Multimedia Internet KEYing" in invite
    fields = subprocess.run([tshark, "-r", str(pcap), *tls, *select_invite, "-T", "fields", "-E", "occurrence=f",
                             "-e", "sdp.key_mgmt", "-e", "mikey.sakke.data", "-e", "mikey.sign.data"],
                            capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert len(fields) == 2, "expected the INVITE on both hops (alice → proxy → bob)"
    assert fields[0] == fields[1]                                      # the proxy relayed the I_MESSAGE unchanged
    fields = fields[0].split()
    assert fields[0] == "mikey"                                       # "mikey <base64>" split on the space
    imessage = base64.b64decode(fields[1])
    sakke_sed, signature = bytes.fromhex(fields[-2].replace(":", "")), bytes.fromhex(fields[-1].replace(":", ""))
    assert len(sakke_sed) == 273 and len(signature) == 129          # SAKKE SED and ECCSI SIGN, dissected
    assert sakke_sed in imessage and imessage.endswith(signature)
    for secret in secrets_hex:                                        # the proxy's view holds no key
        assert secret not in invite.replace(":", "") and bytes.fromhex(secret) not in imessage

    rtp = subprocess.run([tshark, "-r", str(pcap), "-d", f"udp.port=={media_port},rtp", "-Y",
                          f"rtp && udp.dstport=={media_port}", "-T", "fields", "-e", "rtp.payload"],
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert len(rtp) > 30, "too few media packets captured"
    for payload_hex in rtp:
        payload = bytes.fromhex(payload_hex.replace(":", ""))
        assert len(payload) == 160 + 16 + 4 and payload[-4:] == bytes.fromhex(key_id)   # GCM tag + MKI
        assert b"\xff" * 8 not in payload and b"\x7f" * 8 not in payload               # no clear G.711 silence
