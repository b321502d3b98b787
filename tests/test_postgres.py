"""The catalog in PostgreSQL, every piece real: a PostgreSQL server started for the tests
(tests/postgres_server.py) and ``ncsynth catalog migrate`` moving an embedded SQLite catalog of
several runs (frames in HDF5 files, arrays in zarr) into it; a bad or unreachable database
refused in one line. The dry run, the server and replay on PostgreSQL:
tests/test_postgres_dry_run.py."""

from __future__ import annotations

import os

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd.sim import det
from ophyd.sim import direct_img
import forked_cli
from postgres_server import postgres  # noqa: F401 (the session fixture)
from test_storage import FrameCamera, expected_frame

from ncsynth.storage import open_catalog

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
ENV.pop("NCSYNTH_DATA_DIR", None)
ENV.pop("NCSYNTH_CONFIG", None)


def _ncsynth(*args, timeout):
    """The command as a process of its own, forked from one that imported the libraries once
    (tests/forked_cli.py)."""
    return forked_cli.ncsynth(args, env=ENV, timeout=timeout)


@pytest.fixture
def sqlite_catalog_with_runs(tmp_path):
    """A data directory whose embedded catalog holds three runs: two with frames in HDF5
    files (frames/), one with a 10x10 image per event (internal array: zarr in arrays/)."""
    data_dir = tmp_path / "data"
    with open_catalog(data_dir) as catalog:
        RE = RunEngine({})
        RE.subscribe(catalog.writer())
        for i, num in enumerate((5, 7)):
            camera = FrameCamera("cam", catalog.layout.frames / f"run{i}.h5")
            RE(bp.count([det, camera], num), sample=f"sample-{i}")
        RE(bp.count([det, direct_img], 3), sample="images")
    return data_dir


def _all_documents(catalog) -> dict:
    return {uid: [(name, doc.to_dict()) for name, doc in run.documents()]
            for uid, run in catalog.client.items()}


def test_catalog_migrate_moves_every_run_document_and_frame_into_postgresql(
        postgres, sqlite_catalog_with_runs, tmp_path):  # noqa: F811
    from ncsynth.storage.layout import DataDirectory
    from ncsynth.storage.scan_ids import highest_in_database

    data_dir, target = sqlite_catalog_with_runs, postgres.new_database("moved")
    result = _ncsynth("catalog", "migrate", "--data-dir", str(data_dir), "--to", target,
                      timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["copied"] * 3
    assert "frames=5" in lines[0] and "frames=7" in lines[1]
    assert f'database_uri = "{target}"' in result.stdout
    with open_catalog(data_dir) as source, \
            open_catalog(data_dir, database_uri=target, tables_uri=target) as moved:
        assert len(moved) == len(source) == 3
        assert list(moved) == list(source)
        assert _all_documents(moved) == _all_documents(source)
        for i, num in enumerate((5, 7)):
            frames = moved[i - 3]["primary"]["cam_image"].read()
            np.testing.assert_array_equal(frames, [expected_frame(n) for n in range(num)])
            assert moved[i - 3].metadata["start"]["sample"] == f"sample-{i}"
        np.testing.assert_array_equal(moved[-1]["primary"]["img"].read(),
                                      source[-1]["primary"]["img"].read())
        # the highest scan id (a directory without its counter) by SQL, in either database
        assert highest_in_database(moved.layout) == highest_in_database(source.layout) == 3
    empty = DataDirectory.at(tmp_path / "empty", database_uri=postgres.new_database("empty"))
    assert highest_in_database(empty) == 0  # no Tiled tables in it yet
    # the source is untouched, and moving again finds every run already there
    again = _ncsynth("catalog", "migrate", "--data-dir", str(data_dir), "--to", target, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [line.split()[1] for line in again.stdout.splitlines()[:3]] == ["already-there"] * 3


def test_catalog_migrate_refuses_without_a_target_or_with_a_run_being_written(
        sqlite_catalog_with_runs, postgres):  # noqa: F811
    data_dir = sqlite_catalog_with_runs
    result = _ncsynth("catalog", "migrate", "--data-dir", str(data_dir), timeout=120)
    assert result.returncode == 2 and "no target" in result.stderr
    assert "Traceback" not in result.stderr
    bad = _ncsynth("catalog", "migrate", "--data-dir", str(data_dir), "--to", "mysql://db/x",
                   timeout=120)
    assert bad.returncode == 2 and "postgresql://" in bad.stderr and "Traceback" not in bad.stderr
    (data_dir / "journal" / "active" / "0123abcd.jsonl").write_text("")  # a run in progress
    busy = _ncsynth("catalog", "migrate", "--data-dir", str(data_dir), "--to",
                    postgres.new_database("busy"), timeout=120)
    assert busy.returncode == 1 and "ncsynth recover" in busy.stderr, busy.stderr
    assert "Traceback" not in busy.stderr


def test_a_bad_or_unreachable_database_is_refused_in_one_line(tmp_path):
    from ncsynth.storage.layout import DataDirectory

    with pytest.raises(ValueError, match="database_uri must be a sqlite:/// or postgresql://") as bad:
        DataDirectory.at(tmp_path, database_uri="mysql://user:secret@db/x")
    assert "secret" not in str(bad.value)  # a URI may hold a password: never repeated
    config = tmp_path / "ncsynth.toml"
    nowhere = "postgresql://ncsynth:secret@127.0.0.1:1/ncsynth_catalog"  # nothing listens on port 1
    config.write_text(f'[data]\ndir = "{tmp_path / "data"}"\n[catalog]\n'
                      f'database_uri = "{nowhere}"\ntables_uri = "{nowhere}"\n')
    result = _ncsynth("export", "-1", "--config", str(config), timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "[catalog] database_uri: cannot create the catalog" in result.stderr
    assert "Connect call failed" in result.stderr and "secret" not in result.stderr


def test_a_postgresql_catalog_is_initialised_once_in_the_opening_process(postgres, tmp_path):  # noqa: F811
    """Opening a catalog in a PostgreSQL database makes its tables on first use and starts no
    process (Tiled's `tiled catalog init` subprocess cost every command ~3 s of CPU); a catalog
    stamped with another schema revision is refused naming the upgrade command."""
    from tiled.catalog.core import REQUIRED_REVISION

    from ncsynth.storage.layout import DataDirectoryError

    def children_cpu_s():  # of the processes this one started and waited for
        times = os.times()
        return times.children_user + times.children_system

    uri = postgres.new_database("fresh")
    assert postgres.query(uri, "select count(*) from pg_tables where schemaname = 'public'") == "0"
    before = children_cpu_s()
    with open_catalog(tmp_path / "a", database_uri=uri, tables_uri=uri) as catalog:
        RE = RunEngine({})
        RE.subscribe(catalog.writer())
        (uid,) = RE(bp.count([det], 3))
    assert postgres.query(uri, "select version_num from alembic_version") == REQUIRED_REVISION
    with open_catalog(tmp_path / "b", database_uri=uri, tables_uri=uri) as again:
        assert len(again[uid].primary.read()["det"]) == 3
    assert children_cpu_s() - before < 0.2  # no `tiled catalog init` (~3 s of CPU) ran

    postgres.query(uri, "update alembic_version set version_num = 'a66028395cab'")
    with pytest.raises(DataDirectoryError, match=r"needs to be upgraded.*upgrade-database") as old:
        open_catalog(tmp_path / "c", database_uri=uri, tables_uri=uri)
    assert "\n" not in str(old.value)
