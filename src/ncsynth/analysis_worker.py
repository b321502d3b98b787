"""The dry run's live analysis in a process of its own.

The live analysis (:class:`~ncsynth.analysis.live.LiveAnalysis`: reduction, the Gaussian,
skewed and two-population fits of every frame, the kinetics at the stop) is most of a fast
dry run's interpreter time. In the dry run's process it shares one GIL with the RunEngine,
the simulated beamline and the devices; here it runs beside them on the other core.
:class:`AnalysisProcess` is the RunEngine subscriber: every document goes, in order, to a
child process, ``python -m ncsynth.analysis_worker FIGURE_DIR MAXSIZE``, which feeds the same
``LiveAnalysis`` and :class:`~ncsynth.analysis.display.LiveFigure` the dry run used in-process;
the derived run's documents come back and go to ``emit`` (the catalog writer) from a receiving
thread, in the order the analysis emitted them. Same documents in, same code: same fits.

Wire (pickles): parent -> child ``("doc", name, doc)``, ``("flush",)``, ``("close",)``;
child -> parent ``("emit", name, doc)``, ``("flushed", summary, figure_paths)`` after each
flush, ``("error", text)`` when the analysis could not start.
"""

from __future__ import annotations

import logging
import pickle
import queue
import subprocess
import sys
import threading

from ncsynth.worker_process import close_quietly, how_it_ended

logger = logging.getLogger(__name__)

_NO_SUMMARY = {"final_radius_nm": None, "concentration_molar": None, "yield_fraction": None}


