"""Where things live inside an ncsynth data directory.

One data directory holds everything the embedded catalog needs; nothing else is written
outside it except the detector's own HDF5 files (which may live in ``frames/`` or in any
directory passed as ``readable_storage`` to :func:`ncsynth.storage.open_catalog`)::

    <data_dir>/
        catalog.db          SQLite catalog of runs (Tiled metadata, data sources, assets)
        tables.sqlite       SQLite tabular storage: the event tables (scalars, small arrays)
        arrays/             array storage (zarr) for internal arrays larger than 16 elements
                            (arrays-<database>/ for a catalog in a database server)
        frames/             default home of detector HDF5 files (readable by the catalog)
        journal/active/     <start uid>.jsonl of runs whose stop has not reached the catalog
        journal/complete/   the same journals once the catalog holds the whole run
        journal/damaged/    journals recovery had to change (unreadable lines, an unmatched
                            tail left out), as found (recovery rebuilt the rest)

At a facility the catalog and the event tables can live in a database server instead of
``catalog.db`` and ``tables.sqlite`` (``database_uri``, ``tables_uri``: SQLAlchemy URIs such as
``postgresql://ncsynth@db/ncsynth_catalog``); arrays, frames and journals stay in the directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class DataDirectoryError(ValueError):
    """A data directory, or a file in it, that cannot be used; the message names the path and
    the cause in one line."""


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


def check_database_uri(uri, what: str) -> str | None:
    """``uri`` (None or "" for none) if it is a ``sqlite:///`` or ``postgresql://`` URI;
    ValueError naming ``what`` otherwise (the URI itself is not repeated: it may hold a
    password)."""
    if uri is None or uri == "":
        return uri
    if not isinstance(uri, str):
        raise TypeError(f"{what} must be a str URI, got {type(uri).__name__}")
    if uri.split(":", 1)[0].split("+")[0] not in DATABASE_SCHEMES or "://" not in uri:
        raise ValueError(f"{what} must be a sqlite:/// or postgresql:// URI "
                         f"(e.g. postgresql://ncsynth@db.example.org/ncsynth_catalog)")
    return uri


@dataclass(frozen=True)
class DataDirectory:
    """Paths of one ncsynth data directory (see the module docstring for the layout)."""

    root: Path
    #: the catalog's database elsewhere (e.g. ``postgresql://...``); None: ``catalog.db``
    database_uri: str | None = None
    #: the event tables' database elsewhere; None: ``tables.sqlite``
    tables_uri: str | None = None
    #: a private copy of ``catalog.db`` and ``tables.sqlite`` read instead of the directory's
    #: own, which are on read-only media (:mod:`~ncsynth.storage.read_only`); None: no copy
    snapshot: Path | None = None

    @classmethod
    def at(cls, data_dir: str | os.PathLike, *, database_uri: str | None = None,
           tables_uri: str | None = None) -> "DataDirectory":
        """Resolve ``data_dir`` (str or path) to an absolute :class:`DataDirectory`, its catalog
        in ``database_uri`` and its tables in ``tables_uri`` if given (``sqlite:///`` or
        ``postgresql://`` URIs; empty means the files in the directory)."""
        if isinstance(data_dir, bool) or not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(
                f"data_dir must be a str or os.PathLike path, got {type(data_dir).__name__}: {data_dir!r}"
            )
        if str(data_dir) == "":
            raise ValueError("data_dir must not be empty")
        uris = {name: check_database_uri(uri, name) or None
                for name, uri in (("database_uri", database_uri), ("tables_uri", tables_uri))}
        return cls(Path(data_dir).expanduser().resolve(), **uris)

    @property
    def local(self) -> bool:
        """Catalog and tables are the SQLite files of the directory (checked, WAL mode)."""
        return self.database_uri is None and self.tables_uri is None

    @property
    def catalog_uri(self) -> str:
        return self.database_uri or f"sqlite:///{self.catalog_db}"

    @property
    def tables_storage_uri(self) -> str:
        return self.tables_uri or f"sqlite:///{self.tables_db}"

    @property
    def catalog_db(self) -> Path:
        return (self.snapshot or self.root) / "catalog.db"

    @property
    def tables_db(self) -> Path:
        return (self.snapshot or self.root) / "tables.sqlite"

    @property
    def arrays(self) -> Path:
        """``arrays/``; for a catalog in a database server ``arrays-<database name>/``: the
        catalogs of one directory (before and after ``ncsynth catalog migrate``) write their
        arrays under the same node paths, so each keeps its own."""
        if self.database_uri is None:
            return self.root / "arrays"
        name = urlsplit(self.database_uri).path.strip("/") or "default"
        return self.root / f"arrays-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def active_journals(self) -> Path:
        return self.root / "journal" / "active"

    @property
    def complete_journals(self) -> Path:
        return self.root / "journal" / "complete"

    @property
    def damaged_journals(self) -> Path:
        return self.root / "journal" / "damaged"

    def create(self) -> None:
        """Create the directories (idempotent; none for a read-only directory's snapshot);
        :class:`DataDirectoryError` if they cannot be."""
        if self.root.exists() and not self.root.is_dir():
            raise DataDirectoryError(f"{self.root}: the data directory is a file, not a directory")
        if self.snapshot is not None:
            return
        try:
            for path in (self.arrays, self.frames, self.active_journals, self.complete_journals):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataDirectoryError(f"{err.filename}: cannot create it ({err.strerror})") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the data directory (``flock`` on its ``.lock`` file), e.g.
        while its catalog is created: two first runs on a new directory would both create it.
        A read-only directory holding a catalog is not locked (nobody can create one there)."""
        path = self.root / ".lock"
        try:
            file = open(path, "a")
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and self.catalog_db.exists():
                yield
                return
            raise DataDirectoryError(f"{path}: cannot lock the data directory ({err.strerror})") from None
        with file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            yield
