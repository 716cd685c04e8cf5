"""The analysis as one JSON object (field names are a contract for scripts) and as a text ladder."""

from __future__ import annotations

from typing import Any

from softphone.analyze.analysis import Analysis, ImessageRecord
from softphone.analyze.dialogs import LadderEntry
from softphone.analyze.pcap import Addr
from softphone.analyze.streams import Stream

SECRET_FIELDS = ("key", "srtp")


def addr(a: Addr) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


def _imessage_of(a: Analysis) -> dict[int, int]:
    return {rec.entry.number: i for i, rec in enumerate(a.imessages)}


def _message(e: LadderEntry, t0: float, imsg: int | None) -> dict[str, Any]:
    num, method = e.cseq
    return {"number": e.number, "time": round(e.time - t0, 6), "transport": e.transport, "src": addr(e.src),
            "dst": addr(e.dst), "label": e.label, "cseq": f"{num} {method}", "imessage": imsg}


def _imessage(rec: ImessageRecord, show_secrets: bool) -> dict[str, Any]:
    d = {k: v for k, v in rec.verdict.description.items() if show_secrets or k not in SECRET_FIELDS}
    return {"message": rec.entry.number, "method": rec.entry.label, "call_id": rec.dialog.call_id, **d}


def _stream(st: Stream, t0: float) -> dict[str, Any]:
    spec = st.codec
    s = st.stats
    return {
        "number": st.number, "ssrc": st.ssrc, "src": addr(st.src), "dst": addr(st.dst),
        "codec": spec.name if spec else None, "packets": s.packets, "lost": s.lost, "duplicates": s.duplicates,
        "reordered": s.reordered, "jitter_ms": round(s.jitter_ms, 3), "auth_failures": st.auth_failures,
        "replays": st.replays, "old_key_packets": st.old_key,
        "first": round((s.first or t0) - t0, 6), "last": round((s.last or t0) - t0, 6),
        "srtp": st.layout.value[0] if st.layout else None, "mki": bool(st.layout.mki) if st.layout else None,
        "key_ids": [k.key_id for k in st.receiver.keys], "sender": st.receiver.peer, "receiver": st.receiver.party,
        "wav": st.wav,
    }


def to_json(a: Analysis, show_secrets: bool = False) -> dict[str, Any]:
    index = _imessage_of(a)
    return {
        "capture": a.capture,
        "packets": a.packets,
        "dialogs": [{"call_id": d.call_id, "from": d.from_uri, "to": d.to_uri,
                     "messages": [_message(e, a.start, index.get(e.number)) for e in d.entries]} for d in a.dialogs],
        "imessages": [_imessage(r, show_secrets) for r in a.imessages],
        "streams": [_stream(s, a.start) for s in a.streams],
        "findings": list(a.findings),
    }


def verdict_words(rec: ImessageRecord) -> str:
    d = rec.verdict.description
    if not d.get("valid"):
        return f"I_MESSAGE REJECTED: {d.get('error')}"
    if not d.get("verified"):
        return f"I_MESSAGE decoded (not verified) {d.get('key_type')} {d.get('csb_id')}"
    return (f"I_MESSAGE valid: {d.get('key_type')} {d.get('key_id')} {d.get('initiator')} → {d.get('responder')}, "
            f"signed {d.get('signature_scope')}, T {d.get('timestamp')}")


def text(a: Analysis) -> str:
    lines: list[str] = [f"capture {a.capture}: {a.packets} packets, {len(a.dialogs)} call(s), "
                        f"{len(a.streams)} stream(s)"]
    by_number = {r.entry.number: r for r in a.imessages}
    for i, d in enumerate(a.dialogs, 1):
        lines += ["", f"call {i}  Call-ID {d.call_id}  {d.from_uri} → {d.to_uri}"]
        for e in d.entries:
            line = (f"  #{e.number:<3} {e.time - a.start:9.3f}  {addr(e.src):>22} → {addr(e.dst):<22} "
                    f"{e.transport:<4} {e.label}")
            rec = by_number.get(e.number)
            if rec is not None:
                line += f"   [{verdict_words(rec)}]"
            lines.append(line)
    if a.streams:
        lines += ["", "streams"]
        for st in a.streams:
            j = _stream(st, a.start)
            lines.append(
                f"  {st.number}  ssrc {st.ssrc:08x}  {j['src']} → {j['dst']}  {j['codec']}  {j['srtp'] or '-'}  "
                f"packets {j['packets']} lost {j['lost']} dup {j['duplicates']} reord {j['reordered']} "
                f"jitter {j['jitter_ms']:.2f} ms auth-fail {j['auth_failures']} replay {j['replays']}  "
                f"{j['first']:.3f}–{j['last']:.3f} s" + (f"  wav {j['wav']}" if j["wav"] else ""))
    lines += ["", "findings"] + ([f"  - {f}" for f in a.findings] or ["  (none)"])
    return "\n".join(lines) + "\n"
