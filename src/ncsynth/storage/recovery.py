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
3. if the journal has no stop document, appends one, honestly: ``exit_status="abort"``,
   ``reason="recovered after the acquisition process died"``, ``num_events`` as counted in
   the journal, ``time`` of the last journaled document — to the journal as well;
4. moves the journal to ``journal/complete``.

A locked journal belongs to a run still being acquired and is left alone (status
``"in-progress"``). Calling :func:`recover_runs` again finds nothing more to do (idempotent).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import NamedTuple

from bluesky_tiled_plugins import TiledWriter
from event_model import unpack_event_page

from .journal import JournalLocked, RunJournal, active_journals, read_journal
from .layout import DataDirectory

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
    ``exit_status`` is the run's exit status in the catalog now (None when there is no run).
    """

    uid: str
    status: str
    events: int
    exit_status: str | None


def _events(docs: list[tuple[str, dict]]) -> Iterator[dict]:
    for name, doc in docs:
        if name == "event":
            yield doc
        elif name == "event_page":
            yield from unpack_event_page(doc)


def _synthesized_stop(docs: list[tuple[str, dict]]) -> dict:
    start = docs[0][1]
    stream_of_descriptor = {doc["uid"]: doc["name"] for name, doc in docs if name == "descriptor"}
    events = list(_events(docs))
    times = [doc["time"] for name, doc in docs if isinstance(doc.get("time"), (int, float))]
    return {
        "uid": str(uuid.uuid4()),
        "run_start": start["uid"],
        "time": max(times + [event["time"] for event in events]),
        "exit_status": "abort",
        "reason": RECOVERED_REASON,
        "num_events": dict(Counter(stream_of_descriptor[event["descriptor"]] for event in events)),
    }


def recover_runs(client, layout: DataDirectory) -> list[RecoveryRecord]:
    """Recover every unlocked journal in ``layout.active_journals`` into the catalog
    ``client`` (see the module docstring). Returns one record per journal found."""
    records = []
    for path in active_journals(layout.active_journals):
        uid = path.stem
        try:
            journal = RunJournal(path)
        except JournalLocked:
            records.append(RecoveryRecord(uid, "in-progress", 0, None))
            continue
        except FileNotFoundError:  # its writer archived it while we looked
            continue
        with journal:
            docs = read_journal(path)
            if not docs or docs[0][0] != "start":
                journal.archive(layout.complete_journals)
                records.append(RecoveryRecord(uid, "empty", 0, None))
                continue
            uid = docs[0][1]["uid"]
            events = sum(1 for _ in _events(docs))
            if uid in client:
                stored = client[uid]
                if "stop" in stored.metadata and stored.metadata["stop"]:
                    journal.archive(layout.complete_journals)
                    records.append(RecoveryRecord(uid, "already-complete", events, stored.metadata["stop"]["exit_status"]))
                    continue
                client.delete_contents(uid, recursive=True, external_only=False)
            if docs[-1][0] == "stop":
                status = "completed"
            else:
                status = "aborted"
                stop = _synthesized_stop(docs)
                journal("stop", stop)
                docs.append(("stop", stop))
            writer = TiledWriter(client)
            for name, doc in docs:
                writer(name, doc)
            journal.archive(layout.complete_journals)
            logger.warning("recovered run %s from its journal: %s, %d events", uid, status, events)
            records.append(RecoveryRecord(uid, status, events, docs[-1][1]["exit_status"]))
    return records
