"""A new data directory's catalog is created in the opening process (not by the ``tiled
catalog init`` subprocess Tiled's ``from_uri`` would start), at the schema revision Tiled
requires, and takes a run."""

import asyncio
import subprocess

from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det
from sqlalchemy.ext.asyncio import create_async_engine
from tiled.alembic_utils import check_database
from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION
from tiled.utils import ensure_specified_sql_driver

from ncsynth.storage import open_catalog


def test_a_new_catalog_is_made_in_this_process_at_tileds_revision(tmp_path, monkeypatch):
    started = []
    real_run = subprocess.run

    def recording_run(args, *rest, **kwargs):  # still runs the command
        started.append(list(map(str, args)))
        return real_run(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    with open_catalog(tmp_path / "data") as catalog:
        writer = catalog.writer()
        RE = RunEngine({})
        RE.subscribe(writer)
        (uid,) = RE(count([det], num=2))
        writer.close()
        assert len(catalog[uid]["primary"].read()["det"]) == 2
        uri = ensure_specified_sql_driver(catalog.layout.catalog_uri)
    assert not [args for args in started if "init" in args], started

    async def check() -> None:  # raises if the tables or the alembic stamp are missing
        engine = create_async_engine(uri)
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
        finally:
            await engine.dispose()

    asyncio.run(check())
