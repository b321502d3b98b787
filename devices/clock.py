"""A deadline timer: the plans' way to wait for an absolute time.

``yield from bps.mv(timer, deadline)`` (epoch seconds) completes when the
active clock (:mod:`ncsynth.timebase`) reaches the deadline. Because it is a
Movable with a Status, the RunEngine can pause or abort while it waits, and
:meth:`DeadlineTimer.stop` cancels the wait. Waiting on absolute deadlines
(not on "sleep so long") keeps a frame schedule from drifting with overhead.
"""

from __future__ import annotations

import threading

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import Status

from ncsynth import timebase
from . import background


class DeadlineTimer(Device):
    """Movable whose ``set(deadline)`` finishes when the active clock reaches it."""

    deadline = Cpt(Signal, value=0.0, kind="config")

    def __init__(self, name: str = "timer", **kwargs):
        super().__init__(name=name, **kwargs)
        self._pending: tuple[threading.Event, dict] = (threading.Event(), {})

    def set(self, deadline: float) -> Status:
        deadline = float(deadline)
        self.deadline.put(deadline)
        status = Status(obj=self)
        cancel, outcome = self._pending = (threading.Event(), {"stopped_ok": False})

        def wait():
            if timebase.sleep_until(deadline, cancel) or outcome["stopped_ok"]:
                status.set_finished()
            else:
                status.set_exception(RuntimeError(f"{self.name}: wait for {deadline} cancelled"))

        background.run(wait, name=f"{self.name}-wait")
        return status

    def stop(self, *, success: bool = False) -> None:
        """End the current wait now: ``success=True`` (the RunEngine pausing) finishes its
        Status, as ophyd's positioners do; otherwise (abort) the Status fails."""
        cancel, outcome = self._pending
        outcome["stopped_ok"] = success
        cancel.set()
