"""Runs of a catalog as a databroker/Tiled user expects them: a sequence you can index,
slice, iterate, count and search.

    cat[-1]                      the latest acquired run (analysis runs are not in the list)
    cat[-5:]                     the five latest, oldest first; any slice works
    cat[42]                      the latest run with scan id 42; cat["3f2a9"]: a uid prefix
    len(cat), list(cat)          how many runs; their uids, oldest first
    cat.search(Key("sample") == "CdSe-07")             Tiled queries on the start document
    cat.search(Key("operator") == "alice").search(TimeRange(since="2026-12-01"))
    cat.search(Key("stop.exit_status") == "success")   ... or on the stop document

A search gives another :class:`RunView` (so it is indexed, sliced and searched the same
way); ``view.node`` is the underlying Tiled ``CatalogOfBlueskyRuns`` client for the rest of
its API. Analysis (derived) runs are found from their raw run: ``cat.analyses(run)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

from tiled.queries import Key, KeyPresent

from ncsynth.run_lookup import MIN_PARTIAL_UID

#: The start document of a derived (analysis) run names its raw run.
RAW_UID_KEY = "start.raw_uid"
#: Raw (acquired) runs: those whose start document names no raw run.
RAW_RUNS = KeyPresent(RAW_UID_KEY, exists=False)


class RunNotFound(KeyError):
    """No run in the catalog matches the reference."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else "run not found"


class RunView:
    """The runs of a Tiled ``CatalogOfBlueskyRuns`` node, oldest first; ``where`` names the
    catalog in messages (a directory or a server URL)."""

    def __init__(self, node, where: str):
        self._node = node
        self.where = where

    @property
    def node(self):
        """The Tiled client node these runs come from (``search``, ``values``, ...)."""
        return self._node

    def __repr__(self) -> str:
        return f"<runs of {self.where!r}: {len(self)}>"

    def __len__(self) -> int:
        return len(self.node)

    def __iter__(self) -> Iterator[str]:
        """The runs' uids, oldest first (as databroker's ``list(catalog)``)."""
        return iter(self.node)

    def __contains__(self, uid) -> bool:
        return isinstance(uid, str) and uid in self.node

    def values(self) -> list:
        """Every run client, oldest first."""
        return list(self.node.values())

    def search(self, query) -> "RunView":
        """The runs matching a Tiled query (``Key("sample") == "x"``: a key without
        ``start.``/``stop.`` refers to the start document; bluesky's ``TimeRange``)."""
        return RunView(self.node.search(query), self.where)

    def __getitem__(self, ref):
        """A run for a full uid, a unique uid prefix (>= 5 characters), a scan id (int >= 1,
        the latest run with that id), or a negative index (-1 = latest); a list of runs for a
        slice (``[-5:]``: the five latest, oldest first).

        Raises :class:`RunNotFound` (a ``KeyError``) when nothing matches, ``ValueError`` for
        an ambiguous or too-short partial uid or for 0, ``TypeError`` for other types.
        """
        if isinstance(ref, slice):
            return self._slice(ref)
        if isinstance(ref, bool) or not isinstance(ref, (str, numbers.Integral)):
            raise TypeError(
                f"run reference must be a uid (str), a scan id (int >= 1), a negative index or a "
                f"slice, got {type(ref).__name__}: {ref!r}")
        if isinstance(ref, str):
            return self._by_uid(self.node, ref)
        ref = int(ref)
        if ref == 0:
            raise ValueError("run reference 0 is neither a scan id (>= 1) nor a recent-run index (-1 = latest)")
        if ref > 0:
            found = self.node.search(Key("start.scan_id") == ref)
            if not len(found):
                raise RunNotFound(f"no run with scan id {ref} in {self.where}")
            return found.values().last()
        count = len(self.node)
        if -ref > count:
            raise RunNotFound(f"run index {ref} is out of range: {self.where} holds {count} runs")
        return self.node.values()[ref]

    def _slice(self, ref: slice) -> list:
        start, stop, step = ref.indices(len(self.node))
        if step < 0 or start >= stop:
            return [self.node.values()[i] for i in range(start, stop, step)] if step < 0 else []
        return list(self.node.values()[start:stop])[::step]

    def _by_uid(self, node, ref: str):
        if len(ref) < MIN_PARTIAL_UID:
            raise ValueError(f"run reference {ref!r} is too short: give at least {MIN_PARTIAL_UID} "
                             f"characters of the uid")
        try:
            return node[ref]
        except KeyError:
            raise RunNotFound(f"no run with uid {ref!r} (or starting with it) in {self.where}") from None
