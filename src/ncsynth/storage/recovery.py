"""Recovery: complete into the catalog the runs whose process died mid-run.

A journal left in ``journal/active`` and not locked belongs to a run whose stop never reached
the catalog: the process was killed (``kill -9``, power, OOM) or Tiled failed. For each,
:func:`recover_runs`

1. deletes whatever part of the run the catalog holds (``TiledWriter`` cannot resume a run;
   the catalog holds at most the start, descriptors and the events committed before the kill,
   never anything the journal lacks), together with its internal tables and arrays (the
   detector's HDF5 files are external and are left alone);
2. rebuilds the run from the journal with a fresh ``TiledWriter``: every document emitted
   before the death, frames included (their stream_resource/stream_datum documents);
3. if the journal has no stop document, ends every stream at its last event whose frames
   are all referenced (:mod:`~ncsynth.storage.run_tail`: a kill between a frame's
   stream_datum and its event leaves one frame more than events, a run xarray cannot read)
   and adds a stop, honestly: ``exit_status="abort"``, ``reason="recovered after the
   acquisition process died"`` followed by what was left out and where it still is,
   ``num_events`` as kept, ``time`` of the last kept document — to the journal as well;
4. moves the journal to ``journal/complete``; one that lost a tail is kept as found in
   ``journal/damaged``.

Damaged journals. A line that holds no readable document (a torn last line of a process
killed mid-write, or garbage anywhere) is skipped: the run is rebuilt from every readable
document, the lines are reported in :attr:`RecoveryRecord.damage` (file, line, why), a clean
journal (readable documents and the stop) is written to ``journal/complete`` and the file as
found is moved to ``journal/damaged``, so that nothing is lost and nothing blocks later runs.
A journal with no readable start document cannot be rebuilt: it goes to ``journal/damaged``
(status ``"unrecoverable"``). When the catalog refuses a run, its journal stays in
``journal/active`` for a later attempt (status ``"failed"``, the cause in ``error``).

A locked journal belongs to a run still being acquired and is left alone (status
``"in-progress"``). Calling :func:`recover_runs` again finds nothing more to do (idempotent).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from bluesky_tiled_plugins import TiledWriter
from event_model import unpack_event_page

from ncsynth.errors import first_line

from .journal import (JournalDamage, JournalLocked, RunJournal, active_journals, scan_journal,
                      write_journal)
from .layout import DataDirectory
from .run_tail import LeftOut, trim_unmatched_tail

logger = logging.getLogger(__name__)

RECOVERED_REASON = "recovered after the acquisition process died"


class RecoveryRecord(NamedTuple):
    """What :func:`recover_runs` did with one journal.

    ``status`` is one of
      - ``"aborted"``: no stop in the journal; rebuilt with a synthesized abort stop
      - ``"completed"``: the journal had the stop the catalog missed; rebuilt with it
      - ``"already-complete"``: the catalog held the whole run; the journal was archived
      - ``"empty"``: the process died before the start document was on disk; archived
      - ``"in-progress"``: a live process is writing the run; left alone
      - ``"unrecoverable"``: unreadable lines and no readable start; moved to journal/damaged
      - ``"failed"``: the catalog refused the run (``error``); left in journal/active
    ``events`` the run's events in the catalog (journaled ones, less those left out);
    ``exit_status`` is the run's exit status in the catalog now (None when there is no run);
    ``damage`` the journal's unreadable lines; ``error`` why the catalog refused the run;
    ``left_out`` the streams whose unmatched tail was left out of an aborted run.
    """

    uid: str
    status: str
    events: int
    exit_status: str | None
    damage: tuple[JournalDamage, ...] = ()
    error: str | None = None
    left_out: tuple[LeftOut, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing went wrong: no unreadable line but a torn last one, no refused run."""
        return self.status not in ("unrecoverable", "failed") and all(bad.torn for bad in self.damage)


def _events(docs: list[tuple[str, dict]]) -> Iterator[dict]:
    for name, doc in docs:
        if name == "event":
            yield doc
        elif name == "event_page":
            yield from unpack_event_page(doc)


