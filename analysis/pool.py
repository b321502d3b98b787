"""Processes for the analysis' independent work: a frame's skewed and two-population fits
while the next frame is reduced, and the skewed fit's two cold starts.

A frame's fits warm-start from the previous frame's, so frames are analysed in order, and
in one process the same numbers come out whatever the pool. What a pool can run at once
without changing a digit: the searches that do not depend on each other
(:func:`~ncsynth.analysis.skewed.fit_skewed`'s ``mapper``), and one frame's second stage
(skewed fit, preferred size model, :func:`~ncsynth.analysis.live.second_stage`) beside the next
frame's reduction and Gaussian fit (:class:`~ncsynth.analysis.live.SAXSAnalysis` submits it
to the pool and waits for it before the following frame's, whose warm starts it gives). The
workers are spawned, not forked (the catalog's threads are not carried into them), with the
parent's environment (one BLAS thread), and import the fitting code as they start, before
the first search.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from ncsynth import validation

#: Most worker processes a pool may have.
MAX_PROCESSES = 64


def _import_fitting_code() -> None:
    import ncsynth.analysis.live  # noqa: F401  (the fitting code, loaded once per worker)


class SearchPool:
    """A ``map`` over worker processes (``pool(fn, *iterables)``, the executor's ``map``) that
    also takes single calls (``submit(fn, *args)`` → a future)."""

    def __init__(self, executor: ProcessPoolExecutor):
        self.submit = executor.submit
        self._map = executor.map

    def __call__(self, fn, *iterables):
        return self._map(fn, *iterables)


@contextmanager
def search_pool(processes: int | None = None) -> Iterator:
    """A :class:`SearchPool` of ``processes`` worker processes (None: one per CPU); the
    built-in ``map`` (this process, no pool) for 1."""
    n = validation.integer("processes", (os.cpu_count() or 1) if processes is None else processes,
                           minimum=1, maximum=MAX_PROCESSES)
    if n == 1:
        yield map
        return
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_import_fitting_code) as pool:
        for _ in range(n):  # start the workers now, not at the first search
            pool.submit(int)
        yield SearchPool(pool)
