"""RTP/SRTP streams found from the SDP of each call, opened with the derived keys, counted and decoded.

Where each party receives is its SDP's ``c=``/``m=`` address; a UDP packet to such an address that
parses as RTP (not RTCP) belongs to the stream of its (SSRC, source, destination). A MIKEY-SAKKE
offer keys both directions (TS 33.180 §7.4): the offerer sends with CS 0, the answerer with CS 1. A
later offer with a new I_MESSAGE adds a key that the sender must use from the answer on; packets
that open only under an older key after that (plus :data:`REKEY_GRACE` seconds) failed
authentication as far as the receiver is concerned, and are counted as such.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from softphone.analyze.dialogs import Dialog, LadderEntry, OfferAnswer
from softphone.analyze.keys import Verdict
from softphone.analyze.pcap import Addr, Packet
from softphone.analyze.srtp import (
    Layout,
    Opened,
    Outcome,
    StreamKey,
    layout_for,
    mikey_stream_key,
    open_packet,
    sdes_stream_key,
)
from softphone.analyze.stats import RtpStats
from softphone.calls import sdes
from softphone.media.codecs import CodecSpec
from softphone.media.rtp import is_rtcp
from softphone.sip.sdp import Media, SessionDescription

REKEY_GRACE = 0.5
STATIC_PT = {0: CodecSpec(0, "PCMU", 8000), 8: CodecSpec(8, "PCMA", 8000)}


@dataclass
class Receiver:
    """One party's receiving address from its SDP, and the keys its peer sends with."""

    addr: Addr
    party: str
    peer: str
    dialog: Dialog
    proto: str
    codecs: dict[int, CodecSpec]
    keys: list[StreamKey] = field(default_factory=list)
    start: float = 0.0  # when its call first described it
    keyed_by_mikey: bool = False
    sdes_suite: str | None = None  # the suite of the a=crypto line protecting what arrives here
    key_error: str | None = None


@dataclass
class Stream:
    """One SSRC from one source to one receiver."""

    number: int
    ssrc: int
    src: Addr
    dst: Addr
    receiver: Receiver
    stats: RtpStats
    payload_types: dict[int, int] = field(default_factory=dict)
    auth_failures: int = 0
    replays: int = 0
    old_key: int = 0
    layout: Layout | None = None
    frames: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # ext seq → (pt, payload)
    wav: str | None = None
    first_failure_after_rekey: float | None = None

    @property
    def codec(self) -> CodecSpec | None:
        audio = [(n, pt) for pt, n in self.payload_types.items() if pt in self.receiver.codecs
                 and self.receiver.codecs[pt].name.lower() != "telephone-event"]
        return self.receiver.codecs[max(audio)[1]] if audio else None


def _media(sdp: SessionDescription) -> Media | None:
    return next((m for m in sdp.media if m.media == "audio" and m.port), None)


def _codecs(*sdps: SessionDescription) -> dict[int, CodecSpec]:
    out: dict[int, CodecSpec] = dict(STATIC_PT)
    for sdp in sdps:
        m = _media(sdp)
        if m is None:
            continue
        for pt, enc in m.rtpmap().items():
            parts = enc.split("/")
            try:
                out[int(pt)] = CodecSpec(int(pt), parts[0], int(parts[1]) if len(parts) > 1 else 8000,
                                         int(parts[2]) if len(parts) > 2 else 1)
            except ValueError:
                continue
    return out


