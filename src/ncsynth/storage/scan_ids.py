"""Scan ids that increase across runs and processes writing to one data directory.

bluesky's default scan id is ``RE.md["scan_id"] + 1``: a RunEngine with fresh metadata (a
dry run, a second session on another ``RE.md``, a notebook) starts again at 1, and a data
directory soon holds five runs with scan id 1. :class:`ScanIds` is a
``RunEngine(scan_id_source=...)`` that takes the next number from a counter file in the data
directory (``last_scan_id``), under the directory's lock, so two processes never get the same
id; the first use seeds it from the highest scan id the catalog holds. A user's larger
``RE.md["scan_id"]`` (e.g. carried on from another system) still wins: the next id is one more
than the largest of the three.

The embedded catalog's highest id is read from its database with one SQL query
(:func:`highest_in_database`, SQLite file or PostgreSQL), not through a Tiled app: a process
that writes through the catalog worker (the dry run) then builds none (issue 18: Tiled's
import and app cost ~4 s of CPU). A catalog server's is asked of the server
(:func:`highest_scan_id`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

COUNTER_FILENAME = "last_scan_id"


def highest_scan_id(runs) -> int:
    """The highest ``start.scan_id`` among ``runs`` (a Tiled node of runs), 0 if none."""
    from tiled.queries import Key

    numbered = runs.search(Key("start.scan_id") >= 0).sort(("start.scan_id", -1))
    if not len(numbered):
        return 0
    return int(numbered.values().first().metadata["start"]["scan_id"])


def highest_in_database(layout) -> int:
    """The highest ``start.scan_id`` of the raw runs (those whose start names no ``raw_uid``)
    in the Tiled catalog database of the data directory ``layout`` (its ``catalog.db``, or its
    ``database_uri``), 0 if it holds none or does not exist yet. One query through SQLAlchemy
    on Tiled's ``nodes`` table (runs are the children of the root node, id 0), run in a
    thread of its own: the async drivers Tiled uses (aiosqlite, asyncpg) need an event loop,
    and the caller may be in one (the RunEngine's)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import JSON, Integer, column, func, inspect, select, table
    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.utils import ensure_specified_sql_driver

    if layout.database_uri is None and not layout.catalog_db.exists():
        return 0  # not created yet (the dry run's catalog worker creates it)
    nodes = table("nodes", column("parent", Integer), column("metadata", JSON))
    start = nodes.c.metadata["start"]
    query = (select(func.max(start["scan_id"].as_integer()))
             .where(nodes.c.parent == 0, start["raw_uid"].as_string().is_(None)))

    async def highest() -> int:
        engine = create_async_engine(ensure_specified_sql_driver(layout.catalog_uri))
        try:
            async with engine.connect() as connection:
                if not await connection.run_sync(lambda sync: inspect(sync).has_table("nodes")):
                    return 0  # a database server whose catalog is not initialised yet
                return int((await connection.execute(query)).scalar() or 0)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1, thread_name_prefix="scan-ids") as pool:
        return pool.submit(asyncio.run, highest()).result()


class ScanIds:
    """``scan_id_source`` of a RunEngine writing to the data directory ``layout``;
    ``highest()`` gives the highest scan id the catalog holds (see the module docstring).
    Without a ``layout`` (a catalog server and no local directory) the catalog's highest id
    is the counter."""

    def __init__(self, layout, highest: Callable[[], int]):
        self.layout = layout
        self.highest = highest

    @property
    def path(self):
        return None if self.layout is None else self.layout.root / COUNTER_FILENAME

    def __call__(self, md) -> int:
        requested = md.get("scan_id") or 0
        if self.layout is None:
            return max(self.highest(), requested) + 1
        with self.layout.locked():
            last = self._read()
            if last is None:
                last = self.highest()
            scan_id = max(last, requested) + 1
            self._write(scan_id)
        return scan_id

    def _read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except FileNotFoundError:
            return None
        except ValueError:  # a damaged counter: the catalog knows the ids it holds
            return self.highest()

    def _write(self, scan_id: int) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(f"{scan_id}\n")
        os.replace(partial, self.path)
