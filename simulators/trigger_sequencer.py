"""A simulated pulse sequencer (a beamline timing system's) that triggers the SAXS detector.

An EPICS areaDetector keeps only a uniform ``AcquirePeriod``; the geometric §S.1.4 schedule
(seed 000, frame ``n+1`` at ``t_i + t_w·1.015^(n-1)`` after frame ``n``) is kept at a beamline
by timing hardware wired to the detector's trigger input (``TriggerMode`` External), given
the start times in advance. This is that hardware, reduced to four PVs under ``<prefix>``
(served by the simulated areaDetector IOC, :mod:`.area_detector`):

* ``StartTimes`` (waveform of doubles, at most :data:`MAX_PULSES`): the pulse times, POSIX
  epoch seconds of the timing system's clock (synchronised with the computers', as EPICS time
  stamps are), increasing;
* ``Arm`` (with ``Arm_RBV``): 1 fires one pulse at each start time in turn, 0 stops; the put
  completes once armed. A start time already passed fires at once. ``Arm`` returns to 0
  after the last pulse;
* ``Fired_RBV``: pulses sent since the last arm.

Time: the pulses wait on the world's clock (:meth:`~.clock.WorldClock.reserve`, the next one
reserved while the last is handled), and each pulse reaches the detector (``output``, called in
the sequencer's thread) while a jumping clock still stands at its time: in a dry run every
frame starts exactly on its schedule; at real time (``sim serve --speed 1``) it starts late by
this thread's wake-up, which the detector records as the frame's start.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np
from caproto import ChannelDouble, ChannelInteger

from .ca_loopback import setpoint_pairs

#: Longest schedule the ``StartTimes`` waveform holds (``ncsynth.plans.schedule.MAX_FRAMES``).
MAX_PULSES = 20_000


class SimulatedTriggerSequencer:
    """The sequencer's PVs (named ``<prefix>...``, added to ``pvs``, the IOC's table) and its
    pulse thread; ``clock``: the world's; ``output(t)``: a pulse at world time ``t`` (epoch s),
    called in the pulse thread while a jumping clock stands at ``t``."""

    def __init__(self, pvs: dict, prefix: str, clock, output: Callable[[float], None]):
        self.pvs, self.prefix, self.clock, self.output = pvs, prefix, clock, output
        setpoint_pairs(pvs, prefix, [("Arm", "int", 0)], {}, self._put)
        pvs[prefix + "StartTimes"] = ChannelDouble(value=[0.0], max_length=MAX_PULSES, units="s")
        pvs[prefix + "Fired_RBV"] = ChannelInteger(value=0)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Stop firing (the IOC stops serving)."""
        self._cancel.set()

    async def _put(self, name: str, value):
        if name != self.prefix + "Arm":
            return value
        self._cancel.set()  # a running sequence stops (Arm 0, or re-armed)
        if not value:
            return 0
        times = np.atleast_1d(np.asarray(self.pvs[self.prefix + "StartTimes"].value, dtype=float))
        if times.size == 0 or not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
            raise ValueError(f"{self.prefix}StartTimes must be finite and increasing")
        await self.pvs[self.prefix + "Fired_RBV"].write(0)
        self._loop = asyncio.get_running_loop()
        self._cancel = cancel = threading.Event()
        self._thread = threading.Thread(target=self._fire, args=(times.tolist(), cancel),
                                        name="trigger-sequencer", daemon=True)
        self._thread.start()
        return 1

    def _fire(self, times: list[float], cancel: threading.Event) -> None:
        """One pulse per start time, the next reserved on the clock while this one is sent."""
        upcoming: list = []

        def pulse(fired: int) -> None:
            self.output(self.clock.now())
            if fired < len(times):
                upcoming.append(self.clock.reserve(times[fired], cancel))
            self._post(self.prefix + "Fired_RBV", fired)

        upcoming.append(self.clock.reserve(times[0], cancel))
        for fired in range(1, len(times) + 1):
            if not upcoming.pop()(then=lambda fired=fired: pulse(fired)):
                return  # stopped
        if not cancel.is_set():
            self._post(self.prefix + "Arm", 0)
            self._post(self.prefix + "Arm_RBV", 0)

    def _post(self, name: str, value) -> None:
        """Update a PV from the pulse thread (the IOC's loop writes it; none once it stopped)."""
        post_to(self._loop, self.pvs[name].write(value, verify_value=False))


def post_to(loop: asyncio.AbstractEventLoop, coroutine) -> None:
    """Run ``coroutine`` on ``loop`` from another thread, not waiting; dropped if the loop has
    closed (the IOC stopped serving meanwhile)."""
    try:
        asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # loop closed
        coroutine.close()
