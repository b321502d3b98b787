"""Where things live inside an ncsynth data directory.

One data directory holds everything the embedded catalog needs; nothing else is written
outside it except the detector's own HDF5 files (which may live in ``frames/`` or in any
directory passed as ``readable_storage`` to :func:`ncsynth.storage.open_catalog`)::

    <data_dir>/
        catalog.db          SQLite catalog of runs (Tiled metadata, data sources, assets)
        tables.sqlite       SQLite tabular storage: the event tables (scalars, small arrays)
        arrays/             array storage (zarr) for internal arrays larger than 16 elements
        frames/             default home of detector HDF5 files (readable by the catalog)
        journal/active/     <start uid>.jsonl of runs whose stop has not reached the catalog
        journal/complete/   the same journals once the catalog holds the whole run
        journal/damaged/    journals with unreadable lines, as found (recovery rebuilt the rest)
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class DataDirectoryError(ValueError):
    """A data directory, or a file in it, that cannot be used; the message names the path and
    the cause in one line."""


@dataclass(frozen=True)
class DataDirectory:
    """Paths of one ncsynth data directory (see the module docstring for the layout)."""

    root: Path

    @classmethod
    def at(cls, data_dir: str | os.PathLike) -> "DataDirectory":
        """Resolve ``data_dir`` (str or path) to an absolute :class:`DataDirectory`."""
        if isinstance(data_dir, bool) or not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(
                f"data_dir must be a str or os.PathLike path, got {type(data_dir).__name__}: {data_dir!r}"
            )
        if str(data_dir) == "":
            raise ValueError("data_dir must not be empty")
        return cls(Path(data_dir).expanduser().resolve())

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def tables_db(self) -> Path:
        return self.root / "tables.sqlite"

    @property
    def arrays(self) -> Path:
        return self.root / "arrays"

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
        """Create the directories (idempotent); :class:`DataDirectoryError` if they cannot be."""
        if self.root.exists() and not self.root.is_dir():
            raise DataDirectoryError(f"{self.root}: the data directory is a file, not a directory")
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
