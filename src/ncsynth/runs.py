"""Working with stored runs: replay through the analysis, export, report.

A raw run's documents are replayed from its journal (``journal/complete/<uid>.jsonl``),
the exact document stream the RunEngine emitted, stream_resource/stream_datum included;
the catalog's own document export is the fallback. The analysis results of a raw run
are derived runs whose start document names it (``raw_uid``).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np

from ncsynth.analysis.export import write_fits_csv
from ncsynth.analysis.derived_run import FITS, KINETICS, PATTERNS, raw_description
from ncsynth.analysis.geometry import CalibrationFileError
from ncsynth.analysis.live import replay
from ncsynth.analysis.replay_pipeline import PipelinedAnalysis, SkewedStage
from ncsynth.analysis.stream_frames import FrameFileError
from ncsynth.errors import first_line
from ncsynth.run_lookup import raw_run_uid
from ncsynth.storage.journal import read_journal
from ncsynth.storage.relocation import written_elsewhere


class RunError(LookupError):
    """A run reference that cannot be used for what was asked."""


def raw_run(catalog, ref):
    """The raw (acquired) run for ``ref``: uid, partial uid, scan id or negative index; the
    uid of an analysis run gives the run it analysed."""
    run = catalog[ref]
    start = run.metadata["start"]
    if "raw_uid" in start:
        run = catalog[start["raw_uid"]]
    return run


def raw_documents(catalog, run) -> list[tuple[str, dict]]:
    """The raw run's documents in emission order."""
    uid = run.metadata["start"]["uid"]
    journal = Path(catalog.layout.complete_journals) / f"{uid}.jsonl"
    if journal.exists():
        return read_journal(journal)
    docs = list(catalog.documents(uid))
    # the catalog's export lists the frames' stream_resource/stream_datum documents last; the
    # analysis needs them before the events that use them
    assets = [pair for pair in docs if pair[0] in ("stream_resource", "stream_datum")]
    others = [pair for pair in docs if pair[0] not in ("stream_resource", "stream_datum")]
    return others[:1] + assets + others[1:]


def stored_run(catalog, ref) -> tuple[dict, dict, list[tuple[str, dict]]]:
    """The raw run ``ref`` names (as :func:`raw_run`): its start and stop documents and all its
    documents in emission order (:func:`raw_documents`). A complete run of an embedded SQLite
    catalog is found in the database and read from its journal without Tiled
    (:func:`~ncsynth.run_lookup.raw_run_uid`: no Tiled app is built, none imported); any other
    through the catalog's client."""
    layout = catalog.layout
    uid = raw_run_uid(layout.root, ref) if layout.local and layout.snapshot is None else None
    journal = Path(layout.complete_journals) / f"{uid}.jsonl"
    if uid is not None and journal.exists():
        docs = read_journal(journal)
        stop = next((doc for name, doc in reversed(docs) if name == "stop"), None)
        if docs and docs[0][0] == "start" and stop is not None:
            return docs[0][1], stop, docs
    run = raw_run(catalog, ref)
    return run.metadata["start"], run.metadata.get("stop") or {}, raw_documents(catalog, run)


def derived_run(catalog, raw_uid: str):
    """The latest complete analysis run of ``raw_uid`` (:meth:`Catalog.analysis`), or None."""
    return catalog.analysis(raw_uid)


