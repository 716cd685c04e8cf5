"""Clocks for :class:`~softphone.media.session.MediaSession`: asyncio's (the phone) or a virtual one (tests).

A clock tells the time and runs callbacks at given times. :class:`LoopClock` is the running asyncio loop's
monotonic clock plus the wall clock for RTCP NTP timestamps; :class:`VirtualClock` is a deterministic
discrete-event scheduler whose time moves only when :meth:`VirtualClock.advance` is called, so a 20 s
call runs as fast as the CPU allows and in the same order every time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Handle(Protocol):
    """A scheduled callback; ``cancel()`` before it runs and it never does."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the media session needs of time."""

    def time(self) -> float:
        """Monotonic seconds (scheduling, jitter, arrival times)."""
        ...

    def wallclock(self) -> float:
        """Unix seconds (RTCP NTP timestamps)."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        """Run ``callback()`` once :meth:`time` reaches ``when`` (at once if it already has)."""
        ...


class LoopClock:
    """The running asyncio loop's clock (``loop.time()``, ``loop.call_at``) and ``time.time()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()

    def time(self) -> float:
        return self.loop.time()

    def wallclock(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        return self.loop.call_at(when, callback)


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Simulated time: callbacks run in (time, scheduling order) order, only inside :meth:`advance`."""

    def __init__(self, start: float = 0.0, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._epoch = epoch - start
        self._queue: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def wallclock(self) -> float:
        return self._epoch + self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        timer = _Timer(callback)
        heapq.heappush(self._queue, (max(when, self._now), next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return self.call_at(self._now + delay, callback)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback due by then (including new ones)."""
        end = self._now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, timer = heapq.heappop(self._queue)
            self._now = when
            if not timer.cancelled:
                timer.callback()
        self._now = end

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not cancelled."""
        return sum(1 for *_, t in self._queue if not t.cancelled)
