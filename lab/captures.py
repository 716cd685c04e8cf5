"""Synthetic captures of MIKEY-SAKKE calls from real parts (vendor-vector keys, Opus, SRTP) for the analyser.

A call between alice and bob of the Streamwide v5 KMS: SIP over UDP (or TCP), the INVITE keyed by
the vendor-vector I_MESSAGE imsg_17 (alice → bob, PCK), a re-INVITE rekeying with a fresh
I_MESSAGE built by :class:`crypto.mikey.build.Initiator`, Opus audio (a known chirp) protected with
pylibsrtp (AEAD_AES_128_GCM with the key ID as MKI) under keys that :class:`crypto.mikey.verify.Responder`
derived, and deterministic impairments. Written as pcap by :func:`softphone.analyze.pcap.write_pcap`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crypto.eccsi import EccsiSigner
from crypto.identity import NTP_UNIX_OFFSET
from crypto.mikey.build import Initiator
from crypto.mikey.keys import KmsParams, UserKeys
from crypto.mikey.message import IMessage
from crypto.mikey.sdp import decode_key_mgmt, key_mgmt_value
from crypto.mikey.verify import Responder, VerifiedMessage
from kmsinterface.xml import parse_key_prov, parse_kms_init
from softphone.analyze.pcap import Addr, Packet, write_pcap
from softphone.calls import sdes
from softphone.media.codecs import FRAME_SAMPLES, SAMPLE_RATE, OpusCodec
from softphone.media.rtp import RtpPacket
from softphone.media.srtp import SrtpSender, SrtpSuite

# The published Streamwide vectors the synthetic calls are keyed with (vendored under tests/vectors).
ROOT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "streamwide"
XML = ROOT / "xml"
KMS_INIT = XML / "streamwide_official_v5_init.xml"
KEYPROV = {"alice": XML / "streamwide_official_v5_keyprov_alice_streamwide_com.xml",
           "bob": XML / "streamwide_official_v5_keyprov_bob_streamwide_com.xml"}
ALICE, BOB = "sip:alice@streamwide.com", "sip:bob@streamwide.com"
VECTOR = ROOT / "imessages" / "imsg_17_StreamwideTestVectors_L109.txt"

A_SIP: Addr = ("127.0.0.1", 5060)
B_SIP: Addr = ("127.0.0.1", 5070)
A_RTP: Addr = ("127.0.0.1", 40000)
B_RTP: Addr = ("127.0.0.1", 40002)
PT = 111
FRAME_S = 0.02


def user_keys(name: str) -> UserKeys:
    c = parse_kms_init(KMS_INIT.read_bytes()).certificate
    kms = KmsParams(c.kms_uri, c.user_key_period, c.user_key_offset, c.pub_enc_key, c.pub_auth_key)
    ks = parse_key_prov(KEYPROV[name].read_bytes()).key_sets[0]
    return UserKeys(ks.user_uri, kms, ks.key_period_no, ks.ssk, ks.pvt, ks.rsk)


def vector_imessage() -> bytes:
    return decode_key_mgmt(VECTOR.read_text())


def chirp(seconds: float, f0: float = 300.0, f1: float = 3000.0, amplitude: float = 8000.0) -> np.ndarray:
    """A linear chirp at 48 kHz (no repeating period, so alignment is unambiguous)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return (amplitude * np.sin(phase)).astype(np.int16)


def sdp(port: int, session: int, version: int, imessage: bytes | None,
        crypto: list[sdes.CryptoAttribute] | None = None) -> str:
    lines = ["v=0", f"o=- {session} {version} IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} RTP/SAVP {PT}", f"a=rtpmap:{PT} opus/48000/2", "a=sendrecv"]
    if imessage is not None:
        lines.append("a=key-mgmt:" + key_mgmt_value(imessage))
    lines += ["a=crypto:" + c.to_sdp_value() for c in crypto or []]
    return "\r\n".join(lines) + "\r\n"