def replay_run(catalog, ref, *, processes: int = 1, progress=None, worker: str = "thread",
               figure_directory=None, **settings) -> dict:
    """Re-analyse a stored run (same callbacks as live); store the results linked to it; returns
    the summary: the raw run's ``uid`` (also ``raw_uid``) and ``scan_id``, the new analysis run's
    ``analysis_uid``, the analysis's results (:meth:`SAXSAnalysis.summary`), ``data_dir``.
    ``processes`` (same numbers whatever it is): 1, all in this one; 2 or more, the frames'
    skewed fits in a process of their own while this one reduces and fits the next frames
    (:mod:`~ncsynth.analysis.replay_pipeline`), with from 3 a pool of the others for the
    skewed fits' cold starts (:func:`~ncsynth.analysis.pool.search_pool`); ``progress`` (a document callback, e.g. a ProgressBar) sees the raw documents.
    ``worker``: the catalog writer's (:meth:`Catalog.writer`), started before the analysis
    (``"process"``: a process of its own opens the catalog meanwhile, and this one needs no
    Tiled app). ``figure_directory``:
    the report figure of the new analysis is drawn there too, from the results in memory (:func:`report`'s figure and file name) while the writer
    stores them, as ``figures`` (or ``figure_error``: the analysis stays stored; a figure of an
    analysis the catalog refused is removed).

    The analysis is stored only once it has gone through the whole run: a frame file or the
    mask file that is missing or damaged raises :class:`RunError` naming it, and nothing is
    stored (the latest analysis stays what it was); so does a catalog that refuses the analysis
    run. A run written in a data directory since moved or copied here is read from this one's
    files (:func:`~ncsynth.storage.relocation.written_elsewhere`).
    """
    start, stop, documents = stored_run(catalog, ref)
    uid = start["uid"]
    if not (stop.get("num_events") or {}).get("primary"):
        raise RunError(f"run {uid[:8]} has no frames to analyse")
    derived: list[tuple[str, dict]] = []
    ahead = processes > 1
    with SkewedStage(processes - 1) if ahead else nullcontext() as stage:  # before the writer
        writer = catalog.writer(worker=worker)
        try:
            try:
                analyses = replay(_shown(documents, progress),
                                  lambda name, doc: derived.append((name, doc)),
                                  root_map=written_elsewhere(documents, catalog.layout),
                                  kind=partial(PipelinedAnalysis, stage=stage) if ahead else None,
                                  **settings)
            except (FrameFileError, CalibrationFileError) as err:
                raise RunError(f"run {uid[:8]}: {err}; no analysis stored") from None
            if not analyses:
                raise RunError("the run's documents held no run the analysis could follow")
            # the figure is drawn while the writer writes, in the pipeline's worker if there is one
            drawing = ahead and stage.call(_replay_figure, start, derived, figure_directory)
            for name, doc in derived:
                writer(name, doc)
            figure = (stage.called() if drawing else None) \
                or _replay_figure(start, derived, figure_directory)
        finally:
            writer.close()
    for failed, err in writer.failed_runs.items():
        for path in figure.get("figures", []):
            Path(path).unlink(missing_ok=True)
        raise RunError(f"the catalog in {catalog.layout.root} refused the analysis run {failed[:8]} "
                       f"({type(err).__name__}: {first_line(err)}); its journal is in journal/active")
    return {"uid": uid, "scan_id": start.get("scan_id"), "raw_uid": uid,
            "analysis_uid": next(doc["uid"] for name, doc in derived if name == "start"),
            **analyses[0].summary(), "data_dir": str(catalog.layout.root), **figure}


def _replay_figure(start: dict, derived, directory) -> dict:
    """``figures``: the report figure of an analysis from its documents, drawn in ``directory``
    (none if None), or ``figure_error``: why not (the analysis is stored all the same)."""
    if directory is None:
        return {}
    try:
        analysis = next((doc.get("analysis") or {} for name, doc in derived if name == "start"), {})
        return {"figures": [str(_report(start, *derived_tables(derived), directory=directory,
                                        relative=analysis.get("absolute_scale") is False))]}
    except Exception as exc:
        return {"figure_error": f"{type(exc).__name__}: {exc}"}


