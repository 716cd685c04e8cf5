"""The media thread: a monotonic clock and UDP sockets served by one thread of their own, off the event loop.

:class:`MediaEngine` is both a :class:`~softphone.media.clock.Clock` and a
:class:`~softphone.media.transport.Network`. Its thread waits in ``select`` for the next timer or datagram
and runs every callback holding :attr:`MediaEngine.lock`; SRTP (libsrtp via cffi) and Opus (ctypes) release
the GIL while they work, so the asyncio/Qt thread and the media thread run side by side. Other threads talk
to it only through :meth:`MediaEngine.call_at` / :meth:`MediaEngine.submit` (thread-safe) and by taking
:attr:`MediaEngine.lock` for short snapshots (stats, meters) and commands (hold, mute, DTMF).

One engine per process (:meth:`MediaEngine.shared`) serves every session; its thread starts with the first
session and ends with the last (:meth:`acquire` / :meth:`release`).
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from softphone.media.transport import Address, Endpoint, Receive

T = TypeVar("T")

_MAX_WAIT = 0.25  # s: the thread wakes at least this often (bounded waits)
SWITCH_INTERVAL = 0.0005  # s: how long a thread in Python may hold the GIL while the media thread waits
_MAX_DATAGRAMS = 64  # read per socket per wake-up, so one flooded socket cannot starve the timers


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EngineEndpoint:
    """A non-blocking UDP socket whose datagrams the engine thread hands to ``receive``."""

    def __init__(self, engine: MediaEngine, sock: socket.socket, receive: Receive) -> None:
        self._engine = engine
        self._sock = sock
        self.receive = receive
        self.errors = 0  # send errors and ICMP errors (port unreachable and the like)
        self.closed = False
        host, port = sock.getsockname()[:2]
        self._local: Address = (host, port)

    @property
    def local_addr(self) -> Address:
        return self._local

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError:  # buffer full, ICMP error from an earlier send, unreachable: count and go on
            self.errors += 1

    def read_ready(self) -> None:
        for _ in range(_MAX_DATAGRAMS):
            if self.closed:
                return
            try:
                data, addr = self._sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError:
                self.errors += 1
                continue
            self.receive(data, (addr[0], addr[1]))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._engine._unregister(self)
            self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()


class MediaEngine:
    """A clock (``time.monotonic``), timers and UDP sockets served by one thread; see the module docstring."""

    _shared: MediaEngine | None = None
    _shared_lock = threading.Lock()

    def __init__(self, name: str = "media-engine") -> None:
        self.name = name
        self.lock = threading.RLock()  # held while callbacks run; take it for snapshots and commands
        self._qlock = threading.Lock()  # guards the timer heap, registrations and the user count
        self._heap: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._pending: list[tuple[str, EngineEndpoint]] = []
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._users = 0
        self._stop = threading.Event()
        self._switch_interval = sys.getswitchinterval()
        self.wakeups = 0

    @classmethod
    def shared(cls) -> MediaEngine:
        """The process's engine (created on first use)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    # --- lifecycle ------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """One more user; the first starts the thread."""
        with self._qlock:
            self._users += 1
            if self._thread is not None:
                return
            self._selector = selectors.DefaultSelector()
            # each tick takes and releases the GIL several times (SRTP, Opus, sockets); with Python's default
            # 5 ms switch interval a busy GUI/asyncio thread would delay every one of those
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            stop = threading.Event()
            self._stop = stop
            self._thread = threading.Thread(target=self._run, args=(self._selector, self._wake_r, self._wake_w, stop),
                                            name=self.name, daemon=True)
            self._thread.start()

    def release(self) -> None:
        """One user fewer; the last stops the thread (and waits for it, unless called from it)."""
        with self._qlock:
            self._users = max(0, self._users - 1)
            if self._users or self._thread is None:
                return
            thread, wake_w = self._thread, self._wake_w
            self._stop.set()
            self._thread = None
            sys.setswitchinterval(self._switch_interval)
            self._selector = None
            self._wake_r = self._wake_w = None
            self._heap.clear()
            self._pending.clear()
        if wake_w is not None:
            self._send_wake(wake_w)
        if thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def on_engine_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # --- Clock ----------------------------------------------------------------------------------------
    def time(self) -> float:
        return time.monotonic()

    def wallclock(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback()`` on the engine thread once :meth:`time` reaches ``when`` (thread-safe)."""
        timer = _Timer(callback)
        with self._qlock:
            earliest = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._order), timer))
        if earliest and not self.on_engine_thread:
            self._wake()
        return timer

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn()`` on the engine thread as soon as possible; its result or exception in the future.
        Called on the engine thread itself, ``fn`` runs at once."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

        if self.on_engine_thread or not self.running:
            with self.lock:
                run()
        else:
            self.call_at(0.0, run)
        return future

    # --- Network --------------------------------------------------------------------------------------
    async def open(self, local_addr: Address, receive: Receive) -> Endpoint:
        """Bind a UDP socket (``OSError`` if taken) served by the engine thread."""
        return self.open_sync(local_addr, receive)

    def open_sync(self, local_addr: Address, receive: Receive) -> EngineEndpoint:
        family = socket.AF_INET6 if ":" in local_addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind(local_addr)
        except OSError:
            sock.close()
            raise
        endpoint = EngineEndpoint(self, sock, receive)
        with self._qlock:
            self._pending.append(("add", endpoint))
        self._wake()
        return endpoint

    def _unregister(self, endpoint: EngineEndpoint) -> None:
        with self._qlock:
            self._pending.append(("remove", endpoint))
        if not self.on_engine_thread:
            self._wake()
        else:
            self._apply_registrations()

    def poll(self) -> None:
        """Read every datagram already waiting on the engine's sockets (on the engine thread)."""
        sel = self._selector
        if sel is None:
            return
        self._apply_registrations()
        for key, _ in sel.select(0):
            if isinstance(key.data, EngineEndpoint):
                key.data.read_ready()

    # --- the thread -----------------------------------------------------------------------------------
    def _wake(self) -> None:
        w = self._wake_w
        if w is not None:
            self._send_wake(w)

    @staticmethod
    def _send_wake(w: socket.socket) -> None:
        try:
            w.send(b"\0")
        except OSError:  # full (a wake-up is already pending) or closed
            pass

    def _apply_registrations(self) -> None:
        sel = self._selector
        with self._qlock:
            pending, self._pending = self._pending, []
        if sel is None:
            return
        for op, endpoint in pending:
            try:
                if op == "add" and not endpoint.closed:
                    sel.register(endpoint, selectors.EVENT_READ, endpoint)
                elif op == "remove":
                    sel.unregister(endpoint)
            except (KeyError, ValueError, OSError):  # closed before it was registered, or twice
                pass

    def _next_wait(self) -> float:
        with self._qlock:
            if not self._heap:
                return _MAX_WAIT
            return max(0.0, min(_MAX_WAIT, self._heap[0][0] - time.monotonic()))

    def _run_due(self) -> None:
        while True:
            with self._qlock:
                if not self._heap or self._heap[0][0] > time.monotonic():
                    return
                _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                timer.callback()

    def _run(self, sel: selectors.BaseSelector, wake_r: socket.socket, wake_w: socket.socket,
             stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._apply_registrations()
                events = sel.select(self._next_wait())
                self.wakeups += 1
                if stop.is_set():
                    break
                with self.lock:
                    for key, _ in events:
                        if key.data is None:
                            self._drain_wake(wake_r)
                        else:
                            key.data.read_ready()
                    self._run_due()
        finally:
            sel.close()
            wake_r.close()
            wake_w.close()

    @staticmethod
    def _drain_wake(wake_r: socket.socket) -> None:
        try:
            while wake_r.recv(4096):
                pass
        except OSError:
            pass


def on_loop(callback: Callable[..., Any] | None, loop: Any) -> Callable[..., None] | None:
    """``callback`` wrapped to run on asyncio ``loop`` when called from another thread (None stays None)."""
    if callback is None:
        return None
    cb = callback

    def call(*args: Any) -> None:
        try:
            loop.call_soon_threadsafe(cb, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    return call
