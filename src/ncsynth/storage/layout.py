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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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

    def create(self) -> None:
        """Create the directories (idempotent)."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"data_dir {str(self.root)!r} exists and is not a directory")
        for path in (self.arrays, self.frames, self.active_journals, self.complete_journals):
            path.mkdir(parents=True, exist_ok=True)