def request(method: str, cseq: int, body: str = "", *, from_callee: bool = False,
            call_id: str = "call-1@test") -> bytes:
    frm, to = (f"<{BOB}>;tag=b1", f"<{ALICE}>;tag=a1") if from_callee else (f"<{ALICE}>;tag=a1", f"<{BOB}>;tag=b1")
    if method == "INVITE" and cseq == 1 and not from_callee:  # the initial INVITE has no To tag
        to = f"<{BOB}>"
    host = B_SIP if from_callee else A_SIP
    target = ALICE if from_callee else BOB
    head = [f"{method} {target} SIP/2.0", f"Via: SIP/2.0/UDP {host[0]}:{host[1]};branch=z9hG4bK{method}{cseq}",
            "Max-Forwards: 70", f"From: {frm}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}",
            f"Contact: <sip:{'bob' if from_callee else 'alice'}@{host[0]}:{host[1]}>"]
    return _finish(head, body)


def response(status: int, reason: str, method: str, cseq: int, body: str = "", *, call_id: str = "call-1@test",
             to_callee: bool = False) -> bytes:
    frm, to = (f"<{BOB}>;tag=b1", f"<{ALICE}>;tag=a1") if to_callee else (f"<{ALICE}>;tag=a1", f"<{BOB}>;tag=b1")
    host = B_SIP if to_callee else A_SIP
    head = [f"SIP/2.0 {status} {reason}", f"Via: SIP/2.0/UDP {host[0]}:{host[1]};branch=z9hG4bK{method}{cseq}",
            f"From: {frm}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}"]
    return _finish(head, body)


def _finish(head: list[str], body: str) -> bytes:
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


@dataclass
class Impairments:
    """Deterministic damage to one direction, by frame index."""

    drop_every: int = 0         # drop frames with index % drop_every == drop_phase
    drop_phase: int = 7
    tamper: tuple[int, ...] = ()
    duplicate: tuple[int, ...] = ()
    swap: tuple[int, ...] = ()  # frame i and i+1 swapped in arrival order
    old_key_after_rekey: int = 0  # frames sent under the old key once it is no longer in force


@dataclass
class Call:
    """What the capture contains and what the tests expect."""

    packets: list[Packet] = field(default_factory=list)
    audio: dict[str, np.ndarray] = field(default_factory=dict)  # "alice"/"bob" → what each sent
    verified: list[VerifiedMessage] = field(default_factory=list)
    imessages: list[bytes] = field(default_factory=list)
    t0: float = 0.0

    def write(self, path: Path) -> Path:
        with path.open("wb") as f:
            write_pcap(f, sorted(self.packets, key=lambda p: p.time))
        return path


GRACE = 0.5


class TlsPipe:
    """A real TLS 1.3 connection (Python's ssl over memory BIOs) whose bytes become TCP segments.

    The client's context writes an NSS key log, as a phone started with ``--keylog`` would.
    """

    def __init__(self, client: Addr, server: Addr, keylog: Path, t: float, tls12_ciphers: str | None = None) -> None:
        import datetime
        import ssl

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy.test")])
        now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
                .sign(key, hashes.SHA256()))
        pem = keylog.with_suffix(".pem")
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(str(pem))
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        if tls12_ciphers is None:
            cctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            cctx.maximum_version = ssl.TLSVersion.TLSv1_2
            cctx.set_ciphers(tls12_ciphers)
        cctx.keylog_filename = str(keylog)
        self._ssl = ssl
        self.addrs = {True: (client, server), False: (server, client)}
        self.bios = {True: (ssl.MemoryBIO(), ssl.MemoryBIO()), False: (ssl.MemoryBIO(), ssl.MemoryBIO())}
        self.ends = {True: cctx.wrap_bio(*self.bios[True], server_hostname="proxy.test"),
                     False: sctx.wrap_bio(*self.bios[False], server_side=True)}
        self.seq = {True: 1000, False: 5000}
        self.packets: list[Packet] = [Packet(t, "tcp", client, server, b"", 999, syn=True),
                                      Packet(t, "tcp", server, client, b"", 4999, syn=True)]
        self.t = t
        for _ in range(10):
            done = 0
            for side in (True, False):
                try:
                    self.ends[side].do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
                self._pump()
            if done == 2:
                break

    def _pump(self) -> None:
        for side in (True, False):
            data = self.bios[side][1].read()
            if data:
                self.t += 0.0001
                src, dst = self.addrs[side]
                self.packets.append(Packet(self.t, "tcp", src, dst, data, self.seq[side]))
                self.seq[side] += len(data)
                self.bios[not side][0].write(data)

    def send(self, t: float, from_client: bool, data: bytes) -> None:
        self.t = max(self.t, t)
        self.ends[from_client].write(data)
        self._pump()
        try:
            self.ends[not from_client].read(1 << 16)
        except self._ssl.SSLWantReadError:
            pass
        self._pump()


