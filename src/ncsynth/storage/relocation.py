"""A data directory moved or copied away from where its runs were written.

The catalog (Tiled) refers to the event tables and the frame files by absolute path: a
directory copied home from the beamline (``rsync``, ``cp -a``) still refers to the hutch's
paths, and Tiled refuses to read tables outside the directory it was opened on (``export`` of a
copy ended in ``ClientError: 400: No such field sqlite://...``) or finds them gone (``validate``
printed "no frames" for a run of 20). So a local data directory whose catalog refers to files
under another directory is refused by :func:`~ncsynth.storage.catalog.open_catalog`, in one
line naming both and the command that mends it: ``ncsynth recover`` points the catalog's
references under the old directory at this one (:func:`relocate`). The catalog is not rewritten
behind the user's back: a directory mounted at another path on another machine (the hutch's)
would then lose its own references. The journals keep the paths of acquisition; replay maps
them (:func:`written_elsewhere`).
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .layout import DataDirectory, DataDirectoryError

_TABLES_ASSET = "SELECT data_uri FROM assets WHERE data_uri LIKE 'sqlite:%/tables.sqlite' ORDER BY id LIMIT 1"


def written_root(db: sqlite3.Connection) -> Path | None:
    """The directory the runs of catalog ``db`` were written in (where its event tables are),
    or None before the first run's tables."""
    row = db.execute(_TABLES_ASSET).fetchone()
    if row is None:
        return None
    return Path("/" + re.sub(r"^sqlite:(//[^/]*)?/+", "", row[0])).parent


def point_assets(db: sqlite3.Connection, written: Path, root: Path, tables: Path) -> int:
    """In catalog ``db`` (the caller commits): the event tables ``<written>/tables.sqlite`` at
    ``tables``, the files under ``<written>/`` under ``root/``; the number of references moved.
    Prefixes are compared exactly (``LIKE`` would read ``_`` and ``%`` in a path as wildcards)."""
    old_tables, old_files = str(written / tables.name), f"file://localhost{written}/"
    moved = db.execute("UPDATE assets SET data_uri = replace(data_uri, ?, ?) "
                       "WHERE substr(data_uri, 1, 7) = 'sqlite:' AND substr(data_uri, ?) = ?",
                       (old_tables, str(tables), -len(old_tables), old_tables)).rowcount
    return moved + db.execute(
        "UPDATE assets SET data_uri = ? || substr(data_uri, ?) WHERE substr(data_uri, 1, ?) = ?",
        (f"file://localhost{root}/", len(old_files) + 1, len(old_files), old_files)).rowcount


def moved_from(layout: DataDirectory) -> Path | None:
    """Where the runs of the local data directory ``layout`` were written, if that is another
    directory (None otherwise; a read-only directory's snapshot points at its own files,
    :mod:`~ncsynth.storage.read_only`)."""
    if not (layout.local and layout.snapshot is None and layout.catalog_db.is_file()):
        return None
    with closing(sqlite3.connect(f"file:{layout.catalog_db}?mode=ro", uri=True)) as db:
        written = written_root(db)
    return None if written is None or written == layout.root else written


def refusal(layout: DataDirectory, written: Path) -> DataDirectoryError:
    """The one-line refusal of a data directory moved from ``written``."""
    return DataDirectoryError(
        f"{layout.root}: the catalog refers to the runs' files in {written}, where they were "
        f"written (a moved or copied data directory); "
        f"`ncsynth recover --data-dir {layout.root}` points it at this directory")


def relocate(layout: DataDirectory, written: Path) -> int:
    """Point the catalog of ``layout``, whose runs were written in ``written``
    (:func:`moved_from`), at this directory's own files; the number of references moved."""
    with closing(sqlite3.connect(layout.catalog_db)) as db, db:
        return point_assets(db, written, layout.root, layout.tables_db)


def written_elsewhere(documents, layout: DataDirectory) -> dict[str, str]:
    """``{the data directory a run was written in: this one}`` for the run's ``(name, doc)``
    documents when its frame files were written under another directory's ``frames/`` that no
    longer holds them and this directory's ``frames/`` does (a moved or copied data directory:
    its journals keep the paths of acquisition), else ``{}``: the analysis's ``root_map``. The
    mask of a dry run's simulated calibration, written under ``calibration/`` of the same
    directory, moves with it."""
    if not layout.local:
        return {}
    for name, doc in documents:
        if name != "stream_resource" or not doc.get("uri", "").startswith("file:"):
            continue
        path = Path(unquote(urlsplit(doc["uri"]).path))
        if path.exists() or path.is_relative_to(layout.root):
            return {}
        parts = path.parts
        for i in range(len(parts) - 2, 0, -1):  # the last frames/ of the path
            if parts[i] == layout.frames.name and layout.frames.joinpath(*parts[i + 1:]).exists():
                return {str(Path(*parts[:i])): str(layout.root)}
        return {}
    return {}
