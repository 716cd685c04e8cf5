"""Measured audio quality: alignment by cross-correlation and wideband PESQ (ITU-T P.862.2).

Used by the tests and ``scripts/bench media``; needs scipy and the ``pesq`` package (test dependencies),
imported lazily so the phone itself does not.
"""

from __future__ import annotations

import numpy as np


def align(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation of ``received`` against ``sent`` and the lag (samples, ≥ 0)."""
    from scipy.signal import correlate

    s = sent.astype(np.float64)
    r = received.astype(np.float64)
    lag = max(0, int(np.argmax(correlate(r, s, mode="full", method="fft"))) - (len(s) - 1))
    seg = r[lag:lag + len(s)]
    n = min(len(seg), len(s))
    if n < 2 or not np.any(seg[:n]):
        return 0.0, lag
    return float(np.corrcoef(seg[:n], s[:n])[0, 1]), lag


def pesq_wb(sent: np.ndarray, received: np.ndarray) -> float:
    """Wideband PESQ MOS-LQO of ``received`` against ``sent`` (both 48 kHz), aligned, evaluated at 16 kHz."""
    from pesq import pesq
    from scipy.signal import resample_poly

    _, lag = align(sent, received)
    seg = received[lag:lag + len(sent)]
    n = min(len(seg), len(sent))
    ref = resample_poly(sent[:n].astype(np.float64), 1, 3)
    deg = resample_poly(seg[:n].astype(np.float64), 1, 3)
    return float(pesq(16000, ref, deg, "wb"))
