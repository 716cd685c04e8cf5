"""Does a recording carry what was played? Alignment by cross-correlation, then PESQ (ITU-T P.862).

Used by the demo, the end-to-end tests and the call benchmark; numpy/scipy/pesq only, no I/O. A real-time
call on a shared machine is only judged on whether the speech is there (:meth:`Match.ok`, a low
correlation bar that silence, noise or the wrong audio do not reach); how good it sounds depends on CPU
scheduling as much as on the phone, so PESQ is reported as a figure and measured by ``scripts/bench``.

Whether speech is there is judged per half-second segment (:attr:`Match.speech`), each aligned on its own
near the overall delay: a playout that stalled or skipped a frame shifts everything after it, which lowers
the single whole-recording ``correlation`` without making the speech any less present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import correlate, resample_poly

from softphone.media.codecs import SAMPLE_RATE

SPEECH_PRESENT = 0.3  # silence, unrelated noise or other speech correlate at about 0


@dataclass(frozen=True)
class Match:
    delay_ms: float        # how much later the recording carries the played signal
    correlation: float     # normalised correlation of the aligned signals (1.0 = identical)
    pesq_mos: float | None  # wide-band PESQ MOS-LQO of the aligned recording (a figure, never judged here)
    speech: float = 0.0    # median correlation of the played speech's segments, each aligned on its own

    def ok(self, min_correlation: float = SPEECH_PRESENT) -> bool:
        """The played speech is present in the recording (whatever its quality)."""
        return self.speech >= min_correlation


SEGMENT = 8000  # 0.5 s at 16 kHz
SLACK = 8000    # each segment is looked for within ±0.5 s of where the overall alignment puts it


def _segment_correlation(ref: np.ndarray, deg: np.ndarray, lag: int) -> float:
    """Median over the voiced segments of ``ref`` of the best normalised correlation near ``lag``."""
    loud = 0.25 * float(np.sqrt(np.mean(ref ** 2)))
    scores = []
    for start in range(0, len(ref) - SEGMENT + 1, SEGMENT):
        seg = ref[start:start + SEGMENT]
        seg_norm = float(np.linalg.norm(seg))
        if seg_norm / np.sqrt(SEGMENT) < loud:
            continue  # a pause: nothing to find
        lo = max(0, start + lag - SLACK)
        window = deg[lo:start + lag + SEGMENT + SLACK]
        if len(window) < SEGMENT:
            scores.append(0.0)
            continue
        xc = correlate(window, seg, mode="valid", method="fft")
        energy = np.concatenate([[0.0], np.cumsum(window ** 2)])
        norms = np.sqrt(np.maximum(energy[SEGMENT:] - energy[:-SEGMENT], 0.0)) * seg_norm
        scores.append(float(np.max(np.where(norms > 0, xc / np.maximum(norms, 1e-9), 0.0))))
    return float(np.percentile(scores, 25)) if scores else 0.0


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    g = np.gcd(rate, 16000)
    return resample_poly(x.astype(np.float64), 16000 // g, rate // g)


def compare(played: np.ndarray, recorded: np.ndarray, rate: int = SAMPLE_RATE) -> Match:
    """Align ``recorded`` to ``played`` (both int16 at ``rate``) and score the match."""
    ref = _to_16k(played, rate)
    deg = _to_16k(recorded, rate)
    if len(ref) == 0 or len(deg) < len(ref) // 2 or not np.any(deg):
        return Match(0.0, 0.0, None)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(deg))))
    xc = np.fft.irfft(np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n)), n)
    # lags 0..len(deg)-1: the recording starts late; negative lags (the circular tail): it missed the
    # first samples of what was played (e.g. media sent before the peer had the answer's keys).
    lags = np.concatenate([np.arange(len(deg)), np.arange(-(len(ref) - 1), 0)])
    values = np.concatenate([xc[: len(deg)], xc[n - (len(ref) - 1):]])
    lag = int(lags[int(np.argmax(values))])
    if lag >= 0:
        aligned = deg[lag: lag + len(ref)]
    else:  # the missed start counts as silence, so it lowers the score
        aligned = np.concatenate([np.zeros(-lag), deg[: len(ref) + lag]])
    if len(aligned) < len(ref):
        aligned = np.concatenate([aligned, np.zeros(len(ref) - len(aligned))])
    denom = float(np.linalg.norm(ref) * np.linalg.norm(aligned))
    corr = float(np.dot(ref, aligned) / denom) if denom else 0.0
    try:
        from pesq import pesq
        mos: float | None = float(pesq(16000, ref.astype(np.float32), aligned.astype(np.float32), "wb"))
    except Exception:  # pesq raises on silence/too short input; correlation still decides
        mos = None
    speech = _segment_correlation(ref, deg, lag)
    return Match(round(lag / 16.0, 1), round(corr, 4), None if mos is None else round(mos, 2), round(speech, 4))
