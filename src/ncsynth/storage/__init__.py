"""Storage of bluesky runs: the embedded catalog, journal, recovery.

Modules: :mod:`~ncsynth.storage.catalog` (open_catalog, Catalog: lookups, documents, writer,
recover), :mod:`~ncsynth.storage.writer` (the RunEngine subscriber and its commit policy, with
measured TiledWriter costs), :mod:`~ncsynth.storage.journal` (per-run JSON-lines journal),
:mod:`~ncsynth.storage.recovery` (completing runs of killed processes),
:mod:`~ncsynth.storage.layout` (the data directory, DataDirectoryError),
:mod:`~ncsynth.storage.integrity` (the SQLite files checked before use, write-ahead logging).
"""

from .catalog import Catalog, RunNotFound, open_catalog
from .layout import DataDirectoryError
from .recovery import RECOVERED_REASON, RecoveryRecord, recover_runs
from .writer import CatalogWriter

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
