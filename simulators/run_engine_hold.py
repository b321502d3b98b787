"""A RunEngine's claim on a jumping :class:`~.clock.WorldClock` (:meth:`WorldClock.follow`):
the clock stands still while the plan works and may move while the plan waits on Statuses."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clock import WorldClock


class RunEngineHold:
    """A RunEngine's claim on a jumping :class:`WorldClock`.

    Installed through the RunEngine's ``state_hook`` and ``waiting_hook`` (hooks
    already there are still called): the clock is held while the RunEngine is
    running and not waiting, released while it waits on Statuses and when it pauses
    or goes idle. A Status it waits for takes the hold back in its own completion
    callback (once all are done, or one failed), before the RunEngine's thread has
    even woken, so no jump can slip in between a deadline and the plan's next step.
    """

    def __init__(self, clock: WorldClock, run_engine):
        self.clock = clock
        self._lock = threading.Lock()
        self._held = False
        self._waiting = 0  # generation of the current wait; a stale callback is ignored
        self._previous = (run_engine.state_hook, run_engine.waiting_hook)
        run_engine.state_hook = self._on_state
        run_engine.waiting_hook = self._on_waiting
        if run_engine.state == "running":
            self._set(True)

    def _set(self, held: bool, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self._waiting:
                return
            if held == self._held:
                return
            self._held = held
            (self.clock.hold if held else self.clock.release)()

    def _on_state(self, new_state, old_state) -> None:
        if new_state in ("running", "pausing", "aborting", "halting", "stopping"):
            self._set(True)
        else:  # paused, idle, panicked
            with self._lock:
                self._waiting += 1
            self._set(False)
        if self._previous[0] is not None:
            self._previous[0](new_state, old_state)

    def _on_waiting(self, statuses) -> None:
        with self._lock:
            self._waiting += 1
            generation = self._waiting
        if statuses is None:
            self._set(True)
        else:
            self._set(False)
            statuses = list(statuses)

            def resumed(status, g=generation):  # the RunEngine goes on: all done, or one failed
                if not status.success or all(s.done for s in statuses):
                    self._set(True, g)

            for status in statuses:
                status.add_callback(resumed)
        if self._previous[1] is not None:
            self._previous[1](statuses)
