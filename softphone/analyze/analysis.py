"""The whole analysis of one capture: packets → SIP ladder → I_MESSAGE verdicts → streams → findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crypto.mikey.errors import MikeyError
from crypto.mikey.inspect import empty_description
from softphone.analyze.audio import decode_frames, write_wav
from softphone.analyze.dialogs import Dialog, LadderEntry, build_dialogs, claimed_sender
from softphone.analyze.findings import findings
from softphone.analyze.keys import KeyRing, Verdict, find_imessage, verify
from softphone.analyze.pcap import Addr, Packet, read_packets
from softphone.analyze.reassembly import sip_events
from softphone.analyze.streams import Stream, analyse_streams, receivers, unmatched_rtp
from softphone.analyze.tls import read_keylog
from softphone.calls.profile import Profile


@dataclass
class ImessageRecord:
    """One ``a=key-mgmt:mikey`` seen in the capture, and its verdict."""

    entry: LadderEntry
    dialog: Dialog
    verdict: Verdict


@dataclass
class Analysis:
    capture: str
    packets: int
    dialogs: list[Dialog]
    imessages: list[ImessageRecord]
    streams: list[Stream]
    findings: list[str] = field(default_factory=list)
    start: float = 0.0
    profile: Profile | None = None
    unmatched: dict[tuple[Addr, Addr], int] = field(default_factory=dict)


def analyse_packets(packets: list[Packet], ring: KeyRing, out_dir: Path | None = None,
                    capture: str = "", keylog: dict[tuple[str, bytes], bytes] | None = None,
                    profile: Profile | None = None) -> Analysis:
    notes: list[str] = []
    dialogs = build_dialogs(sip_events(packets, keylog, notes))
    records: list[ImessageRecord] = []
    by_offer: dict[int, Verdict] = {}
    cache: dict[tuple[bytes, str | None], Verdict] = {}
    for dlg in dialogs:
        for entry in dlg.entries:
            if entry.sdp is None:
                continue
            try:
                data = find_imessage(entry.sdp)
            except MikeyError as exc:
                verdict = Verdict(empty_description(str(exc)))
            else:
                if data is None:
                    continue
                claimed = claimed_sender(entry.message)
                verdict = cache.get((data, claimed)) or verify(data, claimed, ring, entry.time)
                cache[(data, claimed)] = verdict
            records.append(ImessageRecord(entry, dlg, verdict))
            by_offer[entry.number] = verdict
    rx = receivers(dialogs, by_offer)
    streams = analyse_streams(packets, rx)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for st in streams:
            spec = st.codec
            if spec is None or not st.frames:
                continue
            path = out_dir / f"stream{st.number}-{st.ssrc:08x}.wav"
            write_wav(path, decode_frames(spec, st.frames))
            st.wav = str(path)
    records.sort(key=lambda r: r.entry.number)
    result = Analysis(capture, len(packets), dialogs, records, streams,
                      start=min((p.time for p in packets), default=0.0), profile=profile,
                      unmatched=unmatched_rtp(packets, rx))
    result.findings = notes + findings(result)
    return result


def analyse(path: Path, ring: KeyRing, out_dir: Path | None = None, keylog: Path | None = None,
            profile: Profile | None = None) -> Analysis:
    """Analyse the capture at ``path`` (raises :class:`softphone.analyze.pcap.CaptureError`,
    :class:`softphone.analyze.tls.KeyLogError`)."""
    secrets = read_keylog(keylog) if keylog is not None else None
    return analyse_packets(read_packets(path), ring, out_dir, str(path), secrets, profile)
