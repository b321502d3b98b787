"""Live (and replayed) SAXS analysis of hot-injection runs as bluesky callbacks (seed 000 §S.2).

Every raw run gets its own :class:`~ncsynth.analysis.run_analysis.SAXSAnalysis` (reduction,
background subtraction, the Gaussian, skewed and two-population fits of every frame, the
kinetics at its stop), which emits the run's DERIVED run
(:mod:`~ncsynth.analysis.derived_run`); derived runs are never analysed again.
:func:`analysis_router` routes documents live, :func:`replay` pushes stored ones through a
fresh router and reproduces the live numbers exactly.

Acquisition never waits for analysis: subscribe :class:`LiveAnalysis` (or any router in a
:class:`~ncsynth.analysis.threaded_callback.ThreadedCallback`) to the RunEngine, not the
router itself. The derived run's data keys are in :mod:`~ncsynth.analysis.derived_run`, the
settings in :mod:`~ncsynth.analysis.analysis_settings`.
"""

from __future__ import annotations

from event_model import RunRouter

from ncsynth.analysis.analysis_settings import AnalysisSettings
from ncsynth.analysis.run_analysis import SAXSAnalysis
from ncsynth.analysis.threaded_callback import ThreadedCallback


# -- routing ---------------------------------------------------------------------------------------
def _is_derived(start_doc: dict) -> bool:
    return "raw_uid" in start_doc


def _factory(emit, settings: AnalysisSettings, created: list | None, root_map: dict | None, stored: bool,
             mapper=map, kind=None):
    def factory(name, start_doc):
        if _is_derived(start_doc):  # never analyse our own output
            return [], []
        analysis = (kind or SAXSAnalysis)(emit, settings, root_map, stored=stored, mapper=mapper)
        if created is not None:
            created.append(analysis)
        return [analysis], []
    return factory


def analysis_router(emit, *, root_map: dict | None = None, **settings) -> RunRouter:
    """An ``event_model.RunRouter`` giving every raw run its own :class:`SAXSAnalysis`.

    ``emit(name, doc)`` receives the derived runs; ``settings`` are :class:`AnalysisSettings`
    fields (validated now); ``root_map`` maps directories of the frame files' uris to where
    they are now (files moved since acquisition). Synchronous: wrap it in
    :class:`ThreadedCallback` before subscribing it to a RunEngine.
    """
    return _router(emit, AnalysisSettings(**settings), None, root_map)


def replay(documents, emit, *, root_map: dict | None = None, mapper=map, kind=None,
           **settings) -> list["SAXSAnalysis"]:
    """Push stored ``(name, doc)`` pairs (in emission order, with their stream_resource/
    stream_datum documents: the collected documents or the run's journal) through a fresh
    router, on this thread; returns the :class:`SAXSAnalysis` of every raw run. Same numbers as
    live; ``mapper`` (e.g. a process pool's ``map``) runs the skewed fits' cold starts,
    ``kind`` makes each run's analysis (called as :class:`SAXSAnalysis`, the default). A frame
    file that is missing or damaged raises :class:`FrameFileError` (naming it) part-way:
    ``emit`` has then received part of a derived run, without its stop."""
    analyses: list[SAXSAnalysis] = []
    router = _router(emit, AnalysisSettings(**settings), analyses, root_map, stored=True,
                     mapper=mapper, kind=kind)
    for name, doc in documents:
        router(name, doc)
    return analyses


def _router(emit, settings: AnalysisSettings, created: list | None, root_map: dict | None,
            *, stored: bool = False, mapper=map, kind=None) -> RunRouter:
    if not callable(emit):
        raise TypeError(f"emit must be a callable (name, doc), got {type(emit).__name__}")
    return RunRouter([_factory(emit, settings, created, root_map, stored, mapper, kind)])


class LiveAnalysis(ThreadedCallback):
    """The analysis as one RunEngine subscriber: :func:`analysis_router` in a :class:`ThreadedCallback`.

    ``LiveAnalysis(emit=catalog_writer, **settings)``; :attr:`analyses` holds every run's
    :class:`SAXSAnalysis`, :meth:`summary` the latest run's results.
    """

    def __init__(self, emit, *, maxsize: int = 1000, root_map: dict | None = None, **settings):
        self.analyses: list[SAXSAnalysis] = []
        super().__init__(_router(emit, AnalysisSettings(**settings), self.analyses, root_map), maxsize=maxsize)

    def summary(self) -> dict:
        """:meth:`SAXSAnalysis.summary` of the latest run plus :attr:`dropped` and worker errors."""
        latest = self.analyses[-1].summary() if self.analyses else {
            "final_radius_nm": None, "concentration_molar": None, "yield_fraction": None}
        return {**latest, "analysis_dropped_events": self.dropped, "analysis_worker_errors": len(self.errors)}
