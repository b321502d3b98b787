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

Late joiners. The service analyses the runs whose start it saw. Of a run it joined late (started
after the run began, or restarted during it) it analyses nothing and says so at the run's stop,
naming ``ncsynth replay <uid>`` (the same analysis over the stored documents and frames).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ncsynth.analysis_worker import AnalysisProcess, InProcessAnalysis

logger = logging.getLogger(__name__)

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
                "analysis_published_to": self.address}

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
    """The RemoteDispatcher's subscriber (see module): runs whose start it saw go through one
    ``LiveAnalysis`` (results stored by ``catalog``'s writer, figure in ``figure_dir``); a run it
    joined late is named at its stop (:attr:`joined_late`). ``maxsize``: the analysis's event
    backlog before it drops events (``LiveAnalysis``)."""

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
        self._descriptors: dict[str, str] = {}  # descriptor uid -> run uid
        #: raw runs whose stop arrived without their start (not analysed here)
        self.joined_late: list[str] = []

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            if "raw_uid" in doc:
                return  # an analysis run (another analysis's results): not raw data
            self._runs.add(doc["uid"])
            self._live(name, doc)
            return
        if name == "descriptor":
            self._descriptors[doc["uid"]] = doc["run_start"]
        run = doc.get("run_start") or self._descriptors.get(doc.get("descriptor"))
        if run in self._runs:
            self._live(name, doc)
            if name == "stop":
                self._runs.discard(run)
        elif name == "stop" and run is not None:  # joined after its start
            self.joined_late.append(run)
            logger.warning("analysis service: run %s began before this service subscribed; not "
                           "analysed here: ncsynth replay %s", run[:8], run)

    def close(self) -> None:
        """Finish what the analysis holds, store it, close the writer."""
        self._live.flush()
        self._live.close()
        self._writer.close()


def serve(config: dict, address: str | None = None, *, ready=None) -> None:
    """``ncsynth analysis serve``: analyse what the 0MQ proxy at ``address`` (default
    ``[analysis] subscribe_address``) publishes, into the configuration's catalog, until
    interrupted (SIGINT/SIGTERM). ``ready()`` is called once subscribed."""
    import signal

    from bluesky.callbacks.zmq import RemoteDispatcher

    from ncsynth.config import catalog_databases, data_dir
    from ncsynth.storage import open_catalog

    address = address or (config.get("analysis") or {}).get("subscribe_address")
    if not address:
        raise ValueError("no proxy to subscribe to: give --proxy host:port or set "
                         "[analysis] subscribe_address in the configuration")
    root = data_dir(config)
    with open_catalog(root, **catalog_databases(config)) as catalog:
        service = AnalysisService(catalog, root / "figures")
        dispatcher = RemoteDispatcher(address)
        dispatcher.subscribe(service)
        for number in (signal.SIGINT, signal.SIGTERM):  # end the dispatcher's poll: start() returns
            signal.signal(number, lambda *_: dispatcher.loop.call_soon_threadsafe(_cancel, dispatcher))
        if ready is not None:
            dispatcher.loop.call_soon(ready)
        try:
            dispatcher.start()
        except asyncio.CancelledError:
            pass
        finally:
            service.close()


def _cancel(dispatcher) -> None:
    if dispatcher._task is not None:
        dispatcher._task.cancel()
