"""The dry run on PostgreSQL, every piece real: a PostgreSQL server started for the tests
(tests/postgres_server.py), ``ncsynth catalog serve`` and ``ncsynth dry-run`` as processes
configured by one file (``[catalog] database_uri``/``tables_uri``), a reader over HTTP while
the run is written, ``ncsynth replay`` from the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from postgres_server import postgres  # noqa: F401 (the session fixture)
from test_catalog_server import _free_port, _start_server

from ncsynth.catalog_server import open_remote_catalog
from ncsynth.storage import open_catalog

API_KEY = "ncsynthpgtestkey0123456789abcdef"
KEY_ENV = "NCSYNTH_TEST_PG_KEY"
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", KEY_ENV: API_KEY}
ENV.pop("NCSYNTH_DATA_DIR", None)
FRAMES = 30
#: The reaction, s: after the frames (its first 3 s) a heater reading every 10 s, the reader's
#: time to see the run being written before its stop. The default 7200 s (720 readings) cost
#: a 20-frame SQLite dry run 13 s of its 35 s of wall time.
REACTION_S = 1200


def _ncsynth(*args, env=ENV, **kwargs):
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", *args], env=env,
                          capture_output=True, text=True, **kwargs)


def _primary_events(run) -> int:
    """Events of the run's primary stream the catalog holds now (a scalar column: frames
    mid-write can meet one the detector's file has not flushed yet)."""
    try:
        return len(run["primary"]["time"].read())
    except KeyError:  # no primary stream yet
        return 0


def _watch_while_written(proc, data_dir, cat) -> dict:
    """Once the dry run ``proc`` journals its run, read it through the server until its stop
    is there; the largest number of primary events seen before the stop."""
    journals = data_dir / "journal" / "active"
    deadline = time.monotonic() + 600
    uid = None
    while uid is None and proc.poll() is None and time.monotonic() < deadline:
        found = sorted(journals.glob("*.jsonl")) if journals.exists() else []
        uid = found[0].stem if found else None
        time.sleep(0.1)
    seen = {"uid": uid, "events_before_stop": 0, "polls": 0}
    while uid is not None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            run = cat[uid]
        except KeyError:  # not in the catalog yet
            continue
        events = _primary_events(run)
        if not run.metadata.get("stop"):  # asked after the events: they came before the stop
            seen["events_before_stop"] = max(seen["events_before_stop"], events)
        seen["polls"] += 1
    return seen


@pytest.fixture(scope="module")
def pg_dry_run(postgres, tmp_path_factory):  # noqa: F811
    """A ``--frames 30`` dry run configured to write into PostgreSQL, with
    ``ncsynth catalog serve`` (same configuration) serving the database while it runs and
    the test reading the run through it."""
    root = tmp_path_factory.mktemp("pg")
    data_dir = root / "data"
    database, tables = postgres.new_database("catalog"), postgres.new_database("tables")
    port = _free_port()
    config = root / "ncsynth.toml"
    config.write_text(f'[data]\ndir = "{data_dir}"\n[catalog]\napi_key_env = "{KEY_ENV}"\n'
                      f'database_uri = "{database}"\ntables_uri = "{tables}"\n')
    env = {**ENV, "NCSYNTH_CONFIG": str(config), "PORT": str(port)}
    log = open(root / "server.log", "w+")
    server = _start_server(["-m", "ncsynth.cli", "catalog", "serve", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        cat = open_remote_catalog(url, API_KEY)
        dry = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json",
                                "--frames", str(FRAMES), "--reaction-time", str(REACTION_S)],
                               env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        seen = _watch_while_written(dry, data_dir, cat)
        stdout, stderr = dry.communicate(timeout=600)
        assert dry.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout.strip().splitlines()[-1])
        yield {"summary": summary, "seen": seen, "cat": cat, "env": env, "data_dir": data_dir,
               "database": database, "tables": tables, "postgres": postgres}
        cat.close()
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def test_the_dry_run_writes_its_run_into_postgresql(pg_dry_run):
    summary, pg = pg_dry_run["summary"], pg_dry_run["postgres"]
    assert summary["exit_status"] == "success" and summary["frames"] == FRAMES
    uid = summary["uid"]
    # the run and its live analysis are rows of the PostgreSQL catalog, not of a SQLite file
    assert pg.query(pg_dry_run["database"], f"select count(*) from nodes where key = '{uid}'") == "1"
    assert int(pg.query(pg_dry_run["tables"], "select count(*) from pg_tables "
                                              "where tablename like 'table_%'")) >= 2
    assert not (pg_dry_run["data_dir"] / "catalog.db").exists()
    assert not (pg_dry_run["data_dir"] / "tables.sqlite").exists()


def test_the_server_serves_the_run_and_a_reader_saw_it_while_it_was_written(pg_dry_run):
    summary, seen, cat = pg_dry_run["summary"], pg_dry_run["seen"], pg_dry_run["cat"]
    assert seen["uid"] == summary["uid"]
    assert 0 < seen["events_before_stop"] <= FRAMES, seen
    run = cat[-1]
    assert run.metadata["start"]["uid"] == summary["uid"]
    assert run.metadata["stop"]["exit_status"] == "success"
    frames = run["primary"]["saxs_image"].read()
    assert frames.shape == (FRAMES, 480, 480) and frames[-1].sum() > 0
    # the same frames as the embedded catalog opened on the same database reads
    with open_catalog(pg_dry_run["data_dir"], database_uri=pg_dry_run["database"],
                      tables_uri=pg_dry_run["tables"]) as embedded:
        np.testing.assert_array_equal(embedded[summary["uid"]]["primary"]["saxs_image"][-1],
                                      frames[-1])
    fits = cat.analysis(run)["fits"].read()
    assert len(fits["radius_nm"]) > 0


def test_replay_reads_the_run_from_postgresql_and_stores_its_analysis_there(pg_dry_run):
    summary, cat = pg_dry_run["summary"], pg_dry_run["cat"]
    before = len(cat.analyses(summary["uid"]))
    result = _ncsynth("replay", summary["uid"][:8], "--json", "--processes", "1",
                      env=pg_dry_run["env"], timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads(result.stdout.strip().splitlines()[-1])
    assert again["raw_uid"] == summary["uid"]
    for key in ("final_radius_nm", "concentration_molar", "yield_fraction"):
        assert again[key] == summary[key]
    assert len(cat.analyses(summary["uid"])) == before + 1
