"""The embedded run catalog: databroker 2 / Tiled on files, no server to start.

    from ncsynth.storage import open_catalog
    catalog = open_catalog("~/ncsynth-data")      # created on first use (~3 s), ~0.5 s after
    RE.subscribe(catalog.writer())                # journal + catalog, see ncsynth.storage.writer
    run = catalog[-1]                             # latest acquired run; also catalog[42] (scan
                                                  # id), catalog["3f2a9"] (partial uid), slices
                                                  # catalog[-5:], len, list, catalog.search(...)
    catalog.analysis(run)                         # its latest analysis run (None if none)
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

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from typing import TYPE_CHECKING

from tiled.queries import Key

from .integrity import check_databases, use_wal
from .read_only import is_read_only, read_only_refusal, snapshot
from .relocation import moved_from, refusal, relocate as relocate_catalog
from .layout import DataDirectory, DataDirectoryError
from .run_view import MIN_PARTIAL_UID, RAW_RUNS, RAW_UID_KEY, RunNotFound, RunView
from .scan_ids import ScanIds, highest_in_database, highest_scan_id

if TYPE_CHECKING:  # Tiled's client and server and the writer are imported when first needed
    from tiled.client import Context

    from .recovery import RecoveryRecord
    from .writer import CatalogWriter

CATALOG_SPECS = [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]
#: Headers of the in-process client's requests. Nothing crosses a network between it and the
#: app: responses compressed for one (blosc2, zstd, gzip of frames, tables and JSON, which the
#: client then decompresses) cost reading a run's frames and table through the catalog about a
#: third of its CPU (benchmarks/catalog_reads.py); the app sends them as they are.
IN_PROCESS_HEADERS = {"accept-encoding": "identity"}
__all__ = ["MIN_PARTIAL_UID", "Catalog", "RunNotFound", "catalog_adapter", "open_catalog"]


class Catalog(RunView):
    """An open catalog; get it from :func:`open_catalog`.

    Its runs are the acquired (raw) runs, oldest first, as a :class:`RunView`: ``cat[-1]``,
    ``cat[-5:]``, ``cat[42]``, ``len(cat)``, ``list(cat)``, ``cat.search(query)``. A uid
    (or prefix) finds any run, analysis runs included; :meth:`analyses` gives a raw run's.

    Attributes
    ----------
    client : the Tiled client root (a ``CatalogOfBlueskyRuns``) of every run, raw and derived
    layout : the :class:`~ncsynth.storage.layout.DataDirectory`
    """

    def __init__(self, layout: DataDirectory, context: "Context | None" = None, *,
                 readable_storage: Iterable[str | os.PathLike] = ()):
        self.layout = layout
        self._context = context
        self._client = None
        #: (where the runs were written, references moved) if this open relocated the catalog
        self.relocated: tuple[Path, int] | None = None
        #: further directories of detector files (the embedded catalog's ``readable_storage``)
        self.readable_storage = tuple(readable_storage)
        if context is not None:
            from tiled.client import from_context

            from .clients import STRUCTURE_CLIENTS

            self._client = from_context(context, structure_clients=STRUCTURE_CLIENTS)
        super().__init__(None, str(layout.root) if layout is not None else "")

    @property
    def client(self):
        """The Tiled client root; the embedded catalog's in-process app is built on first use."""
        if self._client is None:
            from tiled.client import Context, from_context
            from tiled.media_type_registration import default_serialization_registry
            from tiled.server.app import build_app

            from .clients import STRUCTURE_CLIENTS

            from .fastapi_overrides import skip_redundant_settings_override
            from .shared_router import share_api_routers
            from .write_lock import serialize_writes

            adapter = catalog_adapter(self.layout, readable_storage=self.readable_storage)
            self._streams_watched = bool(adapter.context.cache_config
                                         or adapter.context.webhook_secret_keys)
            share_api_routers()  # one set of API routers for every app of this process
            app = build_app(adapter, serialization_registry=default_serialization_registry)
            skip_redundant_settings_override(app)
            serialize_writes(app, self.layout)
            self._context = Context.from_app(app, headers=dict(IN_PROCESS_HEADERS))
            self._client = from_context(self._context, structure_clients=STRUCTURE_CLIENTS)
        return self._client

    _streams_watched = True  # a catalog served elsewhere (context given): unknown, so yes

    @property
    def streams_watched(self) -> bool:
        """Whether anything can follow a run's Tiled streams as they are written (a streaming
        cache or webhooks in the catalog's app): the catalog writer then closes them at each
        run's stop. The embedded catalog's app has neither. Builds the app if needed."""
        self.client  # noqa: B018
        return self._streams_watched

    @property
    def node(self):
        """The raw runs (a Tiled query, asked again on every use: new runs appear)."""
        return self.client.search(RAW_RUNS)

    def __repr__(self) -> str:
        return f"<Catalog {self.where!r} with {len(self)} runs>"

    def __getitem__(self, ref):
        if isinstance(ref, str):  # any run, analysis runs included
            return self._by_uid(self.client, ref)
        return super().__getitem__(ref)

    def analyses(self, ref) -> RunView:
        """The analysis (derived) runs of a raw run (a run client or any reference), oldest
        first."""
        run = ref if hasattr(ref, "metadata") else self[ref]
        start = run.metadata["start"]
        uid = start.get("raw_uid", start["uid"])
        return RunView(self.client.search(Key(RAW_UID_KEY) == uid), self.where)

    def analysis(self, ref):
        """The latest complete analysis run (one with its stop document) of a raw run, or
        None. An analysis without a stop is being written, or the catalog refused part of it."""
        for run in reversed(self.analyses(ref).values()):
            if run.metadata.get("stop"):
                return run
        return None

    def scan_ids(self) -> ScanIds:
        """The scan-id source for ``RunEngine(scan_id_source=...)``: ids that increase across
        the runs of every process writing to this data directory. An embedded catalog's
        highest id is read from its database, without building the Tiled app."""
        if self._embedded:
            return ScanIds(self.layout, lambda: highest_in_database(self.layout))
        return ScanIds(self.layout, lambda: highest_scan_id(self.node))

    def documents(self, ref: str | int) -> Iterator[tuple[str, dict]]:
        """The run's documents ``(name, doc)`` in emission order, as the catalog stores them
        (start, descriptors, events, stream_resource/stream_datum, stop) — for replay."""
        run = self[ref]
        for name, doc in run.documents():
            yield name, doc

    def writer(self, **options) -> "CatalogWriter":
        """A new :class:`~ncsynth.storage.writer.CatalogWriter` for ``RE.subscribe``;
        ``options`` are its keyword arguments (queue_size, flush_interval_s, wait_at_stop,
        stop_timeout_s, worker). ``worker="process"`` writes this embedded catalog from a
        process of its own (:mod:`~ncsynth.storage.writer_worker`): this process then needs
        no Tiled app for the run."""
        from .writer import CatalogWriter

        if self.layout is not None and self.layout.snapshot is not None:
            raise read_only_refusal(self.layout, "runs")
        if options.get("worker") == "process":
            if not self._embedded:
                raise ValueError("worker='process' writes an embedded catalog only")
            if "close_streams" in options:  # the worker asks the catalog it opens
                raise ValueError("close_streams: a writer process takes it from the catalog it "
                                 "opens (an embedded catalog: no stream is followed)")
            return CatalogWriter(None, self.layout, data_dir=self.layout,
                                 readable_storage=self.readable_storage, **options)
        options.setdefault("close_streams", self.streams_watched)
        return CatalogWriter(self.client, self.layout, **options)

    _embedded = True  # opened on a data directory (RemoteCatalog: False)

    def recover(self) -> list["RecoveryRecord"]:
        """Complete into the catalog every run whose process died before its stop reached the
        catalog; see :func:`ncsynth.storage.recovery.recover_runs`. No Tiled app is built
        when there is nothing to recover."""
        from .journal import active_journals

        if self.layout.snapshot is not None:
            raise read_only_refusal(self.layout, "recovered runs")
        if not any(True for _ in active_journals(self.layout.active_journals)):
            return []
        from .recovery import recover_runs  # imports Tiled's bluesky plugins (~2 s)

        return recover_runs(self.client, self.layout)

    def close(self) -> None:
        """Shut the in-process Tiled app down (if it was built)."""
        if self._context is not None:
            self._context.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_catalog(
    data_dir: str | os.PathLike, *, readable_storage: Iterable[str | os.PathLike] = (),
    lazy: bool = False, database_uri: str | None = None, tables_uri: str | None = None,
    read_only: bool = False, create: bool = True, relocate: bool = False,
) -> Catalog:
    """Open (creating on first use) the file-backed catalog in ``data_dir``.

    ``lazy``: build the in-process Tiled app on the first use of :attr:`Catalog.client` rather
    than now (a process that only writes, through ``writer(worker="process")``, never needs
    it: Tiled's server is then not even imported). ``create=False``: a catalog database that
    does not exist yet is created by the first Tiled adapter opened on it (that process's
    :attr:`Catalog.client`, or the writer's worker process) rather than here: with ``lazy``,
    this process imports no Tiled catalog at all.

    ``readable_storage``: further directories holding detector files the catalog may register
    and read (``<data_dir>/frames`` always is). Asset documents pointing elsewhere are refused
    by Tiled. A data directory that cannot be used (a file, not writable, a damaged or empty
    ``catalog.db`` or ``tables.sqlite``) raises
    :class:`~ncsynth.storage.layout.DataDirectoryError` naming the file and the cause.

    ``database_uri``/``tables_uri`` (``[catalog]`` of the configuration,
    :func:`ncsynth.config.catalog_databases`): the catalog and the event tables in a database
    server (PostgreSQL at a facility) instead of the directory's SQLite files; its schema is
    created on first use. Arrays, frames and journals stay in ``data_dir``.

    ``read_only``: the caller only reads. A data directory on read-only media is then read
    from a private copy of its SQLite files (:mod:`~ncsynth.storage.read_only`; its writer and
    recovery refused); without it such a directory is refused here, in one line.

    A directory moved or copied away from where its runs were written, whose catalog therefore
    refers to the files there (which Tiled refuses to read, or finds gone), is refused in one
    line naming both
    (:mod:`~ncsynth.storage.relocation`); ``relocate=True`` (``ncsynth recover``) points the
    catalog at this directory's own files instead (:attr:`Catalog.relocated` says from where).
    """
    layout = DataDirectory.at(data_dir, database_uri=database_uri, tables_uri=tables_uri)
    if isinstance(readable_storage, (str, os.PathLike)):
        raise TypeError(f"readable_storage must be a list of directories, got a single path {readable_storage!r}")
    readable_storage = tuple(readable_storage)
    if is_read_only(layout):
        if not read_only:
            raise read_only_refusal(layout, "runs")
        layout = snapshot(layout)
    layout.create()
    relocated = None
    if layout.local:
        with layout.locked():
            exists = layout.catalog_db.exists()
            if exists:
                check_databases(layout)
                written = moved_from(layout)
                if written is not None:
                    if not relocate:
                        raise refusal(layout, written)
                    relocated = written, relocate_catalog(layout, written)
        if not exists and create:  # created now (under the lock): its errors are told here
            create_catalog_database(layout)
    catalog = Catalog(layout, readable_storage=readable_storage)
    catalog.relocated = relocated
    if not lazy:
        catalog.client  # noqa: B018 (the in-process app, built now)
    return catalog


