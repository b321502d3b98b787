"""Reading a data directory on read-only media (a copy on a DVD, a read-only mount).

The catalog's SQLite files are in write-ahead-log mode (:mod:`~ncsynth.storage.integrity`),
and SQLite opens such a file, even to read it, only where it can create its ``-shm`` index
beside it: in a read-only directory it cannot open ``catalog.db`` at all. A process that only
reads (``ncsynth export``, ``report``, ``validate``; ``open_catalog(..., read_only=True)``)
gets a *snapshot* instead: ``catalog.db`` and ``tables.sqlite`` (with any ``-wal`` file a
copy caught open) copied into a private temporary directory, removed at exit (or, after a
SIGKILL, by the next reader: :func:`remove_orphaned_snapshots`), the catalog's
reference to the event tables pointed at the copy. Frames and arrays are read where they are:
the catalog refers to them by absolute path, so in the copy's catalog the paths under the
directory where the runs were written become paths under this one (a directory copied to a
DVD or another mount reads whole).
Nothing can be stored through a snapshot: the catalog refuses writers
(:meth:`~ncsynth.storage.catalog.Catalog.writer`) and its app refuses every write request
(:class:`~ncsynth.storage.write_lock.SerializedWrites`).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from .layout import DataDirectory, DataDirectoryError
from .relocation import point_assets, written_root

#: Name of a snapshot directory before its process id (``ncsynth-read-only-<pid>-<random>``).
SNAPSHOT_PREFIX = "ncsynth-read-only-"


def is_read_only(layout: DataDirectory) -> bool:
    """The directory holds an SQLite catalog this process cannot write beside."""
    return layout.local and layout.snapshot is None and layout.catalog_db.is_file() \
        and not os.access(layout.root, os.W_OK)


def read_only_refusal(layout: DataDirectory, what: str) -> DataDirectoryError:
    """The one-line refusal of ``what`` (something that writes) in a read-only directory."""
    return DataDirectoryError(f"{layout.root}: the data directory is read-only, {what} cannot be "
                              f"stored there; copy the directory somewhere writable (cp -a) first")


def snapshot(layout: DataDirectory) -> DataDirectory:
    """``layout`` reading a private copy of its SQLite files (see the module docstring), or
    ``layout`` itself when it is not read-only. :class:`DataDirectoryError` names a damaged
    original as :func:`~ncsynth.storage.integrity.check_databases` would."""
    from .integrity import check_databases

    if not is_read_only(layout):
        return layout
    remove_orphaned_snapshots(Path(tempfile.gettempdir()))
    copy = Path(tempfile.mkdtemp(prefix=f"{SNAPSHOT_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    copied = dataclasses.replace(layout, snapshot=copy)
    try:
        for name in (layout.catalog_db.name, layout.tables_db.name):
            for suffix in ("", "-wal"):
                if (layout.root / f"{name}{suffix}").is_file():
                    shutil.copyfile(layout.root / f"{name}{suffix}", copy / f"{name}{suffix}")
        check_databases(copied)
        with closing(sqlite3.connect(copied.catalog_db)) as db, db:
            written = written_root(db)
            if written is not None:  # else no event table yet
                point_assets(db, written, layout.root, copied.tables_db)
    except OSError as err:
        raise DataDirectoryError(f"{err.filename}: cannot copy it to read the read-only data "
                                 f"directory ({err.strerror})") from None
    except DataDirectoryError as err:
        raise DataDirectoryError(str(err).replace(str(copy), str(layout.root))) from None
    return copied


def remove_orphaned_snapshots(parent: Path) -> list[Path]:
    """Remove the snapshots in ``parent`` whose process is gone (a reader killed with
    SIGKILL never runs its exit handler); return them. A snapshot is
    ``<SNAPSHOT_PREFIX><pid>-<random>``; one of a live process (or of another user's) stays."""
    removed = []
    for path in parent.glob(f"{SNAPSHOT_PREFIX}*-*"):
        pid = path.name[len(SNAPSHOT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True

