"""The embedded run catalog: databroker 2 / Tiled on files, no server to start.

    from ncsynth.storage import open_catalog
    catalog = open_catalog("~/ncsynth-data")      # created on first use (~3 s), ~0.5 s after
    RE.subscribe(catalog.writer())                # journal + catalog, see ncsynth.storage.writer
    run = catalog[-1]                             # latest; also catalog[42] (scan id),
                                                  # catalog["3f2a9"] (partial uid), full uid
    run.primary.read()                            # xarray Dataset of the primary stream
    run.primary["saxs_image"].read()              # frames, read from the detector's HDF5 files
    for name, doc in catalog.documents(-1): ...   # the run's documents, in order (replay)
    catalog.recover()                             # complete runs of killed processes

Storage: a Tiled SQLite catalog (``catalog.db``), SQLite tabular storage (``tables.sqlite``,
which other processes can open while a run is written; DuckDB would lock them out) and zarr
array storage, all in one data directory (:mod:`ncsynth.storage.layout`). The Tiled app runs in
this process (``Context.from_app``); every process that opens the directory gets its own app
on the same files, so a second process (analysis, a notebook) reads runs while they are being
acquired. Detector frames are not copied: the catalog registers the detector's HDF5 files
(``frames/`` or any ``readable_storage`` directory) and reads them on demand.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from bluesky_tiled_plugins.exporters import json_seq_exporter
from tiled.catalog import from_uri
from tiled.catalog.adapter import DatabaseInitializationError
from tiled.client import Context, from_context
from tiled.media_type_registration import default_serialization_registry
from tiled.server.app import build_app

from .integrity import check_databases, use_wal
from .layout import DataDirectory, DataDirectoryError
from .recovery import RecoveryRecord, recover_runs
from .writer import CatalogWriter

CATALOG_SPECS = [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]
MIN_PARTIAL_UID = 5  # characters, as databroker requires


class RunNotFound(KeyError):
    """No run in the catalog matches the reference."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else "run not found"