def catalog_adapter(layout: DataDirectory, *, readable_storage: Iterable[str | os.PathLike] = ()):
    """The Tiled catalog adapter over ``layout`` (created on first use,
    :func:`create_catalog_database`), for the embedded catalog and the catalog server:
    ``arrays/`` and the tables writable, ``frames/`` (and ``readable_storage``) readable.

    By default the catalog and tables are ``catalog.db`` and ``tables.sqlite`` of the data
    directory, checked before use (:func:`~ncsynth.storage.integrity.check_databases`). The
    layout's ``database_uri``/``tables_uri`` put them elsewhere (PostgreSQL at a facility),
    unchecked.
    """
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from sqlalchemy.exc import SQLAlchemyError
    from tiled.catalog import from_uri
    from tiled.media_type_registration import default_serialization_registry

    extra = [str(Path(p).expanduser().resolve()) for p in readable_storage]
    create_catalog_database(layout)
    written = moved_from(layout)
    if written is not None:  # `ncsynth catalog serve` of a moved directory
        raise refusal(layout, written)
    try:
        adapter = from_uri(
            layout.catalog_uri,
            writable_storage=[str(layout.arrays), layout.tables_storage_uri],
            readable_storage=[str(layout.frames), *extra],
            specs=CATALOG_SPECS,
        )
    except (OSError, SQLAlchemyError) as err:
        raise _creation_error(layout, err) from None
    # run.documents() asks the server for the BlueskyRun as application/json-seq.
    default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    return adapter