def build_call(*, frames: int = 250, rekey_frame: int | None = 100, age_seconds: int = 5,
               a_imp: Impairments | None = None, b_imp: Impairments | None = None, transport: str = "udp",
               b_suite: SrtpSuite = SrtpSuite.AEAD_AES_128_GCM, b_mki: bool = True,
               alea_rekey: bool = False,
               addrs: tuple[Addr, Addr, Addr, Addr] = (A_SIP, B_SIP, A_RTP, B_RTP),
               keylog: Path | None = None, sdes_answer: str | None = None, call_id: str = "call-1@test",
               fresh_first: bool = False, ssrc_base: int = 0x11111111, tls12_ciphers: str | None = None) -> Call:
    """A call alice → bob of ``frames`` 20 ms frames each way, captured ``age_seconds`` after the vector's T."""
    a_imp, b_imp = a_imp or Impairments(), b_imp or Impairments()
    a_sip, b_sip, a_rtp, b_rtp = addrs
    call = Call()
    first = vector_imessage()
    t_ntp = IMessage.parse(first).timestamp.seconds
    t0 = float(t_ntp - NTP_UNIX_OFFSET + age_seconds)
    call.t0 = t0
    bob = Responder(user_keys("bob"), check_replay=False)
    if fresh_first:
        first = Initiator(user_keys("alice")).build(BOB, ntp_time=int(t0) + NTP_UNIX_OFFSET).data
    imessages = [first]
    rekey_at = t0 + 0.2 + rekey_frame * FRAME_S if rekey_frame is not None else None
    if rekey_at is not None:
        alice = user_keys("alice")
        data = Initiator(alice).build(BOB, ntp_time=int(rekey_at) + NTP_UNIX_OFFSET).data
        if alea_rekey:  # signed over everything but the SIGN payload header, as Alea/Softil do
            raw = IMessage.parse(data).raw
            data = raw[:-129] + EccsiSigner(alice.uid, alice.ssk, alice.pvt, alice.kms.kpak).sign(raw[:-131])
        imessages.append(data)
    call.imessages = imessages
    call.verified = [bob.process(m, claimed_sender=ALICE, now=None) for m in imessages]

    tcp_seq = {a_sip: 1000, b_sip: 5000}
    tls = TlsPipe(a_sip, b_sip, keylog, t0 - 0.05, tls12_ciphers) if transport == "tls" and keylog else None

    def sip(t: float, src: Addr, dst: Addr, data: bytes) -> None:
        if tls is not None:
            tls.send(t, src == a_sip, data)
            return
        if transport == "udp":
            call.packets.append(Packet(t, "udp", src, dst, data))
            return
        # two segments, written in reverse order, to exercise reassembly
        half = len(data) // 2
        seq = tcp_seq[src]
        call.packets.append(Packet(t + 0.0001, "tcp", src, dst, data[half:], seq + half))
        call.packets.append(Packet(t, "tcp", src, dst, data[:half], seq))
        tcp_seq[src] = seq + len(data)

    offered: list[sdes.CryptoAttribute] = []
    answered: sdes.CryptoAttribute | None = None
    if sdes_answer is not None:
        offered = [sdes.generate(1, "AEAD_AES_128_GCM"), sdes.generate(2, "AES_CM_128_HMAC_SHA1_80")]
        tag = next(c.tag for c in offered if c.suite == sdes_answer)
        answered = sdes.generate(tag, sdes_answer)
    offer = sdp(a_rtp[1], 1, 1, None if offered else first, offered)
    sip(t0, a_sip, b_sip, request("INVITE", 1, offer, call_id=call_id))
    sip(t0 + 0.05, b_sip, a_sip, response(200, "OK", "INVITE", 1,
                                          sdp(b_rtp[1], 2, 1, None, [answered] if answered else None), call_id=call_id))
    sip(t0 + 0.06, a_sip, b_sip, request("ACK", 1, call_id=call_id))
    answer_at = None
    if rekey_at is not None:
        sip(rekey_at, a_sip, b_sip, request("INVITE", 2, sdp(a_rtp[1], 1, 2, imessages[1]), call_id=call_id))
        answer_at = rekey_at + 0.05
        sip(answer_at, b_sip, a_sip, response(200, "OK", "INVITE", 2, sdp(b_rtp[1], 2, 2, None), call_id=call_id))
        sip(answer_at + 0.01, a_sip, b_sip, request("ACK", 2, call_id=call_id))
    end = t0 + 0.2 + frames * FRAME_S + 0.1
    sip(end, a_sip, b_sip, request("BYE", 3, call_id=call_id))
    sip(end + 0.02, b_sip, a_sip, response(200, "OK", "BYE", 3, call_id=call_id))
    if tls is not None:
        call.packets.extend(tls.packets)

    # Media: the offerer (alice) sends with CS 0, bob with CS 1 (TS 33.180 §7.4).
    for who, src, dst, cs, imp, phase, suite, use_mki in (
            ("alice", a_rtp, b_rtp, 0, a_imp, 0.0, SrtpSuite.AEAD_AES_128_GCM, True),
            ("bob", b_rtp, a_rtp, 1, b_imp, 0.007, b_suite, b_mki)):
        audio = chirp(frames * FRAME_S, f0=300 if who == "alice" else 500, f1=3000 if who == "alice" else 2500)
        call.audio[who] = audio
        codec = OpusCodec()
        senders = []
        if answered is not None:
            line = answered if who == "bob" else next(c for c in offered if c.tag == answered.tag)
            senders = [SrtpSender(SrtpSuite.from_name(line.suite), line.master_key, line.master_salt)]
        for v in call.verified if answered is None else []:
            m = v.srtp[cs]
            salt = m.master_salt
            if suite is SrtpSuite.AES_CM_128_HMAC_SHA1_80:
                from crypto.kdf import SALT_CONST, mikey_label, mikey_prf
                salt = mikey_prf(v.key, mikey_label(SALT_CONST, cs, v.csb_id, v.rand), 14)
            senders.append(SrtpSender(suite, m.master_key, salt, m.mki if use_mki else None))
        ssrc = ssrc_base if who == "alice" else ssrc_base * 2
        out: list[Packet] = []
        late_old = 0
        for i in range(frames):
            t = t0 + 0.2 + phase + i * FRAME_S + ((i * 7) % 5) * 0.001
            payload = codec.encode(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
            rtp = RtpPacket(PT, (1000 + i) & 0xFFFF, 5000 + i * FRAME_SAMPLES, ssrc, payload, i == 0).serialize()
            key = 0
            if answer_at is not None:
                switch = answer_at if who == "bob" else answer_at + 0.001  # bob on sending 200, alice on receiving
                if t >= switch:
                    key = 1
                    if t > answer_at + GRACE and late_old < imp.old_key_after_rekey:
                        key, late_old = 0, late_old + 1
                    elif t <= answer_at + GRACE and imp.old_key_after_rekey:
                        key = 0  # still in flight: allowed
            data = senders[key].protect(rtp)
            if i in imp.tamper:
                data = data[:20] + bytes([data[20] ^ 0x01]) + data[21:]
            if imp.drop_every and i % imp.drop_every == imp.drop_phase:
                continue
            out.append(Packet(t, "udp", src, dst, data))
            if i in imp.duplicate:
                out.append(Packet(t + 0.0005, "udp", src, dst, data))
        for i in imp.swap:
            idx = [k for k, p in enumerate(out) if p.payload[2:4] == ((1000 + i) & 0xFFFF).to_bytes(2, "big")][0]
            a, b = out[idx], out[idx + 1]
            out[idx] = Packet(a.time, "udp", src, dst, b.payload)
            out[idx + 1] = Packet(b.time, "udp", src, dst, a.payload)
        call.packets.extend(out)
    return call
