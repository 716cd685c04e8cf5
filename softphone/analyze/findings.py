"""Findings in words a tester can act on, from a finished analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crypto.mikey.message import SCOPE_STANDARD
from crypto.mikey.verify import DEFAULT_WINDOW_SECONDS
from softphone.analyze.srtp import Layout

if TYPE_CHECKING:
    from softphone.analyze.analysis import Analysis

SCOPE_WORDS = {"without-sign-header": "the Alea span (without the SIGN payload header)"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def profile_findings(a: Analysis) -> list[str]:
    """What the calls did that the chosen profile (``--profile``) does not allow."""
    prof = a.profile
    if prof is None:
        return []
    out: list[str] = []
    with_imessage = {r.entry.number for r in a.imessages}
    for dlg in a.dialogs:
        bad = next((e for e in dlg.entries if e.transport != prof.transport), None)
        if bad is not None:
            out.append(f"{bad.label} #{bad.number} went over {bad.transport.upper()} although profile {prof.name} "
                       f"requires SIP over {prof.transport.upper()}")
        for ex in dlg.exchanges():
            offer, answer = ex.offer, ex.answer
            media = next((m for m in offer.sdp.media if m.media == "audio"), None) if offer.sdp else None
            crypto = bool(media and media.attributes.get_all("crypto"))
            where = f"{offer.label} #{offer.number}"
            if prof.keying == "mikey-sakke" and offer.number not in with_imessage:
                what = "SDES keys (a=crypto)" if crypto else "no MIKEY I_MESSAGE"
                out.append(f"{where} from {offer.sender} offers {what} although profile {prof.name} "
                           f"requires MIKEY-SAKKE")
            if media is not None and "SAVP" not in media.proto and prof.keying_mandatory:
                out.append(f"{where} offers {media.proto} (clear RTP) although profile {prof.name} requires SRTP")
            if answer is not None and answer.sdp is not None:
                am = next((m for m in answer.sdp.media if m.media == "audio"), None)
                for value in am.attributes.get_all("crypto") if am is not None else []:
                    suite = value.split()[1] if len(value.split()) > 1 else "?"
                    if suite not in prof.srtp_suites:
                        out.append(f"{answer.sender} answered with {suite} although profile {prof.name} requires "
                                   f"{' or '.join(prof.srtp_suites)}")
    return out


def findings(a: Analysis) -> list[str]:
    out: list[str] = profile_findings(a)
    for rec in a.imessages:
        d = rec.verdict.description
        where = f"{rec.entry.label} #{rec.entry.number}"
        if not d.get("valid"):
            out.append(f"{where} carries an I_MESSAGE that was rejected: {d.get('error')}")
        elif d.get("verified") is False and d.get("error") is None:
            out.append(f"{where} carries an I_MESSAGE that was decoded but not verified (no key set for its responder)")
        scope = d.get("signature_scope")
        if scope and scope != SCOPE_STANDARD:
            out.append(f"{where} carries an I_MESSAGE signed over {SCOPE_WORDS.get(scope, scope)}")
        age = d.get("age_seconds")
        if isinstance(age, int) and abs(age) > DEFAULT_WINDOW_SECONDS:
            when = f"{age} s old" if age > 0 else f"{-age} s in the future"
            out.append(f"{where}: T is {when} at capture time (receivers accept ±{DEFAULT_WINDOW_SECONDS} s)")
    for st in a.streams:
        rx = st.receiver
        name = f"stream {st.number} ({rx.peer} → {rx.party})"
        if st.layout is not None and rx.keyed_by_mikey and not st.layout.suite.aead:
            out.append(f"{name}: {rx.peer} sent with AES_CM_128_HMAC_SHA1_80 although MIKEY-SAKKE "
                       f"(TS 33.180) requires AEAD_AES_128_GCM")
        if st.layout is not None and rx.keyed_by_mikey and not st.layout.mki:
            out.append(f"{name}: SRTP packets carry no MKI (the key ID is expected as a 4-octet MKI)")
        if "SAVP" in rx.proto and not rx.keys:
            why = rx.key_error or "no key for it (no verified I_MESSAGE or SDES key)"
            out.append(f"{name}: not decrypted: {why}")
        elif "SAVP" not in rx.proto:
            out.append(f"{name}: plain RTP ({rx.proto}), not SRTP")
        if st.old_key:
            out.append(f"{name}: {_plural(st.old_key, 'packet')} failed authentication after a re-INVITE — "
                       f"sender kept the old key")
        other = st.auth_failures - st.old_key
        if other and rx.keys:
            if st.layout is None:
                out.append(f"{name}: none of {_plural(other, 'packet')} authenticated under the derived keys "
                           f"(tried {', '.join(x.name for x in Layout)})")
            else:
                out.append(f"{name}: {_plural(other, 'packet')} failed SRTP authentication")
        if st.replays:
            out.append(f"{name}: {_plural(st.replays, 'packet')} rejected as replayed by the SRTP replay check")
        if st.stats.lost:
            pct = 100.0 * st.stats.lost / max(1, st.stats.expected)
            out.append(f"{name}: {st.stats.lost} of {st.stats.expected} packets lost ({pct:.1f} %)")
    for (src, dst), n in a.unmatched.items():
        out.append(f"UDP {src[0]}:{src[1]} → {dst[0]}:{dst[1]}: {n} RTP-like packets that no SDP in the capture "
                   f"describes (signalling not captured, or an address rewritten by a NAT)")
    return out