class Catalog:
    """An open catalog; get it from :func:`open_catalog`.

    Attributes
    ----------
    client : the Tiled client root (a ``CatalogOfBlueskyRuns``), for searches and the rest
        of the databroker 2 API
    layout : the :class:`~ncsynth.storage.layout.DataDirectory`
    """

    def __init__(self, layout: DataDirectory, context: Context):
        self.layout = layout
        self._context = context
        self.client = from_context(context)

    def __repr__(self) -> str:
        return f"<Catalog {str(self.layout.root)!r} with {len(self)} runs>"

    def __len__(self) -> int:
        return len(self.client)

    def __getitem__(self, ref: str | int):
        """The run client for ``ref``: a full uid, a unique uid prefix (>= 5 characters), a
        scan id (int >= 1, the latest run with that id), or a negative index (-1 = latest).

        Raises :class:`RunNotFound` (a ``KeyError``) when nothing matches, ``ValueError`` for
        an ambiguous or too-short partial uid or for 0, ``TypeError`` for other types.
        """
        if isinstance(ref, bool) or not isinstance(ref, (str, numbers.Integral)):
            raise TypeError(
                f"run reference must be a uid (str), a scan id (int >= 1) or a negative index, "
                f"got {type(ref).__name__}: {ref!r}"
            )
        if isinstance(ref, str):
            if len(ref) < MIN_PARTIAL_UID:
                raise ValueError(
                    f"run reference {ref!r} is too short: give at least {MIN_PARTIAL_UID} characters of the uid"
                )
            try:
                return self.client[ref]
            except KeyError:
                raise RunNotFound(f"no run with uid {ref!r} (or starting with it) in {self.layout.root}") from None
        ref = int(ref)
        if ref == 0:
            raise ValueError("run reference 0 is neither a scan id (>= 1) nor a recent-run index (-1 = latest)")
        if ref > 0:
            try:
                return self.client[ref]
            except KeyError:
                raise RunNotFound(f"no run with scan id {ref} in {self.layout.root}") from None
        count = len(self.client)
        if -ref > count:
            raise RunNotFound(f"run index {ref} is out of range: the catalog {self.layout.root} holds {count} runs")
        return self.client.values()[ref]

    def documents(self, ref: str | int) -> Iterator[tuple[str, dict]]:
        """The run's documents ``(name, doc)`` in emission order, as the catalog stores them
        (start, descriptors, events, stream_resource/stream_datum, stop) — for replay."""
        run = self[ref]
        for name, doc in run.documents():
            yield name, doc

    def writer(self, **options) -> CatalogWriter:
        """A new :class:`~ncsynth.storage.writer.CatalogWriter` for ``RE.subscribe``;
        ``options`` are its keyword arguments (queue_size, flush_interval_s, wait_at_stop,
        stop_timeout_s)."""
        return CatalogWriter(self.client, self.layout, **options)

    def recover(self) -> list[RecoveryRecord]:
        """Complete into the catalog every run whose process died before its stop reached the
        catalog; see :func:`ncsynth.storage.recovery.recover_runs`."""
        return recover_runs(self.client, self.layout)

    def close(self) -> None:
        """Shut the in-process Tiled app down."""
        self._context.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_catalog(
    data_dir: str | os.PathLike, *, readable_storage: Iterable[str | os.PathLike] = ()
) -> Catalog:
    """Open (creating on first use) the file-backed catalog in ``data_dir``.

    ``readable_storage``: further directories holding detector files the catalog may register
    and read (``<data_dir>/frames`` always is). Asset documents pointing elsewhere are refused
    by Tiled. A data directory that cannot be used (a file, not writable, a damaged or empty
    ``catalog.db`` or ``tables.sqlite``) raises
    :class:`~ncsynth.storage.layout.DataDirectoryError` naming the file and the cause.
    """
    layout = DataDirectory.at(data_dir)
    if isinstance(readable_storage, (str, os.PathLike)):
        raise TypeError(f"readable_storage must be a list of directories, got a single path {readable_storage!r}")
    app = build_app(catalog_adapter(layout, readable_storage=readable_storage),
                    serialization_registry=default_serialization_registry)
    return Catalog(layout, Context.from_app(app))


def catalog_adapter(layout: DataDirectory, *, database_uri: str | None = None, tables_uri: str | None = None,
                    readable_storage: Iterable[str | os.PathLike] = ()):
    """The Tiled catalog adapter over ``layout`` (created on first use), for the embedded
    catalog and the catalog server: ``arrays/`` and the tables writable, ``frames/`` (and
    ``readable_storage``) readable.

    By default the catalog and tables are ``catalog.db`` and ``tables.sqlite`` of the data
    directory: checked before use (:func:`~ncsynth.storage.integrity.check_databases`),
    created under the directory's lock, in write-ahead-log mode. ``database_uri``/``tables_uri``
    put them elsewhere (PostgreSQL at a facility), unchecked; the database is then initialised
    if needed (``tiled catalog init --if-not-exists``).
    """
    extra = [str(Path(p).expanduser().resolve()) for p in readable_storage]
    local = database_uri is None and tables_uri is None
    layout.create()
    with layout.locked():
        new = not layout.catalog_db.exists()
        if local and not new:
            check_databases(layout)
        try:
            adapter = from_uri(
                database_uri or f"sqlite:///{layout.catalog_db}",
                writable_storage=[str(layout.arrays), tables_uri or f"sqlite:///{layout.tables_db}"],
                readable_storage=[str(layout.frames), *extra],
                init_if_not_exists=new or not local,  # runs `tiled catalog init` in a subprocess (~3 s)
                specs=CATALOG_SPECS,
            )
        except DatabaseInitializationError as err:
            where = layout.catalog_db if database_uri is None else "[catalog] database_uri"  # no password
            lines = str(err).strip().splitlines() or ["no message"]
            raise DataDirectoryError(f"{where}: cannot create the catalog ({lines[-1]})") from None
        if local:
            use_wal(layout.catalog_db)
            use_wal(layout.tables_db)
    # run.documents() asks the server for the BlueskyRun as application/json-seq.
    default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    return adapter
