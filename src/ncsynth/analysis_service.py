"""The live analysis beside the acquisition, over bluesky's 0MQ pieces.

At a facility the analysis runs in another process, or on another machine, than the RunEngine.
With ``[analysis] publish_address`` set (``host:port`` of a ``bluesky-0MQ-proxy``'s input), the
dry run gives every document to bluesky's
:class:`~bluesky.callbacks.zmq.Publisher` instead of analysing it themselves
(:func:`analysis_subscriber`); ``ncsynth analysis serve`` (:func:`serve`) subscribes to the
proxy's output (``[analysis] subscribe_address``) with a
:class:`~bluesky.callbacks.zmq.RemoteDispatcher` and feeds the same
:class:`~ncsynth.analysis.live.LiveAnalysis` and :class:`~ncsynth.analysis.display.LiveFigure`
the dry run uses in-process (same documents, same code: same fits); the derived runs go into
the configuration's catalog, linked to their raw run as every analysis run is (``raw_uid``).

Publishing never waits for a subscriber: 0MQ's PUB socket drops what nobody takes, so an
analysis service (or proxy) that is slow, gone or never started leaves acquisition untouched.

Late joiners. A run whose start the service did not see (it started after the run began, or
was restarted during it) is caught up from the run's journal in the data directory
(:mod:`ncsynth.analysis_catchup`): every document once, in emission order, then the live ones;
the same fits as an in-process analysis. One analysis run per raw run: a killed service's
unfinished one is replaced, a run with a complete one is left alone. A run without a journal
here (the service on another data directory) is not analysed: a warning names
``ncsynth replay <uid>``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ncsynth.analysis_catchup import (PUBLISHED_KEY, FollowedRun, complete_analysis, journal_of,
                                      replace_unfinished_analyses, runs_owed, runs_to_catch_up)
from ncsynth.analysis_worker import AnalysisProcess, InProcessAnalysis

logger = logging.getLogger(__name__)
#: How often, in seconds, the service reads the journals of the runs it catches up.
TOP_UP_INTERVAL_S = 1.0

class PublishedAnalysis:
    """The acquiring process's side: each document to a 0MQ proxy at ``address`` (bluesky's
    ``Publisher``), nothing analysed here; ``flush``/``summary``/``paths``/``close`` as
    :class:`~ncsynth.analysis_worker.AnalysisProcess` offers them (the summary names the proxy)."""

    def __init__(self, address: str):
        from bluesky.callbacks.zmq import Publisher

        self.address = address
        self._publisher = Publisher(address)
        self.paths: list = []
        self.error = None

    def __call__(self, name: str, doc: dict) -> None:
        self._publisher(name, doc)

    def flush(self, timeout_s: float | None = None) -> bool:
        return True  # the service analyses at its own pace

    def summary(self) -> dict:
        return {"final_radius_nm": None, "concentration_molar": None, "yield_fraction": None,
                PUBLISHED_KEY: self.address}

    def mark(self, RE) -> None:
        """Name the proxy in every run's start document (``RE.md``), so that a service started
        after the run's end still analyses it (:func:`~ncsynth.analysis_catchup.runs_owed`)."""
        RE.md[PUBLISHED_KEY] = self.address

    def close(self, timeout_s: float | None = None) -> None:
        self._publisher.close()


def analysis_subscriber(config: dict, emit, figure_dir, *, in_process: bool = False,
                        maxsize: int = 1000):
    """The live analysis a dry run subscribes to its RunEngine: a
    :class:`PublishedAnalysis` if ``[analysis] publish_address`` is set, else the analysis in a
    process of its own (or, ``in_process``, in this one) storing its results through ``emit``."""
    address = (config.get("analysis") or {}).get("publish_address")
    if address:
        return PublishedAnalysis(address)
    return (InProcessAnalysis if in_process else AnalysisProcess)(emit, figure_dir, maxsize=maxsize)