def receivers(dialogs: list[Dialog], verdicts: dict[int, Verdict]) -> dict[Addr, list[Receiver]]:
    """Every receiving address with the keys of its incoming direction (``verdicts``: by offer number).

    An address reused by later calls has one receiver per call, in the order the calls began.
    """
    out: dict[Addr, list[Receiver]] = {}
    for dlg in dialogs:
        for ex in dlg.exchanges():
            offer_sdp = ex.offer.sdp
            answer_sdp = ex.answer.sdp if ex.answer is not None else None
            assert offer_sdp is not None
            sides: list[tuple[LadderEntry, SessionDescription, int]] = [(ex.offer, offer_sdp, 1)]
            if ex.answer is not None and answer_sdp is not None:
                sides.append((ex.answer, answer_sdp, 0))
            codecs = _codecs(*(s for _, s, _ in sides))
            verdict = verdicts.get(ex.offer.number)
            offerer, answerer = ex.offer.sender, ex.offer.receiver
            for entry, sdp, cs_in in sides:
                media = _media(sdp)
                host = sdp.connection_address(media) if media else None
                if media is None or host is None:
                    continue
                addr = (host, media.port)
                party, peer = (offerer, answerer) if entry is ex.offer else (answerer, offerer)
                at = out.setdefault(addr, [])
                rx = next((r for r in at if r.dialog is dlg), None)
                if rx is None:
                    rx = Receiver(addr, party, peer, dlg, media.proto, codecs, start=entry.time)
                    at.append(rx)
                rx.codecs.update(codecs)
                if verdict is None:
                    _sdes_keys(rx, ex, entry is ex.offer)
                    continue
                rx.keyed_by_mikey = True
                v = verdict.verified
                if v is None:
                    rx.key_error = verdict.description.get("error")
                    continue
                if cs_in not in v.srtp:
                    rx.key_error = "the I_MESSAGE carries no private-call key (PCK) for this direction"
                    continue
                m = v.srtp[cs_in]
                if any(k.key == m.master_key for k in rx.keys):
                    continue  # the same I_MESSAGE offered again (hold, resume, refresh)
                effective = ex.answer.time if ex.answer is not None else ex.offer.time
                rx.keys.append(mikey_stream_key(v.key, cs_in, v.csb_id, v.rand, m.master_key, m.master_salt, m.mki,
                                                f"{v.key_id:08x}", ex.offer.number, ex.offer.time, effective))
    return out


def _crypto_lines(sdp: SessionDescription | None) -> list[sdes.CryptoAttribute]:
    media = _media(sdp) if sdp is not None else None
    out = []
    for value in media.attributes.get_all("crypto") if media is not None else []:
        try:
            out.append(sdes.parse(value))
        except sdes.SdesError:
            continue
    return out


def _sdes_keys(rx: Receiver, ex: OfferAnswer, at_offerer: bool) -> None:
    """SDES (RFC 4568): each side's a=crypto line protects what that side sends; the answer picks the tag."""
    offered = _crypto_lines(ex.offer.sdp)
    answered = _crypto_lines(ex.answer.sdp if ex.answer is not None else None)
    if not offered and not answered:
        return
    if not answered or ex.answer is None:
        rx.key_error = "SDES: the answer has no usable a=crypto line"
        return
    theirs = answered[0]
    ours = next((c for c in offered if c.tag == theirs.tag), None)
    if ours is None:
        rx.key_error = f"SDES: the answer's tag {theirs.tag} was not offered"
        return
    line = theirs if at_offerer else ours  # what arrives at the offerer was keyed by the answerer's line
    if layout_for(line.suite, line.mki is not None) is None:
        rx.key_error = f"SDES suite {line.suite} is not one the analyser opens"
        return
    rx.sdes_suite = line.suite
    if any(k.key == line.master_key for k in rx.keys):
        return
    rx.keys.append(sdes_stream_key(line.suite, line.master_key, line.master_salt, line.mki, line.tag,
                                   ex.offer.number, ex.offer.time, ex.answer.time))


