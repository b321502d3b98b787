"""A pool of processes for a replay's independent searches.

A frame's fits warm-start from the previous frame's, so frames are analysed in order, and
in one process the same numbers come out whatever the pool; what may run at once without
changing a digit are searches that do not depend on each other: the skewed fit's two cold
starts (:func:`~ncsynth.analysis.skewed.fit_skewed`'s ``mapper``), :func:`search_pool`.
(The frames' chains of fits in a pipeline of two processes:
:mod:`~ncsynth.analysis.replay_pipeline`.)

The workers are spawned, not forked (the catalog's threads are not carried into them), with
the parent's environment (one BLAS thread).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from ncsynth import validation

#: Most worker processes a pool may have.
MAX_PROCESSES = 64


def _import_fitting_code() -> None:
    importlib.import_module("ncsynth.analysis.skewed")  # the searches' code, once per worker


@contextmanager
def search_pool(processes: int | None = None) -> Iterator:
    """A ``map`` running its calls in ``processes`` worker processes (None: one per CPU);
    the built-in ``map`` (this process, no pool) for 1."""
    n = validation.integer("processes", (os.cpu_count() or 1) if processes is None else processes,
                           minimum=1, maximum=MAX_PROCESSES)
    if n == 1:
        yield map
        return
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_import_fitting_code) as pool:
        for _ in range(n):  # start the workers now, not at the first search
            pool.submit(int)
        yield pool.map
