"""The one time source of ncsynth.

Devices, detectors and plans read "now" and wait for the experiment's deadlines
through the active clock, never through :func:`time.time` / :func:`time.sleep`.
At the hutch the active clock is :class:`SystemClock` (wall time, epoch seconds).
A dry run installs the simulated world's clock with :func:`use_clock`; nothing in
``devices/`` or ``plans/`` knows the difference.

A clock offers :meth:`Clock.now`, :meth:`Clock.sleep_until` and :meth:`Clock.deadlines` (a
schedule of deadlines waited for in turn, e.g. a detector's frame starts): devices and plans
never tell a clock when they are working. A simulated clock that jumps decides by
itself when its time may move (:mod:`ncsynth.simulators.clock`).

Serial-port time-outs are not experiment time and stay in wall time (pyserial).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterable, Iterator, Protocol

#: The EPICS epoch (1990-01-01 UTC) in POSIX seconds: an areaDetector's NDArray time stamps
#: (``TimeStamp_RBV``) count from it.
EPICS_EPOCH_S = 631_152_000.0


class Clock(Protocol):
    """What a clock offers: epoch seconds and cancellable waits for a deadline or a schedule."""

    def now(self) -> float: ...

    def sleep_until(self, deadline: float, cancel: threading.Event | None = None) -> bool: ...

    def deadlines(self, times: Iterable[float],
                  cancel: threading.Event | None = None) -> Iterator[float]: ...


class SystemClock:
    """Wall-clock time with precise deadline waits.

    ``sleep_until`` sleeps to ``spin_s`` before the deadline and then yields the
    CPU in a tight loop: plain ``time.sleep`` to an absolute deadline has a p99
    error of ~3 ms on this kind of machine, the spin brings it to ~0.5 ms.
    """

    def __init__(self, spin_s: float = 0.002):
        self.spin_s = spin_s

    def now(self) -> float:
        return time.time()

    def sleep_until(self, deadline: float, cancel: threading.Event | None = None) -> bool:
        """Wait until ``deadline`` (epoch s); return False if ``cancel`` was set first."""
        return precise_wait(lambda: deadline - time.time(), cancel, self.spin_s)

    def deadlines(self, times: Iterable[float],
                  cancel: threading.Event | None = None) -> Iterator[float]:
        """Each of ``times`` (epoch s) in turn once reached (see :func:`deadlines`)."""
        return each_deadline(self, times, cancel)


def each_deadline(clock: Clock, times: Iterable[float],
                  cancel: threading.Event | None = None) -> Iterator[float]:
    """Each of ``times`` once ``clock`` has reached it (its ``sleep_until`` in turn); stops
    when ``cancel`` is set."""
    for deadline in times:
        if not clock.sleep_until(deadline, cancel):
            return
        yield deadline


def precise_wait(remaining_wall_s, cancel: threading.Event | None = None,
                 spin_s: float = 0.002) -> bool:
    """Wait until ``remaining_wall_s()`` (wall seconds left) reaches 0; False if cancelled.

    Sleeps in steps of at most 50 ms (so a cancel is seen) until ``spin_s`` before the
    end, then yields the CPU in a tight loop for a sub-millisecond finish.
    """
    while True:
        if cancel is not None and cancel.is_set():
            return False
        remaining = remaining_wall_s()
        if remaining <= 0:
            return True
        if remaining > spin_s:
            step = min(remaining - spin_s, 0.05)
            if cancel is not None:
                if cancel.wait(step):
                    return False
            else:
                time.sleep(step)
        else:
            time.sleep(0)


_lock = threading.Lock()
_active: Clock = SystemClock()


def get_clock() -> Clock:
    """The clock in force."""
    return _active


def now() -> float:
    """Current time of the active clock, epoch seconds."""
    return _active.now()


def sleep_until(deadline: float, cancel: threading.Event | None = None) -> bool:
    """Wait on the active clock until ``deadline``; False if cancelled."""
    return _active.sleep_until(deadline, cancel)


def deadlines(times: Iterable[float], cancel: threading.Event | None = None) -> Iterator[float]:
    """Each of ``times`` (epoch s, increasing) in turn, once the active clock has reached it;
    the iteration ends early when ``cancel`` is set. A schedule known in advance (a detector's
    frame starts) is the clock's to keep: the next deadline is kept even while the caller is
    still busy with the previous one, as a timer started for it would be."""
    return _active.deadlines(times, cancel)


def sleep(seconds: float, cancel: threading.Event | None = None) -> bool:
    """Wait ``seconds`` of the active clock's time; False if cancelled."""
    clock = _active
    return clock.sleep_until(clock.now() + seconds, cancel)


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the active clock inside the ``with`` block."""
    global _active
    with _lock:
        previous, _active = _active, clock
    try:
        yield clock
    finally:
        with _lock:
            _active = previous
