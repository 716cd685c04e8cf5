"""The virtual clock and the simulated network the deterministic media tests run on."""

from __future__ import annotations

import numpy as np
import pytest

from softphone.media.audio import ArraySink, ArraySource
from softphone.media.clock import VirtualClock
from softphone.media.errors import MediaError
from softphone.media.session import MediaSession
from softphone.media.transport import Link, SimNetwork
from tests.media.conftest import sim_configs


def test_virtual_clock_runs_callbacks_in_time_then_scheduling_order() -> None:
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    clock.call_at(0.5, lambda: seen.append(("b", clock.time())))
    clock.call_at(0.2, lambda: seen.append(("a", clock.time())))
    clock.call_at(0.5, lambda: seen.append(("c", clock.time())))
    clock.call_at(0.3, lambda: seen.append(("cancelled", clock.time()))).cancel()
    clock.call_at(0.1, lambda: clock.call_later(0.1, lambda: seen.append(("nested", clock.time()))))
    clock.advance(0.4)
    assert seen == [("a", 0.2), ("nested", pytest.approx(0.2))] and clock.time() == 0.4
    clock.advance(1.0)
    assert [n for n, _ in seen] == ["a", "nested", "b", "c"] and clock.pending == 0
    clock.call_at(0.0, lambda: seen.append(("past", clock.time())))  # in the past: runs at once
    clock.advance(0.0)
    assert seen[-1] == ("past", 1.4) and clock.wallclock() == 1_700_000_001.4


async def test_sim_network_is_seeded_and_impairs_each_direction() -> None:
    outcomes = []
    for _ in range(2):
        clock = VirtualClock()
        net = SimNetwork(clock, Link(loss=0.3, delay_ms=5, jitter_ms=40, duplicate=0.1), seed=4)
        got: list[tuple[float, bytes]] = []
        await net.open(("10.0.0.2", 9), lambda d, s, got=got, clock=clock: got.append((clock.time(), d)))
        for i in range(200):
            net.send(("10.0.0.1", 9), ("10.0.0.2", 9), i.to_bytes(2, "big"))
        clock.advance(1.0)
        s = net.stats(("10.0.0.1", 9), ("10.0.0.2", 9))
        assert s.sent == 200 and len(got) == s.delivered == 200 - s.dropped + s.duplicated
        assert 30 < s.dropped < 90 and s.duplicated > 0
        assert all(0.005 <= t <= 0.045 for t, _ in got)
        order = [int.from_bytes(d, "big") for _, d in got]
        assert order != sorted(order)  # jitter reorders
        assert net.stats(("10.0.0.2", 9), ("10.0.0.1", 9)).sent == 0
        outcomes.append(got)
    assert outcomes[0] == outcomes[1]


async def test_sim_bind_conflict_is_a_media_error_and_bad_links_are_refused() -> None:
    clock = VirtualClock()
    net = SimNetwork(clock)
    a, _ = sim_configs()
    first = MediaSession(a, ArraySource(np.zeros(960, np.int16)), ArraySink(), clock=clock, network=net)
    await first.start()
    with pytest.raises(MediaError, match="cannot bind media socket"):
        await MediaSession(a, ArraySource(np.zeros(960, np.int16)), ArraySink(), clock=clock, network=net).start()
    with pytest.raises(MediaError, match="already started"):
        await first.start()
    await first.stop()
    with pytest.raises(MediaError, match="loss must be within 0..1"):
        Link(loss=1.5)
    with pytest.raises(MediaError, match="non-negative"):
        Link(jitter_ms=-1)
