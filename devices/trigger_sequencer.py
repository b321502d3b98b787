"""The timing system's pulse sequencer that triggers the SAXS detector on a schedule.

An EPICS areaDetector keeps only a uniform ``AcquirePeriod``; a geometric schedule (seed 000
§S.1.4) is kept by timing hardware wired to the detector's trigger input, given every start
time in advance. :class:`TriggerSequencer` is that hardware's Channel Access interface, four
PVs under its prefix:

========================  =================================================================
``StartTimes``            waveform of doubles: pulse times, POSIX epoch s (the timing
                          system's clock, synchronised with the computers'), increasing
``Arm`` / ``Arm_RBV``     1 fires a pulse at each start time in turn (a time passed fires at
                          once); 0 stops; the put completes once armed; 0 after the last
``Fired_RBV``             pulses sent since the last arm
========================  =================================================================

The simulated IOC serves them (:mod:`ncsynth.simulators.trigger_sequencer`); at a beamline a
small EPICS database over the timing hardware (a PandA sequencer, a delay generator's list
mode, an event system's timestamped events) gives the same names. A schedule of ``n`` pulses
is ``8·n`` bytes: clients on libca (pyepics) need ``EPICS_CA_MAX_ARRAY_BYTES`` above that.
"""

from __future__ import annotations

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO


class TriggerSequencer(Device):
    """The pulse sequencer at ``prefix`` (see module docstring)."""

    start_times = Cpt(EpicsSignal, "StartTimes", kind="omitted")
    arm = Cpt(EpicsSignal, "Arm", kind="omitted")
    fired = Cpt(EpicsSignalRO, "Fired_RBV", kind="omitted")

    def fire_at(self, start_times, timeout_s: float) -> None:
        """Load ``start_times`` (epoch s) and arm; returns once the sequencer is armed (each
        put waits at most ``timeout_s``)."""
        self.start_times.put(np.asarray(start_times, dtype=float), wait=True, timeout=timeout_s)
        self.arm.put(1, wait=True, timeout=timeout_s)

    def disarm(self) -> None:
        """Stop firing (not waiting for the IOC)."""
        self.arm.put(0, wait=False)
