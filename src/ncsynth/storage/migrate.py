"""Moving a catalog into another database: ``ncsynth catalog migrate``.

A data directory's embedded catalog (``catalog.db`` and ``tables.sqlite``) is moved into a
catalog in a database server (PostgreSQL at a facility) by replaying it: every run, analysis
runs included, in the order the source catalog stores them, is read back as its bluesky
documents (``run.documents()``: start, descriptors, events, stream_resource/stream_datum,
stop) and fed to a fresh ``TiledWriter`` on the target, exactly as recovery rebuilds a run
from its journal (:mod:`ncsynth.storage.recovery`). Arrays are written again, to the target's
``arrays-<database>/`` (:attr:`~ncsynth.storage.layout.DataDirectory.arrays`); detector frames are not copied (both catalogs register the
same HDF5 files in ``frames/``). The source is only read, never changed.

After each run the target is checked against the source: the same documents of each kind
(events per stream, stream_datum frame ranges) — a run that differs is reported and stops the
move. A run already complete in the target (a move interrupted and started again) is left as
it is; an incomplete one is written again.

A run still being written, or one whose process died (a journal in ``journal/active``), would
be moved half: the move is refused until it has finished or ``ncsynth recover`` completed it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

from .catalog import Catalog
from .journal import active_journals


class MigrationError(RuntimeError):
    """The move cannot start, or a run came out different in the target."""


class MovedRun(NamedTuple):
    """One run of a move: ``status`` "copied", "already-there" (complete in the target before)
    or "replaced" (an incomplete copy in the target was written again); ``documents``:
    documents of each kind in the target (equal to the source's)."""

    uid: str
    status: str
    documents: dict


def document_counts(docs: list[tuple[str, dict]]) -> dict:
    """Documents of each kind, events per stream and frames referenced by stream_datum
    documents: what must be equal in the source and the target."""
    stream_of = {doc["uid"]: doc.get("name") for name, doc in docs if name == "descriptor"}
    counts = Counter(name for name, _ in docs)
    for name, doc in docs:
        if name == "event":
            counts[f"events:{stream_of.get(doc['descriptor'])}"] += 1
        elif name == "event_page":
            counts[f"events:{stream_of.get(doc['descriptor'])}"] += len(doc["seq_num"])
        elif name == "stream_datum":
            counts["frames"] += doc["indices"]["stop"] - doc["indices"]["start"]
    return dict(sorted(counts.items()))


def migrate_catalog(source: Catalog, target: Catalog,
                    report: Callable[[MovedRun], None] | None = None) -> list[MovedRun]:
    """Copy every run of ``source`` into ``target`` (see the module docstring); the runs moved,
    in order. ``report`` is called with each as it is done (a progress line).
    :class:`MigrationError` if a run is still being written or needs recovery in the source,
    or if a copied run differs from its source."""
    pending = list(active_journals(source.layout.active_journals))
    if pending:
        raise MigrationError(
            f"{source.layout.active_journals}: {len(pending)} run(s) still being written or left "
            f"by a process that died; let them finish or run `ncsynth recover` first")
    from bluesky_tiled_plugins import TiledWriter

    moved = []
    for uid, run in source.client.items():
        docs = [(name, doc.to_dict()) for name, doc in run.documents()]  # read-only: mutable
        expected = document_counts(docs)
        status = "copied"
        if uid in target.client:
            if target.client[uid].metadata.get("stop"):
                status = "already-there"
            else:
                target.client.delete_contents(uid, recursive=True, external_only=False)
                status = "replaced"
        if status != "already-there":
            writer = TiledWriter(target.client)
            for name, doc in docs:
                writer(name, doc)
        got = document_counts(list(target.client[uid].documents()))
        if got != expected:
            raise MigrationError(f"run {uid}: the target holds {got}, the source {expected}")
        moved.append(MovedRun(uid, status, got))
        if report is not None:
            report(moved[-1])
    return moved
