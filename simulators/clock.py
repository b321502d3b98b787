"""The simulated world's clock: real time, scaled, or jumping between deadlines.

Time is reported in epoch seconds (it starts at the wall time of creation), so
timestamps from a dry run look like the hutch's.

* ``speed=1.0``: real time (a rehearsal).
* ``speed=K``: K times faster than the wall clock.
* ``speed=None``: jump mode, a discrete-event clock. Threads that wait in
  :meth:`WorldClock.sleep_until` register their deadline; the clock jumps to the earliest
  pending deadline and wakes that waiter once both sides are quiet: the simulated world (no
  simulator working, :meth:`busy`: a request served, a frame synthesised) and the process
  around it, which the clock observes itself (:mod:`.quiet`): for ``idle_s`` of wall time no
  thread but those waiting on the clock has used CPU, none is runnable, and no packet waits
  in the kernel's network backlog (``idle_s``, 0.2 ms: a dry run gives the same fits, frame
  times and heater readings at 0.2, 0.5, 1 and 3 ms, also beside two CPU hogs,
  ``benchmarks/determinism.py``; each of a dry run's ~3200 jumps waits it out: 0.5 ms took
  ~1.9 s more of its ~30 s).
  Devices only read the time and wait for deadlines; they never tell the clock when they
  work. A 2-hour protocol thus runs as fast as the code around it, in the order of its
  deadlines, and the same way on an idle and on a loaded machine.

A schedule's next deadline (:meth:`WorldClock.deadlines`) holds the clock once reached until
its caller comes for it, or until the process has been quiet for ``keep_s`` of wall time
with nothing else holding the clock (``patience_s`` if it never rests): the caller then waits
for something else that needs time to go on (a plan waiting for a piston's stroke before its
next frame), and finds the deadline passed. A woken waiter holds the clock until its thread has actually resumed, and
:meth:`WorldClock.follow` makes a RunEngine hold it while its plan is working (both
also seen by the observation; they keep a descheduled thread from looking quiet on
machines without ``/proc``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Callable

from ncsynth.timebase import each_deadline, precise_wait

from .quiet import ThreadWatch, cpu_ns, same_cpu

if TYPE_CHECKING:
    from .run_engine_hold import RunEngineHold

_PENDING, _DONE, _CANCELLED = 0, 1, 2
_DEADLINE, _SEQ, _STATE, _WOKEN, _CANCEL, _CLAIMED = range(6)  # fields of a waiter entry


class WorldClock:
    """Clock of the simulated world (see module docstring)."""

    def __init__(self, speed: float | None = None, start_epoch: float | None = None,
                 idle_s: float = 0.0002, spin_s: float = 0.002, patience_s: float = 1.0,
                 keep_s: float = 0.5):
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
        self._waiting: dict[int, int] = {}  # threads in a wait: ident -> kernel thread id
        self.patience_s = patience_s
        self.keep_s = keep_s
        self._reached: list[list] = []  # entries reached (holding the clock) not yet claimed
        self._threads = ThreadWatch()
        # statistics: jumps; attempts refused because the process was working; jumps made
        # after patience_s of wall time of such refusals with nothing touching the clock;
        # reached deadlines let go after keep_s of quiet because nobody came for them
        self.jumps_made = self.not_quiet = self.forced = self.let_go = 0
        self._scheduler = None
        if self.jumps:
            single_blas_thread()
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

    @contextlib.contextmanager
    def busy(self):
        """No jump while the simulated world works on something (a frame being synthesised)."""
        if not self.jumps:
            yield
            return
        self.hold()
        try:
            yield
        finally:
            self.release()

    def hold(self) -> None:
        """Forbid jumps until the matching :meth:`release` (jump mode; counted)."""
        if self.jumps:
            with self._cond:
                self._busy += 1
                self._activity += 1

    def release(self) -> None:
        """End one :meth:`hold`."""
        if self.jumps:
            with self._cond:
                self._busy -= 1
                self._activity += 1
                self._cond.notify_all()

    def follow(self, run_engine) -> "RunEngineHold":
        """Hold the clock while ``run_engine`` runs its plan, release it while the plan
        waits on Statuses (or the RunEngine is paused or idle); see
        :class:`~.run_engine_hold.RunEngineHold`."""
        from .run_engine_hold import RunEngineHold

        return RunEngineHold(self, run_engine)

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Wait ``seconds`` of world time; False if cancelled."""
        return self.sleep_until(self.now() + seconds, cancel)

    def sleep_until(self, deadline: float, cancel: threading.Event | None = None) -> bool:
        """Wait until world time ``deadline`` (epoch s); False if ``cancel`` was set first."""
        if self.jumps:
            return self._wait_jumping(deadline, cancel)
        return precise_wait(lambda: (deadline - self.now()) / self.speed, cancel, self.spin_s)

    def deadlines(self, times, cancel: threading.Event | None = None):
        """Each of ``times`` (epoch s, increasing) in turn once reached; ends when ``cancel``
        is set. Jump mode: the next deadline is reserved (:meth:`reserve`) as soon as the
        previous one is reached, so the clock stops there even while the caller is still busy
        with the previous one in ways it cannot see (a reply on its way from an IOC), as the
        timer of a detector that was given its schedule would (up to ``keep_s`` of quiet:
        see the module docstring)."""
        if not self.jumps:
            yield from each_deadline(self, times, cancel)
            return
        ended = threading.Event()  # the caller left the schedule: drop the reservation ahead
        stop = _EitherEvent(cancel, ended)
        upcoming = iter(times)
        deadline = next(upcoming, None)
        wait = None if deadline is None else self.reserve(deadline, stop)
        try:
            while wait is not None:
                reached, wait = wait(), None
                if not reached or stop.is_set():
                    return
                reached, deadline = deadline, next(upcoming, None)
                wait = None if deadline is None else self.reserve(deadline, stop)
                yield reached
        finally:
            ended.set()
            if wait is not None:  # does not block now: drops the reservation ahead, or lets
                wait()  # go of the clock if it was reached meanwhile

    def advance(self, seconds: float) -> None:
        """Back door: move world time forward by ``seconds`` at once. The deadlines passed
        are reached one after the other, in their order (:meth:`_release_due`)."""
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
                entry[_STATE] = _DONE
            self._waiters.clear()
            self._cond.notify_all()
        if self._scheduler is not None and self._scheduler is not threading.current_thread():
            self._scheduler.join(1.0)
        if self._scheduler is None or not self._scheduler.is_alive():  # nobody looks any more
            self._threads.close()

    # -- jump mode -------------------------------------------------------------------
    def reserve(self, deadline: float, cancel: threading.Event | None = None):
        """Register a wait for world time ``deadline`` now; return ``wait(then=None) -> bool``
        that blocks until then (False if ``cancel`` was set first), callable from any thread.
        ``then()`` runs on reaching the deadline while a jumping clock still stands there,
        so whatever it starts (a Status callback taking its own hold) leaves no gap.

        In jump mode the clock counts the deadline from this call on: a thread that only
        starts waiting later (a device's worker thread) cannot be jumped past meanwhile.
        A reservation whose ``cancel`` is set is dropped even if ``wait`` is never called.
        """
        if not self.jumps:
            return lambda then=None: then_if_reached(self.sleep_until(deadline, cancel), then)
        with self._cond:
            if deadline <= self.now() or self._closed:
                return lambda then=None: then_if_reached(True, then)
            entry = [deadline, next(self._seq), _PENDING, False, cancel, False]
            heapq.heappush(self._waiters, entry)
            self._activity += 1
            self._cond.notify_all()
        return lambda then=None: self._await(entry, cancel, then)

    def _wait_jumping(self, deadline: float, cancel: threading.Event | None) -> bool:
        return self.reserve(deadline, cancel)()

    def _await(self, entry: list, cancel: threading.Event | None, then=None) -> bool:
        me = threading.get_ident()
        with self._cond:
            # its polls are not activity; its joining the waiters is: the scheduler's CPU
            # measure leaves waiting threads out, so one that joins within an idle window would
            # take its whole past CPU time off the measure and hide what others did meanwhile
            self._waiting[me] = threading.get_native_id()
            self._activity += 1
            entry[_CLAIMED] = True  # from now on its hold is this thread's to end
            try:
                while entry[_STATE] == _PENDING:
                    if cancel is not None and cancel.is_set():
                        entry[_STATE] = _CANCELLED
                        self._activity += 1
                        self._cond.notify_all()
                        return False
                    self._cond.wait(0.02 if cancel is not None else None)
            finally:
                del self._waiting[me]
                self._activity += 1
            if entry[_STATE] == _CANCELLED:
                return False
        try:
            then_if_reached(True, then)
        finally:
            if entry[_WOKEN]:  # this thread has run again: the jump's hold on the clock ends
                with self._cond:
                    self._busy -= 1
                    self._activity += 1
                    self._cond.notify_all()
        return True

    def _drop_dead(self) -> None:
        """Pop finished and cancelled entries off the top of the heap."""
        while self._waiters and not _live(self._waiters[0]):
            entry = heapq.heappop(self._waiters)
            if entry[_STATE] == _PENDING:  # its cancel was set: nobody may be waiting
                entry[_STATE] = _CANCELLED

    def _release_due(self) -> None:
        """Wake the waiters of the earliest deadline if it has been reached (all of them: a
        tie goes together). Later deadlines already passed (after :meth:`advance`) are woken
        by the scheduler in their order, each once the process is quiet again, so what the
        earlier one starts (a late exposure ending) settles before the next acts."""
        self._drop_dead()
        if not self._waiters or self._waiters[0][_DEADLINE] > self.now():
            return
        earliest = self._waiters[0][_DEADLINE]
        while self._waiters and self._waiters[0][_DEADLINE] == earliest:
            entry = heapq.heappop(self._waiters)
            entry[_STATE], entry[_WOKEN] = _DONE, True
            self._busy += 1
            if not entry[_CLAIMED]:
                self._reached.append(entry)
            self._drop_dead()

    def _schedule(self) -> None:
        """The scheduler thread. While something holds the clock (a woken waiter not yet
        resumed, a RunEngine's plan working, a simulator serving) it sleeps until that ends.
        Otherwise it looks at the process every ``idle_s / 3`` and keeps a window: opened when
        the clock is touched or another thread uses CPU, it lets the clock move once it is
        ``idle_s`` old and nobody is runnable (:meth:`_process_quiet`). So a jump comes
        ``idle_s`` after the last work, not up to twice that as with windows of a fixed start."""
        refused_since = None  # wall time (monotonic) since the process looks busy, clock idle
        kept_since = None  # wall time since only reached, unclaimed deadlines hold the clock
        quiet_since = None  # ... and the process has been quiet
        window = None  # (activity count, CPU bounds, wall time) when the window opened
        poll_s = self.idle_s / 3
        with self._cond:
            while not self._closed:
                self._drop_dead()
                if not self._waiters and not self._reached:
                    window = None
                    self._cond.wait()
                    continue
                if self._busy > len(self._unclaimed()):  # held: every release notifies
                    refused_since = kept_since = quiet_since = window = None
                    self._cond.wait()
                    continue
                if window is None:
                    window = (self._activity, self._cpu_ns(), time.monotonic())
                self._cond.wait(poll_s)
                seen, used, opened = window
                unclaimed = self._unclaimed()
                if self._activity != seen or self._closed or self._busy > len(unclaimed):
                    refused_since = kept_since = quiet_since = window = None
                    continue
                now, spent = time.monotonic(), self._cpu_ns()
                if not same_cpu(used, spent):  # somebody worked: the window starts again
                    window, quiet = (seen, spent, now), False
                elif now - opened < self.idle_s:
                    quiet = None  # too early to tell
                else:
                    quiet = self._process_quiet(seen, used, len(unclaimed))
                    if not quiet:
                        window = None
                if unclaimed:  # let go after keep_s of quiet, or patience_s of a busy process
                    kept_since = kept_since or now
                    if quiet is not None:
                        quiet_since = (quiet_since or now) if quiet else None
                    if now - kept_since >= self.patience_s or (
                            quiet_since is not None and now - quiet_since >= self.keep_s):
                        self._let_go(unclaimed)
                        kept_since = quiet_since = window = None
                    continue
                if quiet is None:
                    continue
                if not quiet:
                    self.not_quiet += 1
                    refused_since = refused_since or now
                    if now - refused_since < self.patience_s:
                        continue
                    self.forced += 1  # a thread that never rests: move on, as a timer would
                refused_since = window = None
                self._drop_dead()
                if not self._waiters:
                    continue
                self.jumps_made += 1
                self._elapsed = max(self._elapsed, self._waiters[0][_DEADLINE] - self._t0)
                self._release_due()
                self._activity += 1
                self._cond.notify_all()

    def _unclaimed(self) -> list[list]:
        """Reached deadlines that hold the clock and that no thread has come for yet (the next
        deadline of a schedule, :meth:`deadlines`, while its caller is still busy)."""
        self._reached = [e for e in self._reached if e[_WOKEN] and not e[_CLAIMED]]
        return self._reached

    def _let_go(self, unclaimed: list[list]) -> None:
        """The process has been quiet for ``keep_s`` with only ``unclaimed`` deadlines holding the
        clock: their caller waits for something else that needs time to move on (a plan waiting
        for a piston's stroke before its next frame). Time goes on; the caller finds them passed."""
        for entry in unclaimed:
            entry[_WOKEN] = False
            self._busy -= 1
            self.let_go += 1
        self._reached = []
        self._activity += 1
        self._cond.notify_all()

    def _cpu_ns(self) -> tuple[int, int]:
        """CPU time (ns, bounds) of the process but this clock's scheduler (the caller) and
        waiting threads."""
        return cpu_ns(self._waiting)

    def _process_quiet(self, seen: int, used: tuple[int, int], holds: int = 0) -> bool:
        """Called with the lock held, ``idle_s`` after the clock saw activity count ``seen``
        and CPU time ``used``: True if no other thread has used CPU since, none is runnable
        now, and nothing touched the clock meanwhile (:mod:`.quiet`) nor holds it but the
        ``holds`` reached deadlines nobody has come for."""
        if not same_cpu(used, self._cpu_ns()):
            return False
        excluded = (self._scheduler.native_id, *self._waiting.values())
        self._cond.release()  # the scan takes ~0.5 ms: the clock stays usable meanwhile
        try:
            runnable = self._threads.anyone_working_after_handover(excluded)
        finally:
            self._cond.acquire()
        return not runnable and self._activity == seen and self._busy <= holds \
            and same_cpu(used, self._cpu_ns())


def single_blas_thread() -> None:
    """Limit this process's BLAS (numpy's OpenBLAS) to one thread, as ``ncsynth`` commands do
    before numpy loads. A jumping clock needs it wherever numpy was loaded first (pytest, a
    notebook): OpenBLAS's idle workers spin ~0.1 s after each matrix product (the frame
    synthesis makes one per frame), the clock sees a thread working and waits; measured: a
    software-triggered frame 118 ms of wall time in jump mode, a steered dry run 50 s (24 s
    with one thread)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def then_if_reached(reached: bool, then: Callable[[], object] | None) -> bool:
    """Call ``then()`` if a wait ``reached`` its deadline; return ``reached`` (for the
    ``wait(then=None)`` functions that :meth:`WorldClock.reserve` returns)."""
    if reached and then is not None:
        then()
    return reached


class _EitherEvent:
    """Set once either of two events is (the first may be None): a reservation's cancel."""

    def __init__(self, first: threading.Event | None, second: threading.Event):
        self._events = tuple(e for e in (first, second) if e is not None)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


def _live(entry: list) -> bool:
    """A waiter still to be woken: pending and not cancelled."""
    return entry[_STATE] == _PENDING and not (entry[_CANCEL] is not None and entry[_CANCEL].is_set())
