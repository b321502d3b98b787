"""Short garbage-collection pauses while a command runs its plan.

A full (generation-2) collection looks at every object the process holds and stops every
thread meanwhile, the GIL held. In a dry run that includes the simulated instruments: their
event loop answers nobody until it ends, and the devices' wall-clock reply time-outs run on.
Measured in the test suite's worker processes (~0.6-0.95 million objects after their first
tests; three workers on 2 cores, 2026-12-07): full collections of 0.4-1.9 s, several per dry
run, and the simulators' loop stalled as long (an injector ``STATUS?`` failed its three
0.5 s attempts once, in CI). ``ncsynth dry-run`` alone holds ~0.5 million objects when its
plan starts; its collections took up to 0.19 s.

:func:`frozen_heap` moves everything the process holds when the plan starts (imports, the
catalog, the devices, the simulated world) out of the collector's sight (``gc.freeze``), so
that a full collection during the plan looks only at what the plan made, and gives it back
afterwards (``gc.unfreeze``: cyclic garbage of before is then collected as usual).
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def frozen_heap():
    """Leave what the process holds now out of garbage collections until the block ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
