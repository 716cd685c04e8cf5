"""The analysis as one self-contained HTML page: the ladder with MIKEY verdicts, streams, findings and a
plot of jitter and loss over time per stream (matplotlib, Agg backend, embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from softphone.analyze.analysis import Analysis
from softphone.analyze.report import addr, to_json, verdict_words

_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}th{background:#eee}
.ok{color:#070}.bad{color:#b00;font-weight:bold}li{margin:.2em 0}
.ladder td.span{text-align:center;white-space:nowrap}.arrow{font-family:monospace;line-height:1.1}
.ladder td{border-left:2px solid #99a;border-right:2px solid #99a}"""


def plot_png(a: Analysis) -> bytes | None:
    """Jitter (ms) and lost packets per second against capture time, one line per stream."""
    if not a.streams:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (jit, loss) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for st in a.streams:
        label = f"stream {st.number} ({st.receiver.peer} → {st.receiver.party})"
        series = st.stats.jitter_series
        if series:
            jit.plot([t - a.start for t, _ in series], [j for _, j in series], label=label, linewidth=1)
        ls = st.stats.loss_series()
        if ls:
            ls.append((ls[-1][0] + 1.0, ls[-1][1]))  # close the last bin
            loss.step([t - a.start for t, _ in ls], [n for _, n in ls], where="post", label=label, linewidth=1)
    jit.set_ylabel("jitter (ms, RFC 3550)")
    loss.set_ylabel("lost packets / s")
    loss.set_xlabel("capture time (s)")
    jit.legend(fontsize=8, loc="upper right")
    jit.grid(alpha=.3)
    loss.grid(alpha=.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def render(a: Analysis) -> str:
    e = html.escape
    j = to_json(a)
    by_number = {r.entry.number: r for r in a.imessages}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Capture analysis: {e(a.capture)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>Capture analysis</h1>",
             f"<p>{e(a.capture)}: {a.packets} packets, {len(a.dialogs)} call(s), {len(a.streams)} stream(s)</p>"]
    parts.append("<h2>Findings</h2><ul>" + ("".join(f"<li class='bad'>{e(f)}</li>" for f in a.findings)
                                             or "<li class='ok'>none</li>") + "</ul>")
    for i, d in enumerate(a.dialogs, 1):
        ends: list[str] = []  # one lifeline per SIP address, in order of appearance
        for m in d.entries:
            for x in (addr(m.src), addr(m.dst)):
                if x not in ends:
                    ends.append(x)
        parts.append(f"<h2>Call {i}: {e(d.from_uri)} → {e(d.to_uri)}</h2><p>Call-ID {e(d.call_id)}</p>"
                     "<table class='ladder'><tr><th>#</th><th>time (s)</th>"
                     + "".join(f"<th>{e(x)}</th>" for x in ends) + "<th>MIKEY</th></tr>")
        for m in d.entries:
            rec = by_number.get(m.number)
            verdict = ""
            if rec is not None:
                good = rec.verdict.description.get("valid")
                verdict = f"<span class='{'ok' if good else 'bad'}'>{e(verdict_words(rec))}</span>"
            lo, hi = sorted((ends.index(addr(m.src)), ends.index(addr(m.dst))))
            rightwards = ends.index(addr(m.src)) == lo
            label = f"<b>{e(m.label)}</b> <small>{e(m.transport)}</small>"
            arrow = (f"<div class='arrow'>{label}<br>{'─' * 6 * (hi - lo + 1)}▶</div>" if rightwards else
                     f"<div class='arrow'>{label}<br>◀{'─' * 6 * (hi - lo + 1)}</div>")
            cells = "<td></td>" * lo + f"<td colspan='{hi - lo + 1}' class='span'>{arrow}</td>" + \
                "<td></td>" * (len(ends) - hi - 1)
            parts.append(f"<tr><td>{m.number}</td><td>{m.time - a.start:.3f}</td>{cells}<td>{verdict}</td></tr>")
        parts.append("</table>")
    if j["streams"]:
        cols = ["number", "ssrc", "direction", "path", "codec", "srtp", "packets", "lost", "duplicates", "reordered",
                "jitter_ms", "auth_failures", "replays", "time (s)", "wav"]
        parts.append("<h2>Streams</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
        for s in j["streams"]:
            row = {**s, "ssrc": f"{s['ssrc']:08x}", "direction": f"{s['sender']} → {s['receiver']}",
                   "path": f"{s['src']} → {s['dst']}", "time (s)": f"{s['first']:.3f}–{s['last']:.3f}",
                   "wav": Path(s["wav"]).name if s["wav"] else ""}
            parts.append("<tr>" + "".join(f"<td>{e('' if row[c] is None else str(row[c]))}</td>" for c in cols)
                         + "</tr>")
        parts.append("</table>")
    png = plot_png(a)
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>Jitter and loss over time</h2><img alt='jitter and loss per stream' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(a: Analysis, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(a), encoding="utf-8")
