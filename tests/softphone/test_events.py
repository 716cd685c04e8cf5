"""Typed call events: their JSON is what ``softphone call --json`` prints; enums and error roots."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from softphone.calls.errors import CallError
from softphone.calls.events import (
    EVENT_TYPES,
    Answered,
    Calling,
    CallKeys,
    CallStatus,
    Dtmf,
    Ended,
    Failed,
    Incoming,
    MediaCounters,
    PeerAssurance,
    PeerSending,
    Rejected,
    Ringing,
)
from softphone.calls.negotiation import NegotiationError
from softphone.calls.profile import Keying, ProfileError, SecurityLevel
from softphone.calls.sdes import SdesError
from softphone.cli import CliError
from softphone.cli.call import Printer
from softphone.config import ConfigError
from softphone.errors import SoftphoneError
from softphone.gui.model import GuiDataError, badge
from softphone.keys.errors import KeysError
from softphone.keys.keystore import KeystoreError, NoKeysError
from softphone.keys.kms_client import KmsClientError, KmsUnreachable

KEYS = CallKeys(SecurityLevel.SECURE, SecurityLevel.SECURE.label, "sip:bob@x", "opus", "AEAD_AES_128_GCM", "0a0b0c0d")
MEDIA = MediaCounters(10, 9, 0.1, 1.5, 0)


def test_status_json_is_flat_and_grows_with_what_is_known() -> None:
    assert CallStatus("calling", "sip:bob@x").to_json() == {"state": "calling", "peer": "sip:bob@x"}
    full = CallStatus("confirmed", "sip:bob@x", KEYS, MEDIA).to_json()
    assert list(full) == ["state", "peer", "security", "label", "verified_identity", "codec", "srtp", "key_id",
                          "peer_assurance", "packets_sent", "packets_received", "loss", "jitter_ms", "srtp_failures"]
    assert json.loads(json.dumps(full))["security"] == "MIKEY-SAKKE"
    assert full["label"] == "Secure Chorus (MIKEY-SAKKE)"


def test_event_json_shapes() -> None:
    status = CallStatus("confirmed", "sip:bob@x", KEYS, MEDIA)
    assert Calling("c1", "sip:bob@x", "Secure Chorus (MIKEY-SAKKE)").to_json() == {
        "event": "calling", "call_id": "c1", "peer": "sip:bob@x", "security": "Secure Chorus (MIKEY-SAKKE)"}
    assert Ringing("c1").to_json() == {"event": "ringing", "call_id": "c1"}
    assert Answered("c1", status).to_json() == {"event": "answered", "call_id": "c1", **status.to_json()}
    assert Ended("c1", "local hangup", status).to_json() == {"event": "ended", "call_id": "c1",
                                                             "reason": "local hangup", **status.to_json()}
    assert Failed("c1", "Not Here", 404, None).to_json() == {"event": "failed", "call_id": "c1", "status": 404,
                                                             "reason": "Not Here", "warning": None}
    assert Failed("c1", "no answer").to_json() == {"event": "failed", "call_id": "c1", "reason": "no answer"}
    assert Rejected("c1", 603, None).to_json() == {"event": "rejected", "call_id": "c1", "status": 603,
                                                   "warning": None}
    assert Rejected("c1", 488, "MIKEY-SAKKE replay", "sip:m@x").to_json()["peer"] == "sip:m@x"
    assert Dtmf("c1", "5").data == {"digit": "5"}
    assert Incoming("c1", "sip:a@x", "sip:a@x", "label", "opus", "AEAD_AES_128_GCM", "01").to_json() == {
        "event": "incoming", "call_id": "c1", "peer": "sip:a@x", "verified_identity": "sip:a@x",
        "security": "label", "codec": "opus", "srtp": "AEAD_AES_128_GCM", "key_id": "01",
        "peer_assurance": "verified-by-eccsi"}
    kinds = [t.kind for t in EVENT_TYPES]
    assert len(set(kinds)) == len(kinds)


def test_printer_lines() -> None:
    status = CallStatus("confirmed", "sip:bob@x", KEYS, MEDIA)
    assert Printer.describe(Failed("c1", "Busy Here", 486, None)) == "call failed: 486 Busy Here "
    assert Printer.describe(Failed("c1", "bad answer")).strip() == "call failed:  bad answer"
    assert Printer.describe(Ended("c1", "remote hangup", status)) == \
        "call ended (remote hangup): 10 packets sent, 9 received, loss 0.1"
    assert Printer.describe(Ended("c1", "", CallStatus("calling", "sip:b@x"))) == \
        "call ended (): 0 packets sent, 0 received, loss 0"
    assert Printer.describe(Dtmf("c1", "#")) == "dtmf #"


def test_enums_keep_their_text() -> None:
    assert Keying("mikey-sakke") is Keying.MIKEY_SAKKE and Keying.SDES.security is SecurityLevel.SDES_INTEROP
    assert SecurityLevel.SDES_INTEROP == "SDES" and SecurityLevel.SDES_INTEROP.label == "SDES — not Secure Chorus"
    assert SecurityLevel.of("MIKEY-SAKKE", None) is SecurityLevel.NOT_SECURE
    assert badge(SecurityLevel.SECURE, "sip:b@x").level == badge("MIKEY-SAKKE", "sip:b@x").level == "secure"


@pytest.mark.parametrize(("error", "root"), [
    (CallError, SoftphoneError), (NegotiationError, CallError), (ProfileError, CallError), (SdesError, CallError),
    (KeysError, SoftphoneError), (KeystoreError, KeysError), (NoKeysError, KeysError), (KmsClientError, KeysError),
    (KmsUnreachable, KeysError), (ConfigError, SoftphoneError), (CliError, SoftphoneError),
    (GuiDataError, SoftphoneError),
])
def test_one_root_per_package(error: type[Exception], root: type[Exception]) -> None:
    assert issubclass(error, root)


def test_outgoing_call_never_says_verified() -> None:
    """MIKEY-SAKKE is one-way: the callee signs nothing, so an outgoing call is keyed to it, then hears from it."""
    keyed = CallStatus("confirmed", "sip:bob@x", replace(KEYS, peer_assurance=PeerAssurance.KEYED_TO), MEDIA)
    sending = CallStatus("confirmed", "sip:bob@x", replace(KEYS, peer_assurance=PeerAssurance.PEER_SENDING), MEDIA)
    verified = CallStatus("confirmed", "sip:bob@x", replace(KEYS, peer_assurance=PeerAssurance.VERIFIED_BY_ECCSI))
    assert keyed.describe_peer() == "keyed to sip:bob@x — only bob can decrypt"
    assert sending.describe_peer() == "keyed to sip:bob@x — bob's phone is sending"
    assert verified.describe_peer() == "sip:bob@x (verified by ECCSI)"
    assert keyed.to_json()["peer_assurance"] == "keyed-to" and sending.to_json()["peer_assurance"] == "peer-sending"
    assert json.loads(json.dumps(PeerSending("c1", sending).to_json()))["event"] == "peer-sending"
    for st in (keyed, sending):
        line = Printer.summary(st.to_json())
        assert "verified" not in line and st.describe_peer() in line
        b = badge(st.security, st.verified_identity, st.peer_assurance)
        assert b.level == "secure" and "verified" not in b.text
    assert Printer.describe(PeerSending("c1", sending)) == "keyed to sip:bob@x — bob's phone is sending"
    assert "verified by ECCSI" in Printer.summary(verified.to_json())
    assert "identity verified" in badge(verified.security, verified.verified_identity, verified.peer_assurance).text
