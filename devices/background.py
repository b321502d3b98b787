"""Device work in the background, on threads kept for reuse.

Devices return a Status at once and finish it from another thread (a trigger, a
Modbus read, a wait for a deadline, a settle loop). Starting a new
:class:`threading.Thread` for each costs the caller more than it seems:
``Thread.start()`` blocks until the new thread has run, and the new thread needs the
GIL for that; with another thread computing (the analysis, a simulator) the caller
(the RunEngine, on its way to the next frame) waits up to a switch interval (5 ms),
twice per call. :func:`run` hands the work to an idle thread of a shared pool instead
(a queue put, no wait) and starts a new thread only when none is idle.

Workers are daemon threads, as the per-call threads were: a device blocked on a dead
port never keeps the interpreter from exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

logger = logging.getLogger(__name__)

_IDLE_NAME = "ncsynth-device-idle"


class WorkerPool:
    """Daemon threads that run submitted callables; grows when all are busy, never shrinks
    (a session needs a handful: the concurrent device operations of one plan step)."""

    def __init__(self):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self.size = 0

    @property
    def idle(self) -> int:
        """Workers waiting for a task (``size`` minus the busy ones)."""
        return self._idle

    def run(self, function: Callable[..., object], *args, name: str = "ncsynth-device") -> None:
        """Call ``function(*args)`` on a worker named ``name`` while it runs; return at once.

        An exception it raises is logged (the callable should report through its Status).
        """
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self.size += 1
            else:
                self._idle -= 1  # that idle worker is now spoken for
        self._tasks.put((function, args, name))
        if spawn:
            threading.Thread(target=self._work, name=_IDLE_NAME, daemon=True).start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            function, args, me.name = self._tasks.get()
            try:
                function(*args)
            except BaseException:  # noqa: BLE001 - a worker outlives any task's failure
                logger.exception("background task %s failed", me.name)
            finally:
                function = args = None  # drop references while idle
                me.name = _IDLE_NAME
                with self._lock:
                    self._idle += 1


_pool = WorkerPool()


def run(function: Callable[..., object], *args, name: str = "ncsynth-device") -> None:
    """Run ``function(*args)`` in the background on the shared :class:`WorkerPool`."""
    _pool.run(function, *args, name=name)


class Timer:
    """:class:`threading.Timer`'s ``start``/``cancel``, waiting on a worker of the shared pool
    instead of a new thread: a detector arms one per frame for its time-out, and a new thread
    cost the RunEngine ~1.1 ms of ``Thread.start`` per frame (0.65 s of a dry run). The
    interval is wall time (s); ``function(*args)`` runs unless :meth:`cancel` came first."""

    def __init__(self, interval_s: float, function: Callable[..., object], args=(),
                 name: str = "ncsynth-timer"):
        self.interval_s, self.function, self.args, self.name = interval_s, function, tuple(args), name
        self.finished = threading.Event()

    def start(self) -> None:
        run(self._wait, name=self.name)

    def cancel(self) -> None:
        self.finished.set()

    def _wait(self) -> None:
        if not self.finished.wait(self.interval_s):
            self.finished.set()
            self.function(*self.args)