def create_catalog_database(layout: DataDirectory) -> None:
    """Make ``layout``'s catalog database a Tiled catalog if it is not one yet, under the
    directory's lock (:func:`initialise_catalog_database`): the directory's ``catalog.db``
    (checked first if it exists: :func:`~ncsynth.storage.integrity.check_databases`) and
    ``tables.sqlite``, in write-ahead-log mode; or a database server's, initialised if it has
    no tables yet. No Tiled adapter is built (nor bluesky-tiled-plugins imported: ~0.25 s of a
    writer worker's start before it can say "ready"). A database that cannot be made one:
    :class:`~ncsynth.storage.layout.DataDirectoryError` naming it and the cause."""
    from sqlalchemy.exc import SQLAlchemyError
    from tiled.catalog.adapter import DatabaseInitializationError

    local = layout.local
    layout.create()
    with layout.locked():
        new = not layout.catalog_db.exists()
        if local and not new:
            check_databases(layout)
        try:
            if new or not local:
                initialise_catalog_database(layout.catalog_uri)
        except (DatabaseInitializationError, OSError, SQLAlchemyError) as err:
            raise _creation_error(layout, err) from None
        if local:
            use_wal(layout.catalog_db)
            use_wal(layout.tables_db)


def _creation_error(layout: DataDirectory, err: BaseException) -> DataDirectoryError:
    where = layout.catalog_db if layout.database_uri is None else "[catalog] database_uri"  # no password
    lines = str(err).strip().splitlines() or ["no message"]
    return DataDirectoryError(f"{where}: cannot create the catalog ({lines[-1]})")


