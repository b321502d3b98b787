"""A deadline timer: the plans' way to wait for an absolute time.

``yield from bps.mv(timer, deadline)`` (epoch seconds) completes when the
active clock (:mod:`ncsynth.timebase`) reaches the deadline. Because it is a
Movable with a Status, the RunEngine can pause or abort while it waits, and
:meth:`DeadlineTimer.stop` cancels the wait. Waiting on absolute deadlines
(not on "sleep so long") keeps a frame schedule from drifting with overhead.

A plan that knows its deadlines in advance (a frame schedule) gives them to the timer
first, ``bps.prepare(timer, deadlines)``, as one would load a sequence into a timing
system: the clock then keeps each next deadline from the moment the previous one is
reached (:func:`ncsynth.timebase.deadlines`), so a frame starts on time even when the
plan reaches its wait only after a reply that was still on its way. A jumping simulated
clock would otherwise be free to move past a deadline nobody had asked for yet.
"""

from __future__ import annotations

import collections
import threading

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from ncsynth import timebase
from . import background


class DeadlineTimer(Device):
    """Movable whose ``set(deadline)`` finishes when the active clock reaches it; Preparable
    with the schedule of deadlines to come (see the module docstring)."""

    deadline = Cpt(Signal, value=0.0, kind="config")

    def __init__(self, name: str = "timer", **kwargs):
        super().__init__(name=name, **kwargs)
        self._pending: tuple[threading.Event, dict] = (threading.Event(), {})
        self._schedule: _Schedule | None = None

    def prepare(self, deadlines) -> Status:
        """Keep ``deadlines`` (epoch s, increasing; repeats allowed) as the schedule the next
        ``set`` calls follow. A ``set`` to a deadline outside it, :meth:`stop` (a pause or an
        abort) or ``prepare(())`` drops it; later waits are single waits again."""
        self._drop_schedule()
        times = [float(t) for t in deadlines]
        if any(later < earlier for earlier, later in zip(times, times[1:])):
            raise ValueError(f"{self.name}: the deadlines to prepare must not decrease")
        if times:
            self._schedule = _Schedule(times)
        status = Status(obj=self)
        status.set_finished()
        return status

    def set(self, deadline: float) -> Status:
        deadline = float(deadline)
        self.deadline.put(deadline)
        status = Status(obj=self)
        cancel, outcome = self._pending = (threading.Event(), {"stopped_ok": False})
        schedule = self._schedule
        if schedule is not None and not schedule.keeps(deadline):
            self._drop_schedule()
            schedule = None

        def wait():
            reached = schedule is not None and schedule.wait_for(deadline)
            if not reached and not cancel.is_set():  # no schedule, or the plan dropped it
                reached = timebase.sleep_until(deadline, cancel)  # (its clean-up): wait alone
            if reached or outcome["stopped_ok"]:
                status.set_finished()
            else:
                status.set_exception(RuntimeError(f"{self.name}: wait for {deadline} cancelled"))

        background.run(wait, name=f"{self.name}-wait")
        return status

    def stop(self, *, success: bool = False) -> None:
        """End the current wait now: ``success=True`` (the RunEngine pausing) finishes its
        Status, as ophyd's positioners do; otherwise (abort) the Status fails. A prepared
        schedule is dropped: after a pause the plan rejoins its deadlines one by one."""
        cancel, outcome = self._pending
        outcome["stopped_ok"] = success
        cancel.set()
        self._drop_schedule()

    def _drop_schedule(self) -> None:
        schedule, self._schedule = self._schedule, None
        if schedule is not None:
            schedule.drop()


class _Schedule:
    """Deadlines kept by the active clock (:func:`ncsynth.timebase.deadlines`), consumed in
    order by :meth:`wait_for` (one thread at a time: the timer's waits follow each other)."""

    def __init__(self, times: list[float]):
        self.remaining = collections.deque(times)
        self.cancel = threading.Event()
        self._reached = timebase.deadlines(times, self.cancel)
        self._lock = threading.Lock()

    def keeps(self, deadline: float) -> bool:
        """True if ``deadline`` is still ahead in this schedule and it was not dropped."""
        return not self.cancel.is_set() and deadline in self.remaining

    def wait_for(self, deadline: float) -> bool:
        """Wait until ``deadline`` (passing over the earlier ones, a plan's skipped frames);
        False if the schedule was dropped first."""
        try:
            with self._lock:
                while self.remaining:
                    target = self.remaining.popleft()
                    if next(self._reached, None) is None:
                        return False
                    if target >= deadline:
                        return True
                return False
        finally:
            if self.cancel.is_set():  # dropped while this thread was in it: it closes it
                self._close()

    def drop(self) -> None:
        """Release the deadline kept ahead (closing the iteration), now or, if a wait is in
        it, as that wait ends."""
        self.cancel.set()
        if self._lock.acquire(blocking=False):
            try:
                self._reached.close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        with self._lock:
            self._reached.close()
