"""The simulated world's clock: real time, scaled, or jumping between deadlines.

Time is reported in epoch seconds (it starts at the wall time of creation), so
timestamps from a dry run look like the hutch's.

* ``speed=1.0``: real time (a rehearsal).
* ``speed=K``: K times faster than the wall clock.
* ``speed=None``: jump mode, a discrete-event clock. Threads that wait in
  :meth:`WorldClock.sleep_until` register their deadline; once nothing has
  happened on the clock for ``idle_s`` of wall time (no new waiter, no
  :meth:`touch` from a simulator serving a request, no device transaction
  inside :meth:`busy`) the clock jumps to the
  earliest pending deadline and wakes that waiter. A 2-hour protocol thus runs
  as fast as the code around it, in the order of its deadlines.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time

from ncsynth.timebase import precise_wait

_PENDING, _DONE, _CANCELLED = 0, 1, 2


class WorldClock:
    """Clock of the simulated world (see module docstring)."""

    def __init__(self, speed: float | None = None, start_epoch: float | None = None,
                 idle_s: float = 0.003, spin_s: float = 0.002):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None (jump mode), got {speed!r}")
        self.speed = speed
        self.idle_s = idle_s
        self.spin_s = spin_s
        self._t0 = time.time() if start_epoch is None else float(start_epoch)
        self._m0 = time.monotonic()
        self._elapsed = 0.0  # jump mode: virtual seconds since start
        self._cond = threading.Condition()
        self._waiters: list[list] = []
        self._seq = itertools.count()
        self._activity = 0
        self._busy = 0
        self._closed = False
        self._scheduler = None
        if self.jumps:
            self._scheduler = threading.Thread(target=self._schedule, name="world-clock",
                                               daemon=True)
            self._scheduler.start()

    @property
    def jumps(self) -> bool:
        """True in jump (discrete-event) mode."""
        return self.speed is None

    def now(self) -> float:
        """World time, epoch seconds."""
        if self.jumps:
            return self._t0 + self._elapsed
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    def touch(self) -> None:
        """Note activity (a request being served), delaying the next jump."""
        if self.jumps:
            with self._cond:
                self._activity += 1

    @contextlib.contextmanager
    def busy(self):
        """No jump while a device transaction is in flight (see :func:`ncsynth.timebase.busy`)."""
        if not self.jumps:
            yield
            return
        with self._cond:
            self._busy += 1
            self._activity += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._activity += 1
                self._cond.notify_all()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Wait ``seconds`` of world time; False if cancelled."""
        return self.sleep_until(self.now() + seconds, cancel)

    def sleep_until(self, deadline: float, cancel: threading.Event | None = None) -> bool:
        """Wait until world time ``deadline`` (epoch s); False if ``cancel`` was set first."""
        if self.jumps:
            return self._wait_jumping(deadline, cancel)
        return precise_wait(lambda: (deadline - self.now()) / self.speed, cancel, self.spin_s)

    def advance(self, seconds: float) -> None:
        """Back door: move world time forward by ``seconds`` at once."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, got {seconds!r}")
        with self._cond:
            if self.jumps:
                self._elapsed += seconds
                self._release_due()
            else:
                self._t0 += seconds
            self._activity += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the scheduler and wake every waiter."""
        with self._cond:
            self._closed = True
            for entry in self._waiters:
                entry[2] = _DONE
            self._waiters.clear()
            self._cond.notify_all()

    # -- jump mode -------------------------------------------------------------------
    def _wait_jumping(self, deadline: float, cancel: threading.Event | None) -> bool:
        with self._cond:
            if deadline <= self.now() or self._closed:
                return True
            entry = [deadline, next(self._seq), _PENDING]
            heapq.heappush(self._waiters, entry)
            self._activity += 1
            self._cond.notify_all()
            while entry[2] == _PENDING:
                if cancel is not None and cancel.is_set():
                    entry[2] = _CANCELLED
                    self._activity += 1
                    self._cond.notify_all()
                    return False
                self._cond.wait(0.02 if cancel is not None else None)
            return True

    def _release_due(self) -> None:
        now = self.now()
        while self._waiters and (self._waiters[0][0] <= now or self._waiters[0][2] != _PENDING):
            entry = heapq.heappop(self._waiters)
            if entry[2] == _PENDING:
                entry[2] = _DONE

    def _schedule(self) -> None:
        with self._cond:
            while not self._closed:
                while self._waiters and self._waiters[0][2] != _PENDING:
                    heapq.heappop(self._waiters)
                if not self._waiters:
                    self._cond.wait()
                    continue
                seen = self._activity
                self._cond.wait(self.idle_s)
                if self._activity != seen or self._busy or self._closed:
                    continue
                while self._waiters and self._waiters[0][2] != _PENDING:
                    heapq.heappop(self._waiters)
                if not self._waiters:
                    continue
                self._elapsed = max(self._elapsed, self._waiters[0][0] - self._t0)
                self._release_due()
                self._activity += 1
                self._cond.notify_all()