def initialise_catalog_database(uri: str) -> None:
    """Make the database at ``uri`` a Tiled catalog if it is not one yet (Tiled's tables and
    its alembic stamp), what ``tiled catalog init --if-not-exists`` does, in this process: Tiled's
    ``from_uri(init_if_not_exists=True)`` runs that command in a subprocess, which imports Tiled
    again (~3 s of CPU for every process that opens a PostgreSQL catalog, 5-8 s on a loaded
    2-core machine; a new SQLite file is made in ~0.2 s). A catalog of another schema revision
    is refused (:class:`~tiled.catalog.adapter.DatabaseInitializationError`, naming ``tiled
    catalog upgrade-database``). In a thread of its own: both steps run an event loop
    (``asyncio.run``) and the caller may be inside one (a Jupyter kernel)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.alembic_utils import DatabaseUpgradeNeeded, UninitializedDatabase, check_database
    from tiled.alembic_utils import stamp_head
    from tiled.catalog.adapter import DatabaseInitializationError
    from tiled.catalog.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH
    from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database
    from tiled.utils import ensure_specified_sql_driver

    uri = ensure_specified_sql_driver(uri)

    async def create_tables() -> bool:
        """True if the tables were made now (the database had none)."""
        engine = create_async_engine(uri)
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
            return False
        except UninitializedDatabase:
            await initialize_database(engine)
            return True
        except DatabaseUpgradeNeeded as err:
            raise DatabaseInitializationError(
                f"{err} (tiled catalog upgrade-database upgrades it)") from None
        finally:
            await engine.dispose()

    def create() -> None:
        if asyncio.run(create_tables()):
            stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)

    with ThreadPoolExecutor(1, thread_name_prefix="catalog-init") as pool:
        pool.submit(create).result()
