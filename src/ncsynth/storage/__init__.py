"""Storage of bluesky runs: the embedded catalog, journal, recovery.

Modules: :mod:`~ncsynth.storage.catalog` (open_catalog, Catalog: lookups, documents, writer,
recover), :mod:`~ncsynth.storage.writer` (the RunEngine subscriber and its commit policy, with
measured TiledWriter costs), :mod:`~ncsynth.storage.journal` (per-run JSON-lines journal),
:mod:`~ncsynth.storage.recovery` (completing runs of killed processes),
:mod:`~ncsynth.storage.layout` (the data directory, DataDirectoryError),
:mod:`~ncsynth.storage.integrity` (the SQLite files checked before use, write-ahead logging),
:mod:`~ncsynth.storage.write_lock` (writers in several processes take turns),
:mod:`~ncsynth.storage.read_only` (reading a data directory on read-only media).
"""

from .catalog import Catalog, RunNotFound, open_catalog
from .layout import DataDirectoryError

_LAZY = {"RECOVERED_REASON": "recovery", "RecoveryRecord": "recovery", "recover_runs": "recovery",
         "CatalogWriter": "writer"}


def __getattr__(name: str):
    """The recovery and writer names, imported on first use (they import Tiled's writer)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Catalog",
    "CatalogWriter",
    "DataDirectoryError",
    "RECOVERED_REASON",
    "RecoveryRecord",
    "RunNotFound",
    "open_catalog",
    "recover_runs",
]
