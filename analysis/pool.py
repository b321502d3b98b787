"""A pool of processes for independent searches.

A frame's fits warm-start from the previous frame's, so frames are analysed in order, and
in one process the same numbers come out whatever the pool; what may run at once without
changing a digit are searches that do not depend on each other: the skewed fit's two cold
starts (:func:`~ncsynth.analysis.skewed.fit_skewed`'s ``mapper``) in a replay, the McSAS
refits of the flow dry run's noise bootstrap (:mod:`~ncsynth.analysis.mcsas_noise`).
(The frames' chains of fits in a pipeline of two processes:
:mod:`~ncsynth.analysis.replay_pipeline`.)

The workers are spawned, not forked (the catalog's threads are not carried into them), with
the parent's environment (one BLAS thread). They ignore Ctrl-C: the pool's owner takes it,
and its pool ends them (an interrupted ``map`` cancels the calls not started).
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from ncsynth import validation

#: Most worker processes a pool may have.
MAX_PROCESSES = 64


def _prepare_worker(code: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C held back since the start is dropped
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    importlib.import_module(code)  # the searches' code, once per worker


@contextmanager
def _workers_start_deaf_to_ctrl_c() -> Iterator[None]:
    """Processes started meanwhile begin with SIGINT blocked (a thread's signal mask is
    inherited across fork and exec) until :func:`_prepare_worker` ignores it: a Ctrl-C
    reaching a worker while it still imports would otherwise kill it and break the pool (a
    worker may be started at any submit). Only this thread's delivery is held back meanwhile:
    a Ctrl-C still reaches this process through its other threads, or when the mask is
    restored."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def search_pool(processes: int | None = None, code: str = "ncsynth.analysis.skewed") -> Iterator:
    """A ``map`` running its calls in ``processes`` worker processes (None: one per CPU);
    the built-in ``map`` (this process, no pool) for 1. ``code``: the module of the calls,
    imported by each worker as it starts."""
    n = validation.integer("processes", (os.cpu_count() or 1) if processes is None else processes,
                           minimum=1, maximum=MAX_PROCESSES)
    if n == 1:
        yield map
        return
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=functools.partial(_prepare_worker, code)) as pool:
        def mapper(function, *iterables):
            with _workers_start_deaf_to_ctrl_c():  # submits every call now: any worker starts here
                return pool.map(function, *iterables)

        with _workers_start_deaf_to_ctrl_c():
            for _ in range(n):  # start the workers now, not at the first search
                pool.submit(int)
        yield mapper