def derived_tables(documents) -> tuple[dict, dict | None, dict | None]:
    """An analysis run's ``fits`` and ``patterns`` streams as columns (name -> list, one entry
    a frame; patterns None without that stream) and its ``kinetics`` event's data (or None),
    from its documents: what :func:`report` reads back from the catalog."""
    streams = {doc["uid"]: doc["name"] for name, doc in documents if name == "descriptor"}
    rows: dict[str, list[dict]] = {FITS: [], PATTERNS: [], KINETICS: []}
    for name, doc in documents:
        if name == "event" and streams.get(doc["descriptor"]) in rows:
            rows[streams[doc["descriptor"]]].append(doc["data"])
    fits, patterns = ({key: [row[key] for row in rows[s]] for key in rows[s][0]} if rows[s] else None
                      for s in (FITS, PATTERNS))
    return fits or {}, patterns, rows[KINETICS][-1] if rows[KINETICS] else None


def _shown(documents, progress):
    for name, doc in documents:
        if progress is not None:
            progress(name, doc)
        yield name, doc


def run_name(start: dict) -> str:
    """A raw run's name in file names: ``scan0007-1a2b3c4d`` (scan id and short uid), or the
    short uid alone for a run without a scan id."""
    scan = start.get("scan_id")
    return (f"scan{scan:04d}-" if isinstance(scan, int) and scan > 0 else "") + start["uid"][:8]


def new_file(directory, stem: str, suffix: str) -> Path:
    """Create ``directory/stem.suffix`` empty, or if it exists ``stem-2.suffix``, ``stem-3``...:
    the first free name, taken atomically (``O_EXCL``), so that no file is ever overwritten,
    neither by the next export of the run nor by one running at the same time."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        path = directory / f"{stem}{'' if number == 1 else f'-{number}'}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{directory}: {stem}{suffix} and 9998 numbered copies exist")


def _writing(path: Path | None, directory, stem: str, suffix: str, write) -> Path:
    """``write(path)`` to ``path`` as given, or to a :func:`new_file`, removed again if the
    writing fails (no empty file named after the run is left behind)."""
    if path is not None:
        return write(Path(path))
    path = new_file(directory, stem, suffix)
    try:
        return write(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


#: Formats of :func:`export_fits`, with the suffix of their files.
EXPORT_FORMATS = ("csv", "nexus")
EXPORT_SUFFIXES = {"csv": ".csv", "nexus": ".nxs"}
#: Data key of the heater's output (%): the HeatingController ``heater`` of ncsynth.instruments.
HEATER_OUTPUT_KEY = "heater_output"


def export_fits(catalog, ref, path=None, format: str = "csv", *, directory=None) -> Path:
    """Per-frame fit table (with errors and temperatures) of a run's latest analysis: ``"csv"``,
    or ``"nexus"``: NeXus/HDF5 with the reduced patterns too (:func:`~ncsynth.analysis.nexus.write_fits_nexus`).
    Written to ``path``, or (None) to a new file in ``directory`` named after the run,
    ``scan0007-1a2b3c4d-fits.csv`` (:func:`run_name`, :func:`new_file`)."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    run = raw_run(catalog, ref)
    derived = catalog.analysis(run)
    if derived is None:
        raise RunError(f"run {run.metadata['start']['uid'][:8]} has not been analysed; "
                       f"run `ncsynth replay` first")
    def write(target: Path) -> Path:
        if format == "nexus":
            return _export_nexus(run, derived, target)
        return write_fits_csv(derived["fits"].read(), target)

    return _writing(path, directory, f"{run_name(run.metadata['start'])}-fits",
                    EXPORT_SUFFIXES[format], write)


def _export_nexus(run, derived, path) -> Path:
    """The derived run's fits, patterns and kinetics, with the raw run's heater output readings."""
    from ncsynth.analysis.nexus import write_fits_nexus  # h5py: only for this format

    streams = [s for s in ("primary", "temperature") if s in run and HEATER_OUTPUT_KEY in run[s]]
    readings = [(run[s]["time"].read(), run[s][HEATER_OUTPUT_KEY].read()) for s in streams]
    heater = tuple(np.concatenate(column) for column in zip(*readings)) if readings else None
    return write_fits_nexus(path, derived["fits"].read(), derived["patterns"].read(),
                            raw_start=run.metadata["start"], raw_stop=run.metadata.get("stop"),
                            analysis_start=derived.metadata["start"],
                            kinetics=derived["kinetics"].read() if "kinetics" in derived else None,
                            heater_readings=heater)


