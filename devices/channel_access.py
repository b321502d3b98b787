"""What an ophyd device over Channel Access needs beyond ophyd: patient time-outs, a clean
release of its channels, and forgetting a staging whose IOC is gone.

Used by :class:`~ncsynth.devices.area_detector.AreaDetectorSAXS`.
"""

from __future__ import annotations

import threading

from ophyd import get_cl
from ophyd.device import Staged
from ophyd.signal import EpicsSignalBase

#: Channel Access connection and read time-outs (s) of the process's EPICS signals: ophyd's
#: 1 s and 2 s are missed on a loaded machine (seen: a 2-core host running two test workers).
CONNECTION_TIMEOUT_S = READ_TIMEOUT_S = 10.0


def patient_channel_access() -> None:
    """:data:`CONNECTION_TIMEOUT_S` and :data:`READ_TIMEOUT_S` for every EPICS signal of this
    process, unless one was made before (ophyd allows it only then; e.g. a beamline start-up
    that chose its own: kept)."""
    try:
        EpicsSignalBase.set_defaults(connection_timeout=CONNECTION_TIMEOUT_S, timeout=READ_TIMEOUT_S)
    except RuntimeError:
        pass


def drain_utility_threads(timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until ophyd's utility threads, which read each new
    channel's metadata, have run every task queued before now: one barrier task per thread,
    the queue being first in, first out."""
    dispatcher = get_cl().get_dispatcher()
    threads = len(getattr(dispatcher, "_utility_threads", ()))
    if not threads:  # no channel made yet in this process
        return
    barrier = threading.Barrier(threads + 1, timeout=timeout_s)

    def meet() -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the wait ran out: the queue stays as it is
            pass

    for _ in range(threads):
        dispatcher.schedule_utility_task(meet)
    meet()


def forget_staging(device) -> None:
    """Mark ``device`` and its components unstaged without restoring any setting (ophyd's
    ``unstage`` without the Channel Access puts)."""
    for name in device._sub_devices:
        forget_staging(getattr(device, name))
    device._original_vals.clear()
    device._staged = Staged.no
