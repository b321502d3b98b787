"""The catalog writer: a RunEngine subscriber that never loses a document and never makes
the RunEngine wait on Tiled.

``writer = catalog.writer(); RE.subscribe(writer)``. For each document, on the RunEngine's
thread, the writer

1. appends it to the run's journal (:mod:`ncsynth.storage.journal`: flushed per document,
   fsync-ed for start/descriptor/resource/stream_resource/stop and at least once a second), then
2. puts it on a bounded queue. A background thread takes documents off the queue and feeds a
   per-run ``bluesky_tiled_plugins.TiledWriter``. When the queue is full (the catalog has fallen
   ``queue_size`` documents behind) the RunEngine blocks until there is room, with a logged
   warning: documents are never dropped.
3. At the run's stop document the RunEngine thread waits (``wait_at_stop=True``, at most
   ``stop_timeout_s``) until the background thread has committed the whole run, so that after
   ``RE(plan)`` returns the catalog holds the run; the journal is then moved to
   ``journal/complete``. If Tiled fails on a run, the run is logged in ``failed_runs`` and its
   journal stays in ``journal/active`` for :meth:`Catalog.recover`.

Commit policy. ``TiledWriter`` buffers events (and stream datums) until it holds
``batch_size`` of them or the stop document arrives; its own choice is batching the whole run,
or writing each event (``batch_size=1``). Measured here (tiled 0.2.20, bluesky-tiled-plugins
2.0.12, in-process app on SQLite, 2 shared cores; ``python benchmarks/store.py``, 300-event
``count`` of ophyd.sim.det): no subscriber 980 events/s; TiledWriter on the RunEngine thread
with whole-run batching +0.7 ms per event (595 events/s); TiledWriter with ``batch_size=1``
23 ms per event (34 ms in a first trial: one HTTP round trip + SQLite append per event, i.e.
at most ~30-40 events/s); this writer 554 events/s waiting at stop, 659 events/s with
``wait_at_stop=False`` (ratios 0.57 and 0.67 to the baseline: the background thread shares the
GIL with the RunEngine, it never blocks it).

Batching the whole run would leave a killed run with no events in the catalog; one write per
event cannot keep up with a fast-forwarded dry run. So the background thread keeps
TiledWriter's large batch and commits whatever it holds back ``flush_interval_s`` (default 1 s)
after the oldest of it arrived, busy or idle: one append per second for everything that
arrived in that second. A reader in another process sees the run grow while it is acquired,
at most ~``flush_interval_s`` behind. ``flush()`` commits at once and waits.

Where Tiled runs. ``worker="thread"`` (default): the background thread drives ``TiledWriter`` and
the in-process Tiled app, sharing the GIL with the RunEngine. ``worker="process"`` (the dry
run's): the background thread forwards each document and each commit, in the same order and at
the same moments, to a worker process that holds the app (:mod:`~ncsynth.storage.writer_worker`):
the same catalog, written beside the RunEngine instead of under its GIL; a worker that fails or
dies fails the run like a refusing catalog (journal kept for ``recover``). ``stored`` and
``started`` keep the start and stop documents of the runs, so that the caller needs no Tiled app
of its own to read them back.

The mid-run commit calls two private methods of ``bluesky_tiled_plugins``' per-run writer
(``_write_internal_data``/``_write_external_data``, the same calls its ``stop`` makes) — pinned
version 2.0.12; ``tests/test_storage.py`` checks that a reader sees events mid-run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from event_model import RunRouter

from ncsynth.errors import first_line
from ncsynth.queues import wait_drained
from .journal import RunJournal
from .layout import DataDirectory
from .writer_worker import RemoteRunWriter, WorkerLink

logger = logging.getLogger(__name__)

_CLOSE = object()  # queue item: end the background thread
_COMMIT = object()  # queue item: commit what the run writers hold back
_HELD_BACK = frozenset({"event", "event_page", "stream_datum"})  # documents TiledWriter batches


class _RunRecorder:
    """Everything about one run: its journal (RunEngine thread) and its TiledWriter
    (background thread)."""

    def __init__(self, owner: "CatalogWriter", start_doc: dict):
        self.owner = owner
        self.uid = start_doc["uid"]
        self.start_doc = start_doc
        owner.started[self.uid] = start_doc
        self.journal = RunJournal(owner.layout.active_journals / f"{self.uid}.jsonl")
        self.normalizer = None  # tiled_run.CommittingNormalizer, or the RemoteRunWriter
        if owner._link is not None:  # the worker process holds this run's TiledWriter
            self.tiled = RemoteRunWriter(owner._link, self.uid)
            self.normalizer = self.tiled
        else:
            from bluesky_tiled_plugins import TiledWriter

            self.tiled = TiledWriter(owner.client, normalizer=self._new_normalizer)
        self.error: BaseException | None = None
        self.finished = threading.Event()  # stop committed (or the run failed)

    def _new_normalizer(self, **kwargs):
        from .tiled_run import CommittingNormalizer

        self.normalizer = CommittingNormalizer(close_streams=self.owner.close_streams, **kwargs)
        return self.normalizer

    # RunEngine thread
    def __call__(self, name: str, doc: dict) -> None:
        self.journal(name, doc)
        self.owner._enqueue((self, name, doc))
        if name == "stop" and self.owner.wait_at_stop:
            if not self.finished.wait(self.owner.stop_timeout_s):
                logger.warning(
                    "run %s: the catalog did not commit the run within stop_timeout_s=%s s; "
                    "the writer goes on in the background (the journal holds every document)",
                    self.uid, self.owner.stop_timeout_s,
                )

    # background thread
    def write(self, name: str, doc: dict) -> None:
        if self.error is None:
            try:
                self.tiled(name, doc)
                if name == "stop":
                    self.journal.archive(self.owner.layout.complete_journals)
                    self.owner.stored[self.uid] = {"start": self.start_doc, "stop": doc}
            except Exception as err:  # the journal keeps the run for recover()
                self._fail(err, f"writing the {name!r} document to the catalog")
        if name == "stop":
            if self.error is not None:
                self.journal.close()  # stays in journal/active for Catalog.recover()
            self.finished.set()

    def _fail(self, err: BaseException, what: str) -> None:
        """The catalog refused the run: stop feeding it, keep journaling every document."""
        self.error = err
        self.owner.failed_runs[self.uid] = err
        logger.error("run %s: %s failed (%s: %s); the journal goes on and the run stays in "
                     "journal/active for Catalog.recover()", self.uid, what, type(err).__name__,
                     first_line(err))
        logger.debug("run %s: the catalog's error", self.uid, exc_info=err)

    def commit(self) -> None:
        if self.error is None and self.normalizer is not None:
            try:
                self.normalizer.commit()
            except Exception as err:
                self._fail(err, "committing to the catalog")
                self.finished.set()


class CatalogWriter:
    """RunEngine subscriber ``(name, doc)`` that journals and catalogs every document.

    Parameters
    ----------
    client : tiled client root of a CatalogOfBlueskyRuns (``Catalog.client``)
    layout : DataDirectory whose ``journal/`` receives the journals
    queue_size : documents the catalog may fall behind before the RunEngine waits (>= 1)
    flush_interval_s : longest time, in seconds, held-back events wait for a commit while
        the writer is busy (> 0)
    wait_at_stop : block the RunEngine at each stop document until the run is committed
    stop_timeout_s : longest such wait, in seconds (> 0)
    worker : "thread" (default): the background thread drives TiledWriter in this process;
        "process": it forwards each document to a worker process that does
        (:mod:`~ncsynth.storage.writer_worker`; an embedded catalog only, ``data_dir`` given)
    data_dir, readable_storage : the embedded catalog the worker process opens
    close_streams : close each run's Tiled streams at its stop (TiledWriter's default); the
        catalog's ``streams_watched`` says whether anything could follow them (the worker
        process asks its own catalog: :meth:`~ncsynth.storage.catalog.Catalog.writer`
        refuses the option with ``worker="process"``)
    """

    def __init__(
        self,
        client,
        layout: DataDirectory,
        *,
        queue_size: int = 10_000,
        flush_interval_s: float = 1.0,
        wait_at_stop: bool = True,
        stop_timeout_s: float = 120.0,
        worker: str = "thread",
        data_dir=None,
        readable_storage=(),
        close_streams: bool = True,
    ):
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        for label, value in (("flush_interval_s", flush_interval_s), ("stop_timeout_s", stop_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{label} must be a number > 0, got {value!r}")
        if worker not in ("thread", "process"):
            raise ValueError(f"worker must be 'thread' or 'process', got {worker!r}")
        if worker == "process" and data_dir is None:
            raise ValueError("worker='process' needs the embedded catalog's data_dir")
        self.client = client
        self.layout = layout
        self.close_streams = bool(close_streams)
        #: the worker process's end of the pipe (worker="process"), else None
        self._link = WorkerLink(data_dir, readable_storage) if worker == "process" else None
        self.flush_interval_s = float(flush_interval_s)
        self.wait_at_stop = bool(wait_at_stop)
        self.stop_timeout_s = float(stop_timeout_s)
        #: run uid -> exception, for runs the catalog could not take (see Catalog.recover)
        self.failed_runs: dict[str, BaseException] = {}
        #: run uid -> {"start": doc, "stop": doc} of every run the catalog has taken whole
        self.stored: dict[str, dict] = {}
        #: run uid -> start document of every run received (journaled)
        self.started: dict[str, dict] = {}
        #: highest number of documents that waited on the queue at once
        self.max_queue_depth = 0
        #: how often the RunEngine had to wait for room on the queue
        self.queue_full_waits = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._router = RunRouter([lambda name, start_doc: ([_RunRecorder(self, start_doc)], [])])
        self._recorders: list[_RunRecorder] = []
        self._call_lock = threading.RLock()
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="ncsynth-catalog-writer", daemon=True)
        self._thread.start()

    def __call__(self, name: str, doc: dict) -> None:
        if self._closed:
            raise RuntimeError("this CatalogWriter is closed; get a new one from Catalog.writer()")
        with self._call_lock:  # the RunEngine and the analysis thread may share one writer
            self._router(name, doc)

    def _enqueue(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.queue_full_waits += 1
            logger.warning(
                "catalog writer queue full (%d documents behind): the RunEngine waits for the catalog",
                self._queue.maxsize,
            )
            self._queue.put(item)
        self.max_queue_depth = max(self.max_queue_depth, self._queue.qsize())

    def _drain(self) -> None:
        pending_since = None  # when the oldest document not yet committed was written
        while True:
            timeout = None if pending_since is None else pending_since + self.flush_interval_s - time.monotonic()
            try:
                item = self._queue.get(timeout=None if timeout is None else max(timeout, 0.0))
            except queue.Empty:  # nothing arrived for a while: commit what is held back
                self._commit_open_runs()
                pending_since = None
                continue
            try:
                if item is _CLOSE:
                    if self._link is not None:
                        self._link.close()
                    return
                if item is _COMMIT:
                    self._commit_open_runs()
                    pending_since = None
                    continue
                recorder, name, doc = item
                if name == "start":
                    self._recorders.append(recorder)
                recorder.write(name, doc)
                if name == "stop":
                    self._recorders.remove(recorder)
                elif name in _HELD_BACK and pending_since is None:
                    pending_since = time.monotonic()
                if pending_since is not None and time.monotonic() - pending_since >= self.flush_interval_s:
                    self._commit_open_runs()
                    pending_since = None
            finally:
                self._queue.task_done()

    def _commit_open_runs(self) -> None:
        for recorder in self._recorders:
            recorder.commit()

    def wait_ready(self) -> None:
        """Return once the catalog can take documents: at once in this process; with
        ``worker="process"``, when the worker has opened the catalog (creating it on first
        use, see :func:`~ncsynth.storage.catalog.open_catalog`'s ``create``). Raises what
        kept it from opening it (e.g. :class:`~ncsynth.storage.layout.DataDirectoryError`),
        so that a caller can refuse before anything runs."""
        if self._link is not None:
            self._link.wait_ready()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Commit everything received so far to the catalog and wait for it; False on timeout."""
        if self._closed:
            return True
        self._queue.put(_COMMIT)
        return wait_drained(self._queue, timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Drain the queue and stop the background thread; False if it did not end in time."""
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        self._queue.put(_CLOSE)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
