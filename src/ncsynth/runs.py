"""Working with stored runs: replay through the analysis, export, report.

A raw run's documents are replayed from its journal (``journal/complete/<uid>.jsonl``),
the exact document stream the RunEngine emitted, Resource/Datum included; the
catalog's own document export is the fallback. The analysis results of a raw run
are derived runs whose start document names it (``raw_uid``).
"""

from __future__ import annotations

from pathlib import Path

from tiled.queries import Key

from ncsynth.analysis.display import report_figure
from ncsynth.analysis.export import write_fits_csv
from ncsynth.analysis.live import replay
from ncsynth.storage.journal import read_journal


class RunError(LookupError):
    """A run reference that cannot be used for what was asked."""


def raw_run(catalog, ref):
    """The raw (acquired) run for ``ref``: uid, partial uid, scan id or negative index."""
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
    return list(catalog.documents(uid))


def derived_run(catalog, raw_uid: str):
    """The latest analysis run of ``raw_uid``, or None."""
    results = catalog.client.search(Key("start.raw_uid") == raw_uid)
    if not len(results):
        return None
    return results.values()[-1]


def replay_run(catalog, ref, **settings) -> dict:
    """Re-analyse a stored run (same callbacks as live); store the results linked to it."""
    run = raw_run(catalog, ref)
    stop = run.metadata.get("stop") or {}
    if not (stop.get("num_events") or {}).get("primary"):
        raise RunError(f"run {run.metadata['start']['uid'][:8]} has no frames to analyse")
    writer = catalog.writer()
    try:
        analyses = replay(raw_documents(catalog, run), writer, **settings)
    finally:
        writer.flush()
    if not analyses:
        raise RunError("the run's documents held no run the analysis could follow")
    return {"raw_uid": run.metadata["start"]["uid"], **analyses[0].summary()}


def export_fits(catalog, ref, path) -> Path:
    """Per-frame fit table (with errors and temperatures) of a run's latest analysis, as CSV."""
    run = raw_run(catalog, ref)
    derived = derived_run(catalog, run.metadata["start"]["uid"])
    if derived is None:
        raise RunError(f"run {run.metadata['start']['uid'][:8]} has not been analysed; "
                       f"run `ncsynth replay` first")
    return write_fits_csv(derived["fits"].read(), path)


def report(catalog, ref, path) -> Path:
    """The paper's Fig. 1 panels for a run's latest analysis, as a PNG."""
    run = raw_run(catalog, ref)
    uid = run.metadata["start"]["uid"]
    derived = derived_run(catalog, uid)
    if derived is None:
        raise RunError(f"run {uid[:8]} has not been analysed; run `ncsynth replay` first")
    kinetics = derived["kinetics"].read() if "kinetics" in derived else None
    return report_figure(derived["fits"].read(), derived["patterns"].read(), kinetics, path,
                         title=f"run {uid[:8]} (scan {run.metadata['start'].get('scan_id')})")
