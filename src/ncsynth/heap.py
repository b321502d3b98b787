"""Short garbage-collection pauses while a command runs its plan.

A full (generation-2) collection looks at every object the process holds and stops every
thread meanwhile, the GIL held (but while finalisers of the garbage run, which may block the
thread that collects). In a dry run that includes the simulated instruments: their event loop
answers nobody until it ends, and the devices' wall-clock reply time-outs run on. Measured in
the test suite's worker processes (~0.6-0.95 million objects after their first tests; three
workers on 2 cores, 2026-12-07, a watchdog on the simulators' loop): full collections of
0.4-1.9 s in dry runs' set-up, plans and tear-down, several per dry run, and the loop stalled
as long (an injector ``STATUS?`` failed its three 0.5 s attempts once, in CI). With the heap
frozen, no collection during a plan took more than 0.1 s but one whose finalisers closed
heater ports left open (4.2 s, pyserial sleeps 0.3 s per port; those ports are now closed:
:meth:`~ncsynth.instruments.Instruments.close`). ``ncsynth dry-run`` alone holds ~0.5 million
objects when its plan starts; its collections took up to 0.19 s.

:func:`frozen_heap` moves everything the process holds when the plan starts (imports, the
catalog, the devices, the simulated world) out of the collector's sight (``gc.freeze``), so
that a full collection during the plan looks only at what the plan made, and gives it back
afterwards (``gc.unfreeze``: cyclic garbage of before is then collected as usual). ncsynth's
:class:`~ncsynth.run_engine.RunEngine` uses it for every plan it runs (dry runs, sessions). The
blocks nest: the heap thaws when the outermost one ends (an abort that a SIGTERM handler calls
while ``RE(plan)`` is under way).
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.RLock()  # re-entrant: a signal handler's abort may come in on the same thread
_depth = 0  # frozen_heap blocks open


@contextlib.contextmanager
def frozen_heap():
    """Leave what the process holds now out of garbage collections until the block ends (the
    outermost block, if they nest)."""
    global _depth
    with _lock:
        if _depth == 0:
            gc.freeze()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
