"""Test-wide settings."""

import os
import threading

import pytest

# One BLAS thread, as the CLI sets: the small matrix products of frame synthesis and fitting
# are ~50x slower with multithreaded OpenBLAS on a loaded 2-core machine. Before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: caproto's client threads, shared by every Channel Access channel of the process: an uncaught
#: error ends one (e.g. a subscription given to the activation thread as its IOC went away,
#: caproto issue #712), and every later monitor or search of the process is silent.
CAPROTO_THREADS = frozenset({"activate_subscriptions", "retry"})
_caproto_threads_seen: set[str] = set()


@pytest.fixture(autouse=True)
def caproto_client_survives():
    """Fail the test during which a caproto client thread of this process died, naming it: the
    tests after it in this process would otherwise fail far from the cause (every detector
    frame 'not written to HDF5 within 10 s')."""
    yield
    alive = {thread.name for thread in threading.enumerate()} & CAPROTO_THREADS
    dead = _caproto_threads_seen - alive
    _caproto_threads_seen.clear()
    _caproto_threads_seen.update(alive)
    if dead:
        pytest.fail(f"caproto's {', '.join(sorted(dead))} thread died during this test: the "
                    f"Channel Access monitors and searches of this process are dead from here on")