def report(catalog, ref, path=None, *, directory=None) -> Path:
    """The paper's Fig. 1 panels for a run's latest analysis, as a PNG at ``path``, or (None)
    in a new file in ``directory`` named after the run, ``scan0007-1a2b3c4d.png``; the title
    names the sample, date and temperatures (:func:`~ncsynth.analysis.display.run_title`)."""
    run = raw_run(catalog, ref)
    start = run.metadata["start"]
    derived = catalog.analysis(run)
    if derived is None:
        raise RunError(f"run {start['uid'][:8]} has not been analysed; run `ncsynth replay` first")
    kinetics = derived["kinetics"].read() if "kinetics" in derived else None
    relative = (derived.metadata["start"].get("analysis") or {}).get("absolute_scale") is False
    return _report(start, derived["fits"].read(), derived["patterns"].read(), kinetics, path,
                   directory=directory, relative=relative)


def _report(start: dict, fits, patterns, kinetics, path=None, *, directory=None,
            relative: bool = False) -> Path:
    """:func:`report`'s figure of a raw run (its start document) from its analysis's tables."""
    from ncsynth.analysis.display import report_figure, run_title  # matplotlib: only here

    raw = raw_description(start)
    title = run_title(raw, f"SAXS analysis, {len(fits['time_s'])} frames")
    return _writing(path, directory, run_name(start), ".png",
                    lambda target: report_figure(fits, patterns, kinetics, target, title=title,
                                                 relative=relative,
                                                 second_injection_s=raw["second_injection_s"]))


def second_injection_analysis(catalog, ref):
    """Two-population fits after piston B and the growth exponent (seed 000 §S.5) of a
    double-injection run, from its latest analysis's reduced patterns."""
    from ncsynth.analysis.superfocusing import analyze_second_injection

    run = raw_run(catalog, ref)
    start = run.metadata["start"]
    if "second_injection" not in start:
        raise RunError(f"run {start['uid'][:8]} has no second injection "
                       f"(plan {start.get('plan_name')!r})")
    derived = catalog.analysis(run)
    if derived is None or "patterns" not in derived:
        raise RunError(f"run {start['uid'][:8]} has not been analysed; run `ncsynth replay` first")
    patterns = derived["patterns"].read()
    recipe = start.get("recipe") or {}
    added, syringe_b = recipe.get("cd_second_molar"), ((recipe.get("extra") or {}).get(
        "cd_syringe_b_molar") or recipe.get("cd_precursor_molar"))
    try:  # what syringe B's volume leaves of the flask's content (S2.5: 1 - c2/cB)
        dilution = 1.0 - float(added) / float(syringe_b) if 0 < float(added) < float(syringe_b) else 1.0
    except (TypeError, ValueError):
        dilution = 1.0
    return analyze_second_injection(
        np.asarray(patterns["time_s"]), np.asarray(patterns["q_nm"]),
        np.asarray(patterns["intensity_cm"]), np.asarray(patterns["sigma_cm"]),
        start["second_injection"]["delay_s"], dilution=dilution)


def second_injection_summary(analysis, figure_path=None) -> dict:
    """A :func:`second_injection_analysis` as summary figures (growth exponent and interval);
    with ``figure_path`` also the Fig. S5.4b plot (r₂ against r₁ with the expected curves)."""
    from ncsynth.analysis.display import superfocusing_figure

    summary = analysis.summary()
    if figure_path is not None:
        summary["superfocusing_figure"] = str(superfocusing_figure(analysis, figure_path))
    return summary