def _synthesized_stop(docs: list[tuple[str, dict]], damage: list[JournalDamage],
                      left_out: list[LeftOut]) -> dict:
    start = docs[0][1]
    stream_of_descriptor = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    events = list(_events(docs))
    times = [doc["time"] for name, doc in docs if isinstance(doc.get("time"), (int, float))]
    reason = RECOVERED_REASON
    if damage:
        reason += f"; {len(damage)} unreadable journal line(s) skipped (see journal/damaged)"
    for stream in left_out:
        reason += f"; {stream} (the process died between a frame's stream_datum and its event)"
    return {
        "uid": str(uuid.uuid4()),
        "run_start": start["uid"],
        "time": max(times + [event["time"] for event in events]),
        "exit_status": "abort",
        "reason": reason,
        "num_events": dict(Counter(stream_of_descriptor.get(event["descriptor"], "unknown")
                                   for event in events)),
    }


def recover_runs(client, layout: DataDirectory) -> list[RecoveryRecord]:
    """Recover every unlocked journal in ``layout.active_journals`` into the catalog
    ``client`` (see the module docstring). Returns one record per journal found."""
    records = []
    for path in active_journals(layout.active_journals):
        try:
            journal = RunJournal(path)
        except JournalLocked:
            records.append(RecoveryRecord(path.stem, "in-progress", 0, None))
            continue
        except FileNotFoundError:  # its writer archived it while we looked
            continue
        with journal:
            records.append(_recover(client, layout, journal))
    return records


def _recover(client, layout: DataDirectory, journal: RunJournal) -> RecoveryRecord:
    """Rebuild the run of one (locked) journal in the catalog and file the journal away."""
    docs, damage = scan_journal(journal.path)
    if not docs or docs[0][0] != "start":
        if damage:
            _archive_damaged(journal, layout)
        else:
            journal.archive(layout.complete_journals)
        return RecoveryRecord(journal.path.stem, "unrecoverable" if damage else "empty", 0, None,
                              tuple(damage))
    uid = docs[0][1]["uid"]
    journaled_stop = docs[-1][0] == "stop"
    stored_stop = client[uid].metadata.get("stop") if uid in client else None
    left_out = []
    if stored_stop and not journaled_stop:
        docs.append(("stop", stored_stop))
    elif not journaled_stop:
        docs, left_out = trim_unmatched_tail(docs)
        docs.append(("stop", _synthesized_stop(docs, damage, left_out)))
    status = "already-complete" if stored_stop else "completed" if journaled_stop else "aborted"
    events = sum(1 for _ in _events(docs))
    if not stored_stop:
        try:
            _rebuild(client, uid, docs)
        except Exception as err:  # the journal stays in journal/active for a later attempt
            error = f"{journal.path}: the catalog refused the run ({type(err).__name__}: {first_line(err)})"
            return RecoveryRecord(uid, "failed", events, None, tuple(damage), error, tuple(left_out))
        logger.warning("recovered run %s from its journal: %s, %d events, %d unreadable lines%s",
                       uid, status, events, len(damage), "".join(f"; {s}" for s in left_out))
    _file_away(journal, layout, docs, keep_as_found=bool(damage or left_out),
               rewrite=bool(damage) or not journaled_stop)
    return RecoveryRecord(uid, status, events, docs[-1][1]["exit_status"], tuple(damage),
                          left_out=tuple(left_out))


def _rebuild(client, uid: str, docs: list[tuple[str, dict]]) -> None:
    if uid in client:  # a TiledWriter cannot resume a run: start again from the journal
        client.delete_contents(uid, recursive=True, external_only=False)
    writer = TiledWriter(client)
    for name, doc in docs:
        writer(name, doc)


def _file_away(journal: RunJournal, layout: DataDirectory, docs, *, keep_as_found: bool,
               rewrite: bool) -> None:
    """Move the journal to journal/complete; if it does not hold exactly ``docs`` (unreadable
    lines, a stop added, a tail left out) write ``docs`` there instead, keeping the file as
    found in journal/damaged when it holds lines ``docs`` lack."""
    if not rewrite:
        journal.archive(layout.complete_journals)
        return
    write_journal(layout.complete_journals / journal.path.name, docs)
    if keep_as_found:
        _archive_damaged(journal, layout)
    else:
        os.unlink(journal.path)
        journal.close()


def _archive_damaged(journal: RunJournal, layout: DataDirectory) -> None:
    layout.damaged_journals.mkdir(exist_ok=True)
    journal.archive(layout.damaged_journals)
