"""Several processes writing runs into one data directory at once (issue 12): real processes,
each with a real RunEngine and the embedded catalog on the same files
(:mod:`ncsynth.storage.write_lock`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from ncsynth.storage import open_catalog
from ncsynth.storage.write_lock import WriteLock, WriteLockTimeout

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}

# One writer: opens the catalog, says "ready", waits for the go file, writes RUNS runs of EVENTS
# events (a commit every 50 ms), prints how many runs the catalog refused, and their uids.
WRITER = textwrap.dedent(
    """
    import pathlib, sys, time
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det, motor
    from ncsynth.storage import open_catalog
    root, go, runs, events = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    catalog = open_catalog(root)
    RE = RunEngine({}, context_managers=[])
    writer = catalog.writer(flush_interval_s=0.05)
    RE.subscribe(writer)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    uids = [RE(bp.scan([det], motor, -1, 1, events))[0] for _ in range(runs)]
    writer.close()
    print(len(writer.failed_runs), *uids, flush=True)
    """
)


def test_three_processes_writing_runs_at_once_store_every_run_whole(tmp_path):
    """Three processes write four 30-event runs each into one directory at the same moment.
    (Before the write lock: 2 of the 12 runs failed 'database is locked' on tables.sqlite and
    stayed in journal/active.)"""
    root, go = tmp_path / "data", tmp_path / "go"
    open_catalog(root, lazy=True).close()  # created once, as by an earlier run
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(go), "4", "30"], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        assert [proc.stdout.readline() for proc in procs] == ["ready\n"] * 3
        go.touch()
        results = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    uids = []
    for proc, (out, err) in zip(procs, results):
        failed, *written = out.split()
        assert proc.returncode == 0 and failed == "0", err[-3000:]
        uids += written
    assert not list((root / "journal" / "active").iterdir())
    with open_catalog(root) as catalog:
        assert len(catalog) == 12
        for uid in uids:
            run = catalog[uid]
            assert run.metadata["stop"]["exit_status"] == "success"
            assert len(run.primary.read()["det"]) == 30


HOLDER = textwrap.dedent(
    """
    import sys, time
    from ncsynth.storage.write_lock import WriteLock
    lock = WriteLock(sys.argv[1])
    fd = lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release(fd)
    """
)


def test_a_writer_waits_for_another_process_holding_the_write_lock_then_is_named(tmp_path):
    """While another process holds the directory's write lock a run's writes wait and the run
    is stored whole after it; a wait longer than allowed ends in one line naming the directory
    and the holder's process."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from ophyd.sim import det

    root = tmp_path / "data"
    catalog = open_catalog(root)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "2"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(WriteLockTimeout) as refused:
            WriteLock(root).acquire(timeout_s=0.2)
        RE = RunEngine({}, context_managers=[])
        writer = catalog.writer(flush_interval_s=0.05)
        RE.subscribe(writer)
        started = time.monotonic()
        (uid,) = RE(bp.count([det], 5))
        waited_s = time.monotonic() - started
        writer.close()
        assert holder.wait(30) == 0
    finally:
        holder.kill()
        catalog.close()
    message = str(refused.value)
    assert str(root) in message and f"pid {holder.pid} " in message and "\n" not in message, message
    assert not writer.failed_runs, writer.failed_runs
    assert waited_s > 0.5  # the run's first write waited for the holder (who held it 2 s)
    with open_catalog(root) as reopened:
        assert reopened[uid].metadata["stop"]["num_events"]["primary"] == 5
        assert len(reopened[uid].primary.read()["det"]) == 5
