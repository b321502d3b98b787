"""Damaged data (issue 12): damaged copies of a real dry run's data directory, handled by real
`ncsynth` processes. Each command must end with a non-zero exit and one line naming the file and
the cause (no traceback, no hang: every subprocess runs under a timeout), and lose nothing that
was stored before.

The catalog refers to the frame files and tables by absolute path, so each test restores the
data directory from a pristine copy of the dry run and damages it in place.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager

import numpy as np
import pytest

from ncsynth.storage import open_catalog
from ncsynth.storage.journal import read_journal
import forked_cli
from small_tmpfs import mounted_tmpfs

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
TIMEOUT_S = 240  # a hang shows as subprocess.TimeoutExpired


def ncsynth(*args, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    """The command as a process of its own, forked from one that imported the libraries once
    (tests/forked_cli.py: 32 commands here, ~5.5 s of imports each)."""
    return forked_cli.ncsynth(args, env=ENV, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    """The command's error line; checks the exit code and that nothing else was told."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"ncsynth {command}:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def latest_analysis(root, raw_uid) -> str:
    from ncsynth.runs import derived_run

    with open_catalog(root) as catalog:
        return derived_run(catalog, raw_uid).metadata["start"]["uid"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A real 20-frame dry run (with its live analysis), kept as a pristine copy."""
    base = tmp_path_factory.mktemp("damaged")
    root = base / "data"
    result = subprocess.run([sys.executable, "-m", "ncsynth.cli", "dry-run", "--json", "--no-progress",
                             "--frames", "20", "--reaction-time", "60", "--background-frames", "2",
                             "--data-dir", str(root)], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    uid = json.loads(result.stdout.strip().splitlines()[-1])["uid"]
    info = {"root": root, "uid": uid, "analysis": latest_analysis(root, uid),
            "journal": root / "journal" / "complete" / f"{uid}.jsonl",
            "frames": max(root.glob("frames/**/*.h5"), key=lambda p: p.stat().st_size)}
    shutil.copytree(root, base / "pristine", symlinks=True)
    info["copy"] = base / "pristine"
    return info


@pytest.fixture
def data(pristine):
    """The dry run's data directory, restored from the pristine copy."""
    if pristine["root"].is_dir():
        shutil.rmtree(pristine["root"])
    else:
        pristine["root"].unlink(missing_ok=True)
    shutil.copytree(pristine["copy"], pristine["root"], symlinks=True)
    return pristine


def _as_killed(data, lines: list[bytes]) -> None:
    """Put ``lines`` in journal/active as the journal of the raw run, whose stop the catalog
    never got (the state a killed acquisition leaves)."""
    with open_catalog(data["root"]) as catalog:
        catalog.client.delete_contents(data["uid"], recursive=True, external_only=False)
    data["journal"].unlink()
    (data["root"] / "journal" / "active" / data["journal"].name).write_bytes(b"".join(lines))


# -- journals ---------------------------------------------------------------------------------
def test_recover_keeps_every_readable_document_around_a_garbage_line_and_files_it_away(data):
    lines = data["journal"].read_bytes().splitlines(keepends=True)[:-1]  # no stop: killed
    damaged = lines[:30] + [b"garbage{\n"] + lines[30:]
    _as_killed(data, damaged)
    result = ncsynth("recover", "--data-dir", data["root"])
    line = one_line_error(result, "recover")
    active = data["root"] / "journal" / "active" / data["journal"].name
    assert f"{active}:31:" in line and "not JSON" in line
    assert f"{data['uid']}  aborted" in result.stdout
    # every readable document is in the catalog, the file as found is kept, nothing blocks
    with open_catalog(data["root"]) as catalog:
        stop = catalog[data["uid"]].metadata["stop"]
        assert stop["num_events"]["primary"] == 20 and stop["exit_status"] == "abort"
        assert "1 unreadable journal line" in stop["reason"]
        assert catalog[data["uid"]]["primary"]["saxs_image"].shape == (20, 480, 480)
    assert (data["root"] / "journal" / "damaged" / data["journal"].name).read_bytes() == b"".join(damaged)
    assert read_journal(data["journal"])[-1] == ("stop", stop)
    again = ncsynth("recover", "--data-dir", data["root"])
    assert again.returncode == 0 and "nothing to recover" in again.stdout, again.stderr[-2000:]


def test_recover_after_a_torn_last_line_writes_a_journal_whose_stop_can_be_read(data):
    lines = data["journal"].read_bytes().splitlines(keepends=True)
    torn = lines[:-2] + [lines[-2][:40]]  # killed while writing the last event
    _as_killed(data, torn)
    result = ncsynth("recover", "--data-dir", data["root"])
    assert result.returncode == 0, result.stderr[-2000:]  # a kill's trace, not damage
    assert "Traceback" not in result.stderr
    assert f"{data['journal'].name}:{len(torn)}: last line cut short" in result.stderr
    text = data["journal"].read_bytes()
    records = [json.loads(line) for line in text.splitlines()]  # every line a whole record
    assert text.endswith(b"\n") and records[-1]["name"] == "stop"
    with open_catalog(data["root"]) as catalog:
        assert catalog[data["uid"]].metadata["stop"] == records[-1]["doc"]


# -- frame files ------------------------------------------------------------------------------
def test_replay_of_a_truncated_frame_file_fails_fast_naming_it(data):
    os.truncate(data["frames"], 50_000)  # the frames' chunk index is gone too
    started = time.monotonic()
    result = ncsynth("replay", data["uid"], "--data-dir", data["root"], timeout=150)
    line = one_line_error(result, "replay")
    assert str(data["frames"]) in line and "truncated file" in line
    assert time.monotonic() - started < 150
    assert latest_analysis(data["root"], data["uid"]) == data["analysis"]


def test_replay_of_a_deleted_frame_file_fails_and_the_latest_analysis_stays(data):
    data["frames"].unlink()
    line = one_line_error(ncsynth("replay", data["uid"], "--data-dir", data["root"]), "replay")
    assert str(data["frames"]) in line and "missing" in line and "no analysis stored" in line
    assert latest_analysis(data["root"], data["uid"]) == data["analysis"]
    exported = ncsynth("export", data["uid"], "--data-dir", data["root"])
    assert exported.returncode == 0, exported.stderr[-2000:]


# -- catalog files ----------------------------------------------------------------------------
def _empty(path):
    path.write_bytes(b"")


def _scribble(path):
    with open(path, "r+b") as file:  # the header and the first pages: not a database any more
        file.write(os.urandom(8192))


DAMAGES = {
    "empty catalog.db": ("catalog.db", _empty, "not a run catalog"),
    "corrupt catalog.db": ("catalog.db", _scribble, "not a readable SQLite database"),
    "empty tables.sqlite": ("tables.sqlite", _empty, "event tables the catalog refers to are missing"),
    "corrupt tables.sqlite": ("tables.sqlite", _scribble, "not a readable SQLite database"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_catalog_file_is_named_by_every_command(data, damage):
    name, spoil, cause = DAMAGES[damage]
    path = data["root"] / name
    for suffix in ("-wal", "-shm"):
        (data["root"] / f"{name}{suffix}").unlink(missing_ok=True)
    spoil(path)
    commands = [("recover",), ("replay", data["uid"]), ("export", data["uid"])]
    if damage == "empty catalog.db":
        commands.append(("report", data["uid"]))
    for command, *ref in commands:
        line = one_line_error(ncsynth(command, *ref, "--data-dir", data["root"]), command)
        assert str(path) in line and cause in line, line


def test_a_data_directory_that_is_a_file_is_named(data):
    shutil.rmtree(data["root"])
    data["root"].write_text("not a directory\n")
    for command, *ref in [("recover",), ("replay", "-1")]:
        line = one_line_error(ncsynth(command, *ref, "--data-dir", data["root"]), command)
        assert str(data["root"]) in line and "is a file" in line, line


@contextmanager
def writer_committing(path):
    """Another process's writer in the middle of a commit to the SQLite file ``path`` (an
    exclusive transaction, held while the test runs a command)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")


def test_replay_fails_when_the_catalog_refuses_the_analysis(data):
    with writer_committing(data["root"] / "tables.sqlite"):  # the analysis cannot be written
        result = ncsynth("replay", data["uid"], "--data-dir", data["root"])
    line = one_line_error(result, "replay")
    assert str(data["root"]) in line and "refused the analysis run" in line
    assert latest_analysis(data["root"], data["uid"]) == data["analysis"]


# -- several processes ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["catalog.db", "tables.sqlite"])
def test_a_reader_is_not_locked_out_while_a_writer_commits(data, name):
    with writer_committing(data["root"] / name):
        result = ncsynth("export", data["uid"], "--data-dir", data["root"], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_first_runs_on_a_new_data_directory_do_not_race_at_catalog_creation(tmp_path):
    root, go = tmp_path / "new", tmp_path / "go"
    code = ("import pathlib, sys, time\n"
            "from ncsynth.storage import open_catalog\n"
            "import bluesky_tiled_plugins.exporters, tiled.catalog, tiled.client, tiled.server.app\n"
            "print('ready', flush=True)\n"
            f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
            f"with open_catalog({str(root)!r}) as catalog: print(len(catalog))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    # all three have imported what opening a catalog needs and wait for the go
    assert [proc.stdout.readline() for proc in procs] == ["ready\n"] * 3
    go.touch()
    results = [proc.communicate(timeout=TIMEOUT_S) for proc in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and out.strip() == "0", err[-3000:]


# -- a read-only data directory ---------------------------------------------------------------
@pytest.fixture
def read_only_data(data, tmp_path):
    """The dry run's data directory copied onto a real tmpfs (another path: the catalog's
    absolute paths name where it was written), then remounted read-only; a root process cannot
    write there either (where the machine lets the tests mount one)."""
    with mounted_tmpfs(tmp_path / "read-only", "100m") as mount_point:
        root = mount_point / "data"
        shutil.copytree(data["copy"], root, symlinks=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        yield root


def test_a_read_only_data_directory_refuses_every_writer_before_anything_runs(read_only_data):
    for command, *args in [("recover",), ("replay", "-1"), ("dry-run", "--frames", 5, "--reaction-time", 60),
                           ("export", "-1")]:
        result = ncsynth(command, *args, "--data-dir", read_only_data, timeout=120)
        line = one_line_error(result, command)
        assert f"{read_only_data}: the data directory is read-only" in line, line
        if command == "export":  # its default output is in the data directory
            assert "give --output" in line, line
        assert result.stdout.strip() == ""  # no summary: the dry run never started the beamline
    # a new data directory on the read-only medium: one line, not a traceback of mkdir
    new = read_only_data.parent / "new-data"
    for command in (("dry-run",), ("flow", "dry-run")):
        result = ncsynth(*command, "--data-dir", new, timeout=120)
        line = one_line_error(result, " ".join(command))
        assert line.endswith(f"{new}: cannot create the data directory: Read-only file system"), line
        assert result.stdout.strip() == "" and not new.exists()


def test_a_read_only_data_directory_is_read_whole_with_output_elsewhere(data, read_only_data, tmp_path):
    """export, report and validate read a copy of the directory on read-only media (frames,
    tables, the analysis) as they read the original; their output goes where --output says."""
    exported = [ncsynth("export", data["uid"], "--data-dir", where, "-o", tmp_path / f"{name}.csv")
                for name, where in [("original", data["root"]), ("read-only", read_only_data)]]
    for result in exported:
        assert result.returncode == 0, result.stderr[-3000:]
    original, copy = ((tmp_path / f"{name}.csv").read_text() for name in ("original", "read-only"))
    assert copy == original and len(copy.splitlines()) > 10
    figure = ncsynth("report", data["uid"], "--data-dir", read_only_data, "-o", tmp_path / "r.png")
    assert figure.returncode == 0 and (tmp_path / "r.png").stat().st_size > 0, figure.stderr[-3000:]
    validated = ncsynth("validate", data["uid"], "--data-dir", read_only_data)
    assert validated.returncode == 0 and "radius" in validated.stdout, validated.stderr[-3000:]
    # a 20-frame run has too few frames for the 98 % times: validate says so, and why
    assert "  98% times not determined by the analysis: 8 usable frames, need 22" in \
        validated.stdout, validated.stdout
    assert validated.stdout.splitlines()[2].split()[3:5] == ["not", "determined"], validated.stdout


# -- a data directory moved or copied away from where its runs were written -------------------
def _fits(root, analysis_uid):
    with open_catalog(root) as catalog:
        fits = catalog[analysis_uid]["fits"].read()
        return {key: fits[key].values for key in ("radius_nm", "concentration_molar", "success")}


def test_a_data_directory_copied_elsewhere_is_refused_until_recover_points_it_home(data, tmp_path):
    """The beamtime's directory copied home (cp -a), the original gone: its catalog and journals
    still name the original's files. Every reader refuses in one line naming both directories and
    the command that mends it (before: with the original there, export ended in Tiled's
    "ClientError: 400: No such field sqlite://..."; without it validate printed "no frames" for a
    run of 20 and replay stored an analysis of no fitted frame, its mask file not found); `recover` points the catalog at the
    copy; replay then reads the copy's frames and mask and gives the live analysis's numbers."""
    moved = tmp_path / "home" / "beamtime"
    shutil.copytree(data["root"], moved, symlinks=True)
    for command in ("replay", "validate", "export"):  # replay with the original still there
        if command == "validate":
            shutil.rmtree(data["root"])
        line = one_line_error(ncsynth(command, data["uid"], "--data-dir", moved), command)
        assert f"refers to the runs' files in {data['root']}, where they were written" in line, line
        assert line.endswith(f"`ncsynth recover --data-dir {moved}` points it at this directory")
    refused = ncsynth("dry-run", "--frames", 5, "--reaction-time", 60, "--data-dir", moved)
    assert "where they were written" in one_line_error(refused, "dry-run")
    assert refused.stdout.strip() == ""  # refused before the beamline started
    recovered = ncsynth("recover", "--data-dir", moved)
    assert recovered.returncode == 0, recovered.stderr[-2000:]
    assert recovered.stdout.startswith("relocated: the catalog referred to ") and \
        f" files in {data['root']}, where its runs were written; it now refers to them in {moved}" \
        in recovered.stdout, recovered.stdout
    assert ncsynth("recover", "--data-dir", moved).stdout.strip() == "nothing to recover"
    validated = ncsynth("validate", data["uid"], "--data-dir", moved)
    assert validated.returncode == 0 and "1-5 s: 8 " in validated.stdout, validated.stdout
    replayed = ncsynth("replay", data["uid"], "--data-dir", moved)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert "20 frames, 12 without a fit, 0 errors" in replayed.stdout, replayed.stdout
    new = latest_analysis(moved, data["uid"])
    assert new != data["analysis"]
    live, again = _fits(moved, data["analysis"]), _fits(moved, new)
    assert list(again["success"]) == list(live["success"]) and sum(live["success"]) == 8
    np.testing.assert_array_equal(again["radius_nm"], live["radius_nm"])
    np.testing.assert_array_equal(again["concentration_molar"], live["concentration_molar"])


def test_replay_without_the_runs_mask_file_stores_nothing_and_names_it(data, tmp_path):
    """The mask the run was reduced with is gone (a hutch calibration left behind): replay
    refuses in one line naming it, and the latest analysis stays (before: an analysis of no
    fitted frame was stored and became the latest)."""
    mask = data["root"] / "calibration" / "simulated" / "saxs_mask.edf"
    mask.unlink()
    line = one_line_error(ncsynth("replay", data["uid"], "--data-dir", data["root"]), "replay")
    assert f"mask file {mask}: cannot read it (FileNotFoundError" in line and \
        line.endswith("no analysis stored"), line
    assert latest_analysis(data["root"], data["uid"]) == data["analysis"]