class AnalysisService:
    """The RemoteDispatcher's subscriber (see module): every raw run goes through one
    ``LiveAnalysis`` (results stored by ``catalog``'s writer, figure in ``figure_dir``).

    A run whose start it saw is analysed from the published documents. A run it joined late
    (a document of a run whose start it did not see, or :meth:`catch_up` at
    start-up) is analysed from its journal in the data directory, topped up at each live
    document and at each :meth:`top_up` (:class:`~ncsynth.analysis_catchup.FollowedRun`:
    emission order, each document once); an unfinished analysis run a killed service left of
    it is replaced, a complete one makes the service leave the run alone. ``maxsize``: the
    analysis's event backlog before it drops events (``LiveAnalysis``)."""

    def __init__(self, catalog, figure_dir, *, maxsize: int = 1_000_000):
        from ncsynth.analysis.display import LiveFigure
        from ncsynth.analysis.live import LiveAnalysis

        self.catalog = catalog
        self._writer = catalog.writer()
        self._figure = LiveFigure(Path(figure_dir))

        def emit(name, doc):
            self._writer(name, doc)
            self._figure(name, doc)

        self._live = LiveAnalysis(emit=emit, maxsize=maxsize)
        self._runs: set[str] = set()  # raw runs whose start went to the live analysis
        self._followed: dict[str, FollowedRun] = {}  # raw runs analysed from their journal
        self._descriptors: dict[str, str] = {}  # descriptor uid -> run uid
        self._passed: set[str] = set()  # runs caught up or left alone (analysed, no journal)
        #: raw runs caught up from their journal (whose start this service did not see)
        self.caught_up: list[str] = []
        #: raw runs whose stop arrived without their start and without a journal (not analysed)
        self.joined_late: list[str] = []

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            if "raw_uid" in doc:
                return  # an analysis run (another analysis's results): not raw data
            if doc["uid"] in self._followed:
                self._followed[doc["uid"]].top_up((name, doc))
            elif doc["uid"] not in self._passed:
                self._runs.add(doc["uid"])
                self._live(name, doc)
            return
        if name == "descriptor":
            self._descriptors[doc["uid"]] = doc["run_start"]
        run = self._run_of(doc)
        if run in self._runs:
            self._live(name, doc)
            if name == "stop":
                self._runs.discard(run)
        elif run is not None and run not in self._passed:
            self._follow(run, (name, doc))

    def _run_of(self, doc: dict) -> str | None:
        run = doc.get("run_start") or self._descriptors.get(doc.get("descriptor"))
        if run is None and doc.get("descriptor"):  # an event of a run joined late
            self.catch_up()
            run = self._descriptors.get(doc["descriptor"])
            if run is None:
                self._descriptors[doc["descriptor"]] = ""  # not a run being acquired here
        return run or None

    def _follow(self, run: str, live: tuple[str, dict] | None = None) -> None:
        """Analyse ``run`` from its journal, then ``live`` (see the class)."""
        followed = self._followed.get(run)
        if followed is None:
            path = journal_of(self.catalog.layout, run)
            if path is None:
                self._passed.add(run)
                if live is not None and live[0] == "stop":
                    self.joined_late.append(run)
                logger.warning("analysis service: run %s began before this service subscribed "
                               "and has no journal in %s; not analysed here: ncsynth replay %s",
                               run[:8], self.catalog.layout.root, run)
                return
            if complete_analysis(self.catalog, run) is not None:
                self._passed.add(run)
                logger.info("analysis service: run %s is analysed already; left alone", run[:8])
                return
            replace_unfinished_analyses(self.catalog, run)
            followed = self._followed[run] = FollowedRun(path, self._feed)
            self.caught_up.append(run)
            logger.warning("analysis service: run %s began before this service subscribed; "
                           "catching it up from its journal %s", run[:8], path)
        followed.top_up(live)
        if followed.stopped:  # documents of it that arrive later were in its journal
            del self._followed[run]
            self._passed.add(run)

    def _feed(self, name: str, doc: dict) -> None:
        if name == "descriptor":
            self._descriptors[doc["uid"]] = doc["run_start"]
        self._live(name, doc)

    def catch_up(self) -> None:
        """Follow the raw runs being acquired into the data directory, those a killed
        service left half-analysed and those published while no service ran (complete, with no
        analysis yet), unless this service analyses them already (at start-up: the runs it
        joined late or missed)."""
        layout = self.catalog.layout
        for run in dict.fromkeys([*runs_to_catch_up(layout), *runs_owed(layout)]):
            if run not in self._runs and run not in self._followed and run not in self._passed:
                self._follow(run)

    def top_up(self) -> None:
        """Feed what the journals of the followed runs gained (a run's end that no live
        document announces: its stop published before this service subscribed)."""
        for run in list(self._followed):
            self._follow(run)

    def close(self) -> None:
        """Finish what the analysis holds, store it, close the writer. A followed run whose
        stop did not come stays unfinished; a restarted service replaces it."""
        for followed in self._followed.values():
            followed.close()
        self._live.flush()
        self._live.close()
        self._writer.close()


def serve(config: dict, address: str | None = None, *, ready=None) -> None:
    """``ncsynth analysis serve``: analyse what the 0MQ proxy at ``address`` (default
    ``[analysis] subscribe_address``) publishes, into the configuration's catalog, until
    interrupted (SIGINT/SIGTERM). ``ready()`` is called once subscribed. Runs being acquired
    into the data directory are caught up at once; the journals of runs being caught up are
    read again every ``TOP_UP_INTERVAL_S`` (:meth:`AnalysisService.top_up`)."""
    import signal

    from bluesky.callbacks.zmq import RemoteDispatcher

    from ncsynth.config import catalog_databases, data_dir, subscribe_address
    from ncsynth.storage import open_catalog

    address = subscribe_address(config, address)
    root = data_dir(config)
    with open_catalog(root, **catalog_databases(config)) as catalog:
        service = AnalysisService(catalog, root / "figures")
        dispatcher = RemoteDispatcher(address)
        dispatcher.subscribe(service)
        for number in (signal.SIGINT, signal.SIGTERM):  # end the dispatcher's poll: start() returns
            signal.signal(number, lambda *_: dispatcher.loop.call_soon_threadsafe(_cancel, dispatcher))
        dispatcher.loop.call_soon(service.catch_up)
        if ready is not None:
            dispatcher.loop.call_soon(ready)
        dispatcher.loop.call_soon(_top_up, dispatcher.loop, service)
        try:
            dispatcher.start()
        except asyncio.CancelledError:
            pass
        finally:
            service.close()


def _top_up(loop, service: AnalysisService) -> None:
    service.top_up()
    loop.call_later(TOP_UP_INTERVAL_S, _top_up, loop, service)


def _cancel(dispatcher) -> None:
    if dispatcher._task is not None:
        dispatcher._task.cancel()