def _rtp_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(payload type, sequence, timestamp, SSRC) of an RTP packet, or ``None``."""
    if len(data) < 12 or data[0] >> 6 != 2 or is_rtcp(data):
        return None
    b1, seq, ts, ssrc = struct.unpack_from("!BHII", data, 1)
    return b1 & 0x7F, seq, ts, ssrc


def _payload(rtp: bytes) -> bytes:
    cc = rtp[0] & 0x0F
    off = 12 + 4 * cc
    if rtp[0] & 0x10 and len(rtp) >= off + 4:
        off += 4 + 4 * struct.unpack_from("!H", rtp, off + 2)[0]
    end = len(rtp)
    if rtp[0] & 0x20 and rtp:
        end -= rtp[-1]
    return rtp[off:end] if off <= end else b""


def _current(keys: list[StreamKey], t: float) -> StreamKey:
    started = [k for k in keys if k.start <= t]
    return started[-1] if started else keys[0]


def _open(stream: Stream, data: bytes, t: float) -> Opened:
    keys = stream.receiver.keys
    current = _current(keys, t)
    layouts = [stream.layout] if stream.layout is not None else list(Layout)
    opened, layout = open_packet(data, keys, current, layouts)
    if opened.outcome is Outcome.OK and stream.layout is None:
        stream.layout = layout
    if opened.outcome is Outcome.OK and opened.key is not current:
        # an older key: fine while the answer is in flight, a failure once the new key is in force
        if t > current.effective + REKEY_GRACE and opened.key is not None and opened.key.start < current.start:
            stream.old_key += 1
            if stream.first_failure_after_rekey is None:
                stream.first_failure_after_rekey = t
            return Opened(Outcome.AUTH)
    return opened


def _receiver(candidates: list[Receiver] | None, t: float) -> Receiver | None:
    """The receiver of the latest call at that address that had begun by ``t``."""
    if not candidates:
        return None
    begun = [r for r in candidates if r.start <= t]
    return begun[-1] if begun else candidates[0]


def analyse_streams(packets: list[Packet], rx_by_addr: dict[Addr, list[Receiver]]) -> list[Stream]:
    """Streams in order of their first packet, with stats, SRTP verdicts and the accepted payloads."""
    streams: dict[tuple[int, Addr, Addr, int], Stream] = {}
    for pkt in packets:
        if pkt.transport != "udp":
            continue
        rx = _receiver(rx_by_addr.get(pkt.dst), pkt.time)
        if rx is None:
            continue
        head = _rtp_header(pkt.payload)
        if head is None:
            continue
        pt, seq, ts, ssrc = head
        key = (ssrc, pkt.src, pkt.dst, id(rx))
        st = streams.get(key)
        if st is None:
            spec = rx.codecs.get(pt)
            st = streams[key] = Stream(len(streams) + 1, ssrc, pkt.src, pkt.dst, rx,
                                       RtpStats(spec.clock_rate if spec else 8000))
        ext = st.stats.add(seq, ts, pkt.time)
        st.payload_types[pt] = st.payload_types.get(pt, 0) + 1
        if "SAVP" not in rx.proto:
            rtp: bytes | None = pkt.payload
        elif not rx.keys:
            rtp = None
        else:
            opened = _open(st, pkt.payload, pkt.time)
            if opened.outcome is Outcome.AUTH:
                st.auth_failures += 1
            elif opened.outcome is Outcome.REPLAY:
                st.replays += 1
            rtp = opened.rtp
        if rtp is not None and ext not in st.frames:
            st.frames[ext] = (pt, _payload(rtp))
    return list(streams.values())


UNMATCHED_MIN_PACKETS = 20


def unmatched_rtp(packets: list[Packet], rx_by_addr: dict[Addr, list[Receiver]]) -> dict[tuple[Addr, Addr], int]:
    """UDP flows of RTP-looking packets to addresses no SDP in the capture describes (at least
    :data:`UNMATCHED_MIN_PACKETS`): media whose signalling is missing, or whose address a NAT rewrote."""
    counts: dict[tuple[Addr, Addr], int] = {}
    for pkt in packets:
        if pkt.transport == "udp" and pkt.dst not in rx_by_addr and _rtp_header(pkt.payload) is not None:
            counts[(pkt.src, pkt.dst)] = counts.get((pkt.src, pkt.dst), 0) + 1
    return {flow: n for flow, n in counts.items() if n >= UNMATCHED_MIN_PACKETS}
