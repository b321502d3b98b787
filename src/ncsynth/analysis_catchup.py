"""Catching up a run the analysis service joined late, from the run's journal.

The acquiring process's catalog writer appends every document to the run's journal
(``journal/active/<uid>.jsonl``, :mod:`ncsynth.storage.journal`) on the RunEngine's thread,
before the RunEngine hands the document to the next subscriber (the 0MQ publisher is
subscribed after the writer; a subscriber before it sees document N only once N-1 has been
journaled either way). So when the service receives a published document D of a run whose
start it did not see, the journal already holds every document before D: the emission-ordered
stream, stream_resource/stream_datum included, exactly what ``ncsynth replay`` reads
(:func:`ncsynth.runs.raw_documents`). Tiled's own view of the same run is committed about a
second later and exports the frames' stream_resource/stream_datum documents last: the journal
is the one source with no gap and no reordering.

:class:`JournalFollower` reads a journal incrementally (an open file survives the writer
moving it to ``journal/complete`` at the run's end); :class:`FollowedRun` feeds its records
and the live documents to the analysis once each, deduplicated by document uid (event uids of
an ``event_page``), in emission order. :func:`runs_to_catch_up` lists the runs being acquired
and those a killed service left half-analysed, for the service's start-up; :func:`replace_unfinished_analyses` removes the
unfinished analysis runs a killed service left of a run it is about to analyse again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tiled.queries import Key

from ncsynth.storage.journal import active_journals, parse_record, writer_holds
from ncsynth.storage.layout import DataDirectory
from ncsynth.storage.run_view import RAW_UID_KEY

logger = logging.getLogger(__name__)

#: the start-document key naming the 0MQ proxy a run's documents were published to
#: (:meth:`ncsynth.analysis_service.PublishedAnalysis.mark`): the service owes that run its
#: analysis even if no service ran while it was acquired
PUBLISHED_KEY = "analysis_published_to"


def journal_of(layout: DataDirectory, uid: str) -> Path | None:
    """The journal of run ``uid`` (being written, or complete), None if there is none."""
    for directory in (layout.active_journals, layout.complete_journals):
        path = Path(directory) / f"{uid}.jsonl"
        if path.exists():
            return path
    return None


def _start_of(path: Path) -> dict | None:
    """The start document on a journal's first line, None if it holds none (yet)."""
    try:
        with open(path, "rb") as file:
            name, doc = parse_record(file.readline())
    except (OSError, ValueError):
        return None
    return doc if name == "start" else None


def runs_to_catch_up(layout: DataDirectory) -> list[str]:
    """Uids of the raw runs an analysis service starting now must catch up, oldest first: the
    runs being acquired into this data directory (their journal is in ``journal/active``,
    locked by a live writer) and the complete runs whose analysis a dead writer left
    unfinished (an analysis run's unlocked journal in ``journal/active``: a killed service's)."""
    uids = []
    for path in active_journals(layout.active_journals):
        start = _start_of(path)
        if start is None:
            continue
        if "raw_uid" not in start and writer_holds(path):
            uids.append(start["uid"])
        elif (start.get("raw_uid") and not writer_holds(path)  # not a dead acquisition's: recover() has it
              and (Path(layout.complete_journals) / f"{start['raw_uid']}.jsonl").exists()):
            uids.append(start["raw_uid"])
    return list(dict.fromkeys(uids))


def runs_owed(layout: DataDirectory) -> list[str]:
    """Uids of the complete raw runs whose documents were published for an analysis service
    (:data:`PUBLISHED_KEY` in their start), oldest journal first: those with no complete
    analysis yet are the ones no service saw (acquired while none ran)."""
    paths = sorted(Path(layout.complete_journals).glob("*.jsonl"), key=_modified)
    starts = (_start_of(path) for path in paths)
    return [start["uid"] for start in starts
            if start is not None and PUBLISHED_KEY in start and "raw_uid" not in start]


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def complete_analysis(catalog, raw_uid: str):
    """The raw run's complete analysis run (one with a stop) in the catalog, or None."""
    runs = catalog.client.search(Key(RAW_UID_KEY) == raw_uid)
    return next((run for run in runs.values() if run.metadata.get("stop")), None)


def replace_unfinished_analyses(catalog, raw_uid: str) -> list[str]:
    """Remove the analysis runs of ``raw_uid`` whose writer died before their stop (a killed
    service's: journal in ``journal/active``, no longer locked) from the catalog and the
    journal directory, so that the run's new analysis is its only one (and ``Catalog.recover``
    does not complete the dead one half-way). Returns their uids."""
    removed = []
    for path in Path(catalog.layout.active_journals).glob("*.jsonl"):
        start = _start_of(path)
        if start is None or start.get("raw_uid") != raw_uid or writer_holds(path):
            continue
        uid = start["uid"]
        if uid in catalog.client:
            catalog.client.delete_contents(uid, recursive=True, external_only=False)
        path.unlink(missing_ok=True)
        removed.append(uid)
        logger.warning("analysis service: removed the unfinished analysis run %s of run %s "
                       "(its writer died); analysing the run again", uid[:8], raw_uid[:8])
    return removed


class JournalFollower:
    """The records of a journal that is still being appended to, read as they arrive.

    :meth:`read` returns the ``(name, doc)`` pairs of the complete lines written since the
    last call (a line cut short waits for its end). A line that is not a document record is
    skipped with a warning (the writer flushes whole lines; see :func:`scan_journal`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "rb")
        self._tail = b""

    def read(self) -> list[tuple[str, dict]]:
        chunk = self._file.read()
        if not chunk:
            return []
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()  # b"" after a complete line
        records = []
        for line in lines:
            try:
                records.append(parse_record(line))
            except ValueError:
                logger.warning("journal %s: an unreadable line skipped", self.path)
        return records

    def close(self) -> None:
        self._file.close()


def document_uids(name: str, doc: dict) -> list[str]:
    """The uids a document carries: an event page's event uids, a datum's id, else its uid."""
    if name == "event_page":
        return list(doc["uid"])
    if name == "datum_page":
        return list(doc["datum_id"])
    return [doc.get("uid") or doc.get("datum_id")]


class FollowedRun:
    """A raw run analysed from its journal: records and live documents go to ``feed`` once each.

    :meth:`top_up` feeds what the journal holds that was not fed yet, then the live document
    it is given (unless the journal held it): the journal holds every document emitted before
    a live one (module docstring), so the order is the emission order. :attr:`stopped` once
    the run's stop went through."""

    def __init__(self, path: Path, feed):
        self.uid = path.stem
        self._journal = JournalFollower(path)
        self._feed = feed
        self._fed: set[str] = set()
        self.stopped = False
        #: documents given to the analysis
        self.documents = 0

    def top_up(self, live: tuple[str, dict] | None = None) -> None:
        if self.stopped:
            return
        for name, doc in self._journal.read():
            self._once(name, doc)
        if live is not None:
            self._once(*live)
        if self.stopped:
            self._journal.close()

    def _once(self, name: str, doc: dict) -> None:
        uids = document_uids(name, doc)
        if self.stopped or any(uid in self._fed for uid in uids):
            return
        self._fed.update(uids)
        self.documents += 1
        self._feed(name, doc)
        self.stopped = name == "stop"

    def close(self) -> None:
        self._journal.close()
