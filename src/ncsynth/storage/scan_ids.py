"""Scan ids that increase across runs and processes writing to one data directory.

bluesky's default scan id is ``RE.md["scan_id"] + 1``: a RunEngine with fresh metadata (a
dry run, a second session on another ``RE.md``, a notebook) starts again at 1, and a data
directory soon holds five runs with scan id 1. :class:`ScanIds` is a
``RunEngine(scan_id_source=...)`` that takes the next number from a counter file in the data
directory (``last_scan_id``), under the directory's lock, so two processes never get the same
id; the first use seeds it from the highest scan id the catalog holds. A user's larger
``RE.md["scan_id"]`` (e.g. carried on from another system) still wins: the next id is one more
than the largest of the three.
"""

from __future__ import annotations

import os

from tiled.queries import Key

COUNTER_FILENAME = "last_scan_id"


def highest_scan_id(runs) -> int:
    """The highest ``start.scan_id`` among ``runs`` (a Tiled node of runs), 0 if none."""
    numbered = runs.search(Key("start.scan_id") >= 0).sort(("start.scan_id", -1))
    if not len(numbered):
        return 0
    return int(numbered.values().first().metadata["start"]["scan_id"])


class ScanIds:
    """``scan_id_source`` of a RunEngine writing to the data directory ``layout`` whose raw
    runs are the Tiled node ``runs`` (see the module docstring). Without a ``layout`` (a
    catalog server and no local directory) the catalog's highest id is the counter."""

    def __init__(self, layout, runs):
        self.layout = layout
        self.runs = runs

    @property
    def path(self):
        return None if self.layout is None else self.layout.root / COUNTER_FILENAME

    def __call__(self, md) -> int:
        requested = md.get("scan_id") or 0
        if self.layout is None:
            return max(highest_scan_id(self.runs), requested) + 1
        with self.layout.locked():
            last = self._read()
            if last is None:
                last = highest_scan_id(self.runs)
            scan_id = max(last, requested) + 1
            self._write(scan_id)
        return scan_id

    def _read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:  # a damaged counter: the catalog knows the ids it holds
            return highest_scan_id(self.runs)

    def _write(self, scan_id: int) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(f"{scan_id}\n")
        os.replace(partial, self.path)
