"""Processes for a replay's analysis: the independent searches, and the frames' first stage.

A frame's fits warm-start from the previous frame's, so frames are analysed in order, and
in one process the same numbers come out whatever the pool; what may run at once without
changing a digit:

* searches that do not depend on each other (the skewed fit's two cold starts,
  :func:`~ncsynth.analysis.skewed.fit_skewed`'s ``mapper``): :func:`search_pool`;
* the two chains of a stored run's frames: reduction and Gaussian fit (each warm-started from
  the last good Gaussian fit) ahead in a process of their own, the skewed and two-population
  fits (which need the frame's Gaussian fit) behind them in the replaying process, a pipeline:
  :class:`FirstStage`. The first stage assumes that every successful Gaussian fit stays the
  frame's fit; the replaying process takes a frame's result only if it was computed from the
  very warm start it would use itself (the frame index of the fit it started from), and
  otherwise reduces and fits that frame and all later ones itself.

The workers are spawned, not forked (the catalog's threads are not carried into them), with
the parent's environment (one BLAS thread).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from ncsynth import validation

#: What the first stage sends for a frame whose result does not pickle: "fit it there".
_HERE = "fit in the replaying process"

#: Most worker processes a pool may have.
MAX_PROCESSES = 64


def _import_fitting_code() -> None:
    import ncsynth.analysis.skewed  # noqa: F401  (the searches' code, loaded once per worker)


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


class FirstStage:
    """The reduced pattern and Gaussian fit of every primary frame of one stored raw run
    (``documents``: its documents in emission order), computed in a spawned process from the
    start on, for :class:`~ncsynth.analysis.live.SAXSAnalysis` (``first_stage``); ``settings``
    as the analysis's. A context manager: the process is ended at exit."""

    def __init__(self, documents, *, root_map: dict | None = None, **settings):
        context = multiprocessing.get_context("spawn")
        self._results, sender = context.Pipe(duplex=False)
        receiver, self._documents = context.Pipe(duplex=False)
        # the documents go through a pipe of their own, from a thread: a process's spawn
        # arguments that fill the pipe block the caller until the child has read them (for
        # ever if it dies first), and the child reads them only once it has started
        self._process = context.Process(target=_first_stage, daemon=True, name="first-stage",
                                        args=(receiver, sender, root_map, settings))
        self._process.start()
        sender.close()  # this process's copies: the pipes end when the worker does
        receiver.close()
        threading.Thread(target=self._send, args=(list(documents),), daemon=True,
                         name="first-stage-documents").start()
        self._usable = True
        #: frames whose result came from the worker; frames fitted in the replaying process
        self.taken, self.refused = 0, 0

    def take(self, seq_num: int, good_frame: int | None):
        """The first stage of the next primary frame (``seq_num``), as an object whose
        ``result()`` returns (pattern, fit) or raises what the frame raised, if the worker
        fitted it from the warm start of frame ``good_frame`` (None: no good fit yet); else
        None, and None for every frame after a mismatch (the caller fits them itself)."""
        if self._usable:
            try:
                seq, guess_frame, outcome = self._results.recv()
            except (EOFError, OSError):  # the worker is gone
                seq, guess_frame, outcome = None, None, None
            if seq == seq_num and guess_frame == good_frame:
                if not (isinstance(outcome, str) and outcome == _HERE):
                    self.taken += 1
                    return _Outcome(outcome)
            else:
                self._usable = False
        self.refused += 1
        return None

    def _send(self, documents) -> None:
        try:
            self._documents.send(documents)
        except OSError:  # the worker is gone: take() finds its results pipe closed
            pass
        finally:
            self._documents.close()

    def close(self) -> None:
        self._usable = False
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._results.close()

    def __enter__(self) -> "FirstStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Outcome:
    def __init__(self, outcome):
        self._outcome = outcome

    def result(self):
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome


def _first_stage(receiver, sender, root_map, settings) -> None:
    """The worker: the documents through a first-stage analysis, each frame's result sent."""
    import pickle

    try:
        documents = receiver.recv()
    except EOFError:
        return
    finally:
        receiver.close()

    from ncsynth import quiet
    from ncsynth.analysis.live import SAXSAnalysis, replay

    quiet.configure()

    class FirstStageOnly(SAXSAnalysis):
        def _analyse_frame(self, doc):
            good_frame = self._good_frame
            try:
                outcome = self._single_fit(doc)
            except BaseException as error:  # sent, and raised there, as if raised there
                outcome = error
            try:
                pickle.dumps(outcome)
            except Exception:
                outcome = _HERE
            sender.send((doc["seq_num"], good_frame, outcome))
            if isinstance(outcome, tuple) and outcome[1].success:
                self._last_good, self._good_frame = outcome[1], len(self.fits)
            self.fits.append(None)  # the frame index of the next frame
            if isinstance(outcome, self._fatal_errors):
                raise outcome

        def _error(self, what, message):  # told by the replaying process
            self.errors.append((what, message))

    try:
        replay(documents, lambda name, doc: None, root_map=root_map, kind=FirstStageOnly,
               **settings)
    except Exception:  # a frame file that cannot be read: sent above, raised there
        pass
    finally:
        sender.close()
