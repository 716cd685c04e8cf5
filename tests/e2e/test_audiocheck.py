"""The recording check used by the demo and the e2e tests: aligns either way, rejects silence and noise,
accepts speech that is there however degraded (quality is a figure, judged only by the benchmarks)."""

from __future__ import annotations

import numpy as np

from lab.audiocheck import compare


def test_alignment_both_ways_and_rejections() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(48000 * 3) * 3000).astype(np.int16)
    late = compare(x, np.concatenate([np.zeros(4800, np.int16), x]))
    assert late.delay_ms == 100.0 and late.correlation > 0.99 and late.ok()
    clipped = compare(x, x[9600:])                       # the first 200 ms never arrived
    assert clipped.delay_ms == -200.0 and 0.9 < clipped.correlation < 0.97
    assert not compare(x, np.zeros_like(x)).ok()
    assert not compare(x, (rng.standard_normal(48000 * 3) * 3000).astype(np.int16)).ok()
    assert not compare(x, x[::-1].copy()).ok()              # other audio of the same kind
    noisy = compare(x, (x + rng.standard_normal(len(x)) * 6000).astype(np.int16))
    assert noisy.ok() and noisy.correlation < 0.6            # degraded but present: passes
    stalled = np.concatenate([np.concatenate([x[i:i + 48000], np.zeros(2880, np.int16)])
                              for i in range(0, len(x), 48000)])  # 60 ms playout stall every second
    shifted = compare(x, stalled)
    assert shifted.ok() and shifted.speech > 0.95 and shifted.correlation < 0.6
    half = compare(x, np.concatenate([x[: len(x) // 2], np.zeros(len(x) - len(x) // 2, np.int16)]))
    assert not half.ok()                                     # a quarter of the speech or more missing
