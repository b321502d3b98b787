"""The data directory's SQLite files checked before Tiled opens them, and set up for several
processes at once.

Tiled meets a damaged or empty ``catalog.db`` or ``tables.sqlite`` only at its first query,
deep inside a request, as a traceback or an HTTP 500. :func:`check_databases` looks first and
raises :class:`DataDirectoryError`, one line naming the file and the cause.

Readers and writers in several processes (a dry run writing, a notebook, the catalog server
reading) share the files. In SQLite's default rollback-journal mode a reader that meets a
commit in progress gets ``database is locked`` at once: Tiled's tabular storage (ADBC SQLite
driver) sets no busy timeout and offers no option for one, and the catalog's (aiosqlite) waits
5 s. :func:`use_wal` puts both files in write-ahead-log mode, where readers never wait for a
writer and a writer never waits for readers (a setting stored in the file; SQLite's WAL needs
a local file system, not NFS). Two writers (two dry runs, a dry run and a replay) take turns
through the directory's write lock (:mod:`~ncsynth.storage.write_lock`: Tiled's ADBC
connections have no busy timeout, and a busy timeout would not cover a transaction that read
before it writes). A read-only data directory cannot be opened in place (WAL needs to write its
index beside the file even to read): a reader gets a copy (:mod:`~ncsynth.storage.read_only`),
anything else a one-line refusal.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from .layout import DataDirectory, DataDirectoryError

logger = logging.getLogger(__name__)

#: Tables every Tiled catalog database holds (a subset).
CATALOG_TABLES = frozenset({"nodes", "data_sources", "assets", "alembic_version"})
#: Longest wait for another process's lock on a database while checking it, s.
BUSY_TIMEOUT_S = 10.0


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)


def _tables(path: Path) -> set[str]:
    """Names of the tables in the SQLite database ``path``, after SQLite's quick integrity check."""
    if path.is_dir():
        raise DataDirectoryError(f"{path}: is a directory, not an SQLite database")
    try:
        with closing(_connect(path)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise DataDirectoryError(f"{path}: damaged SQLite database ({problems[0]})")
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        if getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_CANTOPEN \
                and not os.access(path.parent, os.W_OK):
            raise DataDirectoryError(
                f"{path.parent}: the data directory is read-only, and its catalog (SQLite in "
                f"write-ahead-log mode) needs to write beside itself even to be read ({err}); "
                f"open it where it is writable") from None
        raise DataDirectoryError(f"{path}: not a readable SQLite database ({err})") from None


def check_databases(layout: DataDirectory) -> None:
    """Raise :class:`DataDirectoryError` unless ``catalog.db`` is a whole Tiled catalog and
    ``tables.sqlite`` (if present) a whole SQLite database holding every event table the
    catalog refers to. Call only when ``catalog.db`` exists."""
    catalog_tables = _tables(layout.catalog_db)
    missing = CATALOG_TABLES - catalog_tables
    if missing:
        what = "an empty file" if not catalog_tables else f"no {', '.join(sorted(missing))} table"
        raise DataDirectoryError(f"{layout.catalog_db}: not a run catalog ({what}); move it aside "
                                 f"to start a new catalog, or restore it from a backup")
    with closing(_connect(layout.catalog_db)) as db:
        referenced = {row[0] for row in db.execute(
            "SELECT DISTINCT json_extract(parameters, '$.table_name') FROM data_sources "
            "WHERE structure_family = 'table'") if row[0]}
    if not referenced and not layout.tables_db.exists():
        return
    held = _tables(layout.tables_db) if layout.tables_db.exists() else set()
    lost = referenced - held
    if lost:
        raise DataDirectoryError(f"{layout.tables_db}: {len(lost)} of the {len(referenced)} event tables "
                                 f"the catalog refers to are missing (an empty, replaced or deleted "
                                 f"file?); restore it from a backup")


def use_wal(path: Path) -> None:
    """Put the SQLite database ``path`` (created if missing) in write-ahead-log mode; if it is
    busy or read-only now, leave it as it is (with a warning) and try again next time."""
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as err:
        logger.warning("%s: could not switch to write-ahead logging (%s); readers may meet "
                       "'database is locked' while a run is written", path, err)

