"""A bluesky callback run off the RunEngine's thread, dropping events rather than making
acquisition wait (:class:`ThreadedCallback`)."""

from __future__ import annotations

import logging
import queue
import threading

from ncsynth.queues import wait_drained

logger = logging.getLogger(__name__)

_STOP_WORKER = object()
#: Documents that may be dropped when the analysis falls behind; all others (start, descriptor,
#: stream_resource, stream_datum, stop, ...) are few and always kept so that runs stay well-formed.
DROPPABLE = frozenset({"event", "event_page"})


class ThreadedCallback:
    """Run ``callback(name, doc)`` on a worker thread so that the caller never waits for it.

    Documents go on a queue; a worker thread feeds them to ``callback`` in order.

    * A failure inside ``callback`` is logged, appended to :attr:`errors` as
      ``(name, "Type: message")`` and the worker goes on with the next document: no exception
      reaches the RunEngine.
    * At most ``maxsize`` events (``event``/``event_page``) wait at once. When the analysis has
      fallen that far behind, a further event is DROPPED from the analysis (counted in
      :attr:`dropped`, warning logged) rather than making the RunEngine wait. The trade-off:
      acquisition keeps its schedule and its data (the RunEngine and every other subscriber,
      e.g. the catalog, still get every document) while the live analysis shows gaps;
      replaying the stored run through a fresh router gives the complete analysis. Start,
      descriptor, stream_resource/stream_datum and stop documents are never dropped (a handful per run), so
      the analysis always sees whole runs.
    * :meth:`flush` waits until everything queued so far is processed; :meth:`close` ends the worker.

    Not bluesky's ``BufferingWrapper`` (bluesky 1.15): its worker never marks documents done, so
    it cannot be flushed at a run's end, it records no failures, and a full queue raises into
    the RunEngine instead of dropping an event.
    """

    def __init__(self, callback, *, maxsize: int = 1000, name: str = "ncsynth-analysis"):
        if not callable(callback):
            raise TypeError(f"callback must be callable (name, doc), got {type(callback).__name__}")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, got {maxsize!r}")
        self.callback = callback
        self.maxsize = maxsize
        #: events dropped because the queue was full
        self.dropped = 0
        #: (document name, "Type: message") of every exception raised by the callback
        self.errors: list[tuple[str, str]] = []
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._queued_events = 0
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def __call__(self, name: str, doc: dict) -> None:
        if self._closed:
            raise RuntimeError("this ThreadedCallback is closed")
        if name in DROPPABLE:
            with self._lock:
                if self._queued_events >= self.maxsize:
                    self.dropped += 1
                    dropped = self.dropped
                else:
                    self._queued_events += 1
                    dropped = 0
            if dropped:
                if dropped == 1 or dropped % 100 == 0:
                    logger.warning("analysis is %d events behind: %s dropped from the ANALYSIS only "
                                   "(%d so far; acquisition and storage are unaffected, replay "
                                   "the run to analyse every frame)", self.maxsize, name, dropped)
                return
        self._queue.put((name, doc))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP_WORKER:
                    return
                name, doc = item
                try:
                    self.callback(name, doc)
                except Exception as error:
                    logger.exception("analysis callback failed on a %r document; going on", name)
                    self.errors.append((name, f"{type(error).__name__}: {error}"))
                finally:
                    if name in DROPPABLE:
                        with self._lock:
                            self._queued_events -= 1
            finally:
                self._queue.task_done()

    @property
    def backlog(self) -> int:
        """Documents waiting for the worker."""
        return self._queue.qsize()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every document queued so far is processed; False if ``timeout_s`` passed first."""
        return wait_drained(self._queue, timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Process what is queued, then end the worker; False if it did not end in ``timeout_s``."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP_WORKER)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
