"""A replay on two cores: the frames' skewed fits in a process of their own, same numbers.

A frame's analysis (:class:`~ncsynth.analysis.run_analysis.SAXSAnalysis`, seed 000 §S.2) is three
chains, each warm-started from the last successful result in it: (A) the reduction and
Gaussian fit, (B) the skewed fit (from the frame's Gaussian fit and the last skewed fit),
(C) the preferred size model (from both, and the last two-population fit). On the default
575-frame run A plus C plus the frame's events take about as much CPU as B alone.
:class:`PipelinedAnalysis` runs A and C in the replaying process and B in a worker
(:class:`SkewedStage`): while the worker fits frame i, the replaying process reduces and
fits the next frames, and records each frame (C, then its events, in frame order) as soon
as its skewed fit is back.

Nothing may change a digit, and two things are speculative: A runs ahead assuming that each
successful Gaussian fit stays the frame's fit (an exception in the frame's B or C makes it a
failed fit, and the next frame's warm start the one before), and the worker's chain assumes
the same of each successful skewed fit. So every frame carries the index of the frame its
warm start came from; at the first mismatch the pipeline stops, and that frame and all later
ones are analysed wholly in the replaying process, as without it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import threading
from collections import deque

from ncsynth.analysis.derived_run import BACKGROUND, INJECTION
from ncsynth.analysis.run_analysis import SAXSAnalysis
from ncsynth.analysis.pool import search_pool
from ncsynth.analysis.saxs import SphereFit
from ncsynth.analysis.skewed import SkewedFit, fit_skewed

#: Most frames reduced and Gaussian-fitted ahead of the oldest one not yet recorded.
DEPTH = 32

#: What the worker sends for a skewed fit whose exception does not pickle: "fit it there".
_HERE = "fit in the replaying process"
#: The index of a request to call a function (:meth:`SkewedStage.call`).
_CALL = -1


class SkewedStage:
    """The skewed fits (:func:`~ncsynth.analysis.skewed.fit_skewed`, each warm-started from
    the last successful one) of one run's frames, in order, in a worker process: forked (it
    starts at once, with the fitting code loaded) where the platform can, else spawned; its
    cold starts in a :func:`~ncsynth.analysis.pool.search_pool` of ``processes`` (1: none).
    The requests are sent from a thread, so that the replaying process never waits for the
    worker to read them. Once the frames are done, :meth:`call` runs a function there (the
    report figure, while the replaying process feeds the catalog writer's thread, which a
    figure drawn here would hold back at every document). A context manager: the worker is
    ended at exit."""

    def __init__(self, processes: int = 1):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        requests, self._requests = context.Pipe(duplex=False)
        self._results, results = context.Pipe(duplex=False)
        self._process = context.Process(target=_skewed_fits, daemon=True, name="skewed-fits",
                                        args=(requests, results, processes,
                                              self._requests, self._results))
        self._process.start()
        requests.close()  # this process's copies: each pipe ends when its other side does
        results.close()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send, daemon=True, name="skewed-fit-requests")
        self._sender.start()

    def submit(self, index: int, pattern, fit: SphereFit) -> None:
        """Ask for the skewed fit of frame ``index`` (its reduced pattern and Gaussian fit)."""
        self._outbox.put((index, pattern.q_nm, pattern.intensity_cm, pattern.sigma_cm, fit))

    def ready(self) -> bool:
        """Whether the next answer (or the worker's end) is there."""
        try:
            return self._results.poll()
        except OSError:
            return True

    def result(self, index: int):
        """(the frame index of the skewed fit it started from, or None; the :class:`SkewedFit`,
        the exception it raised, or :data:`_HERE`) for frame ``index``, the oldest asked for
        and not yet answered; None if the worker is gone or the answer cannot be used."""
        try:
            answer, guess_frame, outcome = self._results.recv()
        except Exception:  # EOF: the worker is gone; an exception that does not unpickle
            return None
        return (guess_frame, outcome) if answer == index else None

    def call(self, function, *args) -> bool:
        """Run ``function(*args)`` in the worker once it has answered every frame; False
        (nothing asked) if the worker is gone. :meth:`called` gives the result."""
        if not self._process.is_alive():
            return False
        self._outbox.put((_CALL, function, args))
        return True

    def called(self):
        """The result of the function of :meth:`call` (it must not raise), None if the worker
        is gone."""
        answer = self.result(_CALL)
        return None if answer is None else answer[1]

    def _send(self) -> None:
        while (request := self._outbox.get()) is not None:
            try:
                self._requests.send(request)
            except OSError:  # the worker is gone: result() finds its pipe closed
                break
        self._requests.close()

    def close(self) -> None:
        """End the requests; the worker answers those it has and exits (ended after 2 s)."""
        self._outbox.put(None)
        self._sender.join()
        self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._results.close()

    def __enter__(self) -> "SkewedStage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _skewed_fits(requests, results, processes: int, *parent_ends) -> None:
    """The worker: each requested frame's skewed fit, answered in order, until the requests end."""
    for end in parent_ends:  # a forked worker's copies of the replaying process's ends
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C ends the replaying process, which ends this
    with search_pool(processes) as mapper:
        _answer(requests, results, mapper)
    results.close()


def _answer(requests, results, mapper) -> None:
    last = last_frame = None
    while True:
        try:
            index, *request = requests.recv()
        except EOFError:
            break
        if index == _CALL:
            function, args = request
            results.send((_CALL, None, function(*args)))
            continue
        q, y, s, fit = request
        try:
            outcome = fit_skewed(q, y, s, fit, guess=last, mapper=mapper)
        except Exception as error:  # raised in the replaying process, as if raised there
            outcome = error if _travels(error) else _HERE
        results.send((index, last_frame, outcome))
        if isinstance(outcome, SkewedFit) and outcome.success:
            last, last_frame = outcome, index


def _travels(error: Exception) -> bool:
    """Whether ``error`` comes out of a pipe as it went in (an exception whose constructor
    takes other arguments than it keeps does not unpickle); a SkewedFit always does."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True


class PipelinedAnalysis(SAXSAnalysis):
    """:class:`~ncsynth.analysis.run_analysis.SAXSAnalysis` with the skewed fits in ``stage`` (see the
    module docstring); what it emits is SAXSAnalysis's, document for document."""

    def __init__(self, *args, stage: SkewedStage, **kwargs):
        super().__init__(*args, **kwargs)
        self._stage: SkewedStage | None = stage
        #: frames fitted ahead, not yet recorded: (event, pattern, Gaussian fit or the
        #: exception of its reduction or fit, the frame index of the fit it started from)
        self._pending: deque = deque()
        self._ahead: tuple[SphereFit | None, int | None] = (None, None)  # A's last good fit
        #: frames whose skewed fit came from the stage; frames analysed wholly here
        self.taken, self.refused = 0, 0

    def descriptor(self, doc):
        self._drain()
        super().descriptor(doc)

    def event(self, doc):
        if self._streams.get(doc["descriptor"]) in (INJECTION, BACKGROUND):
            self._drain()  # t = 0 and the background are those of the frames before
        super().event(doc)

    def stop(self, doc):
        self._drain()
        super().stop(doc)

    def _analyse_frame(self, doc):
        if self._stage is None:
            self.refused += 1
            super()._analyse_frame(doc)
            return
        index = len(self.fits) + len(self._pending)
        guess, guess_frame = self._ahead
        pattern = None
        try:
            pattern, fit = self._single_fit(doc, guess)
        except self._fatal_errors:
            self._drain()  # the frames before are emitted, as in one process
            raise
        except Exception as error:
            fit = error
        else:
            if fit.success:
                self._ahead = (fit, index)
            self._stage.submit(index, pattern, fit)
        self._pending.append((doc, pattern, fit, guess_frame))
        while self._pending and (len(self._pending) > DEPTH or self._stage is None
                                 or not isinstance(self._pending[0][2], SphereFit)
                                 or self._stage.ready()):
            self._record_next()

    def _drain(self) -> None:
        while self._pending:
            self._record_next()

    def _record_next(self) -> None:
        doc, pattern, fit, guess_frame = self._pending.popleft()
        index = len(self.fits)
        answer = None
        if self._stage is not None and guess_frame == self._good_frame:
            if not isinstance(fit, SphereFit):  # its reduction or Gaussian fit raised
                self.taken += 1
                self._record_frame(doc, None, *self._failed_frame(doc, fit))
                return
            answer = self._stage.result(index)
        if answer is None or answer[0] != self._skewed_frame:
            self._stop_pipeline()
            self.refused += 1
            super()._analyse_frame(doc)
            return
        self.taken += 1
        skewed = answer[1]
        self._finish_frame(doc, pattern, fit, None if isinstance(skewed, str) else skewed)  # _HERE

    def _stop_pipeline(self) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