class AnalysisProcess:
    """RunEngine subscriber running ``LiveAnalysis(emit=...)`` + ``LiveFigure(figure_dir)`` in a
    child process (see module); :meth:`flush`, :meth:`summary`, :attr:`paths` and :meth:`close`
    as the in-process pair offers them.

    ``maxsize``: the analysis's event backlog before it drops events (``LiveAnalysis``); a dry
    run passes one it never reaches, so that its fits do not depend on the machine's speed.
    """

    def __init__(self, emit, figure_dir, *, maxsize: int = 1000):
        self._emit = emit
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ncsynth.analysis_worker", str(figure_dir), str(int(maxsize))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            process_group=0)  # see ncsynth.storage.writer_worker.detach_from_group_signals
        self._outbox: queue.Queue = queue.Queue()
        self._flushed = threading.Condition()
        self._flushes_sent = 0
        self._flushes_done = 0
        self._ended = False  # the child's replies have ended (it exited or died)
        self._summary: dict | None = None
        #: figure files the analysis wrote (known after a flush)
        self.paths: list = []
        #: what went wrong with the child process, if anything
        self.error: str | None = None
        self._closed = False
        self._sender = threading.Thread(target=self._send, name="ncsynth-analysis-send", daemon=True)
        self._receiver = threading.Thread(target=self._receive, name="ncsynth-analysis-receive",
                                          daemon=True)
        self._sender.start()
        self._receiver.start()

    def __call__(self, name: str, doc: dict) -> None:
        if self._closed:
            raise RuntimeError("this AnalysisProcess is closed")
        self._outbox.put(("doc", name, doc))

    def _send(self) -> None:
        pipe = self._process.stdin
        while True:
            item = self._outbox.get()
            try:
                pickle.dump(item, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                if self._outbox.empty() or item[0] != "doc":
                    pipe.flush()
            except (BrokenPipeError, OSError, ValueError):  # said as its replies' end says it
                self._lost(f"the analysis process {how_it_ended(self._process)}")
                return
            if item[0] == "close":
                try:
                    pipe.close()
                except OSError:
                    pass
                return

    def _receive(self) -> None:
        pipe = self._process.stdout
        while True:
            try:
                message = pickle.load(pipe)
            except (EOFError, OSError, pickle.UnpicklingError):
                if not self._closed:
                    self._lost(f"the analysis process {how_it_ended(self._process)}")
                with self._flushed:
                    self._ended = True
                    self._flushed.notify_all()
                return
            kind = message[0]
            if kind == "emit":
                try:
                    self._emit(message[1], message[2])
                except Exception:  # as an analysis thread's emit failing: logged, going on
                    logger.exception("storing the analysis's %r document failed", message[1])
            elif kind == "flushed":
                with self._flushed:
                    self._summary, self.paths = message[1], list(message[2])
                    self._flushes_done += 1
                    self._flushed.notify_all()
            elif kind == "error":
                self._lost(message[1])

    def _lost(self, why: str) -> None:
        if self.error is None:
            self.error = why
            logger.error("live analysis: %s", why)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every document sent so far is analysed and its results stored by
        ``emit``; False if ``timeout_s`` passed first."""
        with self._flushed:
            self._flushes_sent += 1
            target = self._flushes_sent
        self._outbox.put(("flush",))
        with self._flushed:
            return self._flushed.wait_for(lambda: self._flushes_done >= target or self._ended,
                                          timeout_s) and self._flushes_done >= target

    def summary(self) -> dict:
        """``LiveAnalysis.summary()`` as of the last :meth:`flush`."""
        if self._summary is None:
            return {**_NO_SUMMARY, "analysis_dropped_events": 0, "analysis_worker_errors": 0,
                    **({"analysis_error": self.error} if self.error else {})}
        return dict(self._summary)

    def close(self, timeout_s: float | None = 60.0) -> None:
        """End the child process (after what it holds is analysed)."""
        if self._closed:
            return
        self._closed = True
        self._outbox.put(("close",))
        self._sender.join(timeout_s)
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._receiver.join(timeout_s)
        for pipe in (self._process.stdin, self._process.stdout):  # also after the child died
            close_quietly(pipe)


class InProcessAnalysis:
    """The same subscriber in this process (a ``LiveAnalysis`` thread): the dry run's path
    before :class:`AnalysisProcess`, kept for comparison (``dry_run(processes=False)``)."""

    def __init__(self, emit, figure_dir, *, maxsize: int = 1000):
        from pathlib import Path

        from ncsynth.analysis.display import LiveFigure
        from ncsynth.analysis.live import LiveAnalysis

        self._figure = LiveFigure(Path(figure_dir))

        def both(name, doc):
            emit(name, doc)
            self._figure(name, doc)

        self._live = LiveAnalysis(emit=both, maxsize=maxsize)
        self.error = None

    def __call__(self, name: str, doc: dict) -> None:
        self._live(name, doc)

    @property
    def paths(self) -> list:
        return list(self._figure.paths)

    def flush(self, timeout_s: float | None = None) -> bool:
        return self._live.flush(timeout_s)

    def summary(self) -> dict:
        return self._live.summary()

    def close(self, timeout_s: float | None = 60.0) -> None:
        self._live.close(timeout_s)


def _serve(figure_dir: str, maxsize: int, requests, replies) -> None:
    lock = threading.Lock()

    def reply(*message) -> None:
        with lock:  # the analysis thread emits, the main thread answers flushes
            pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()

    try:
        from pathlib import Path

        from ncsynth.analysis.display import LiveFigure
        from ncsynth.analysis.live import LiveAnalysis

        figure = LiveFigure(Path(figure_dir))

        def emit(name, doc):
            reply("emit", name, doc)
            figure(name, doc)

        live = LiveAnalysis(emit=emit, maxsize=maxsize)
    except BaseException as err:
        reply("error", f"the analysis could not start: {type(err).__name__}: {err}")
        return
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:  # the dry run's process is gone: nobody takes the results any more
            return
        if request[0] == "doc":
            live(request[1], request[2])
        elif request[0] == "flush":
            live.flush()
            reply("flushed", live.summary(), [str(p) for p in figure.paths])
        elif request[0] == "close":
            live.close()
            return


def main(argv: list[str] | None = None) -> None:
    from ncsynth.storage.writer_worker import serve_over_stdio

    argv = sys.argv[1:] if argv is None else argv
    serve_over_stdio(lambda requests, replies: _serve(argv[0], int(argv[1]), requests, replies))


if __name__ == "__main__":
    main()
