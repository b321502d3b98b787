"""The everyday commands, as a user sees them at a terminal (issue 16): real ``ncsynth``
processes on a real 20-frame dry run's data directory.

* quiet at the default verbosity: no library warnings or banners on stderr (pyOpenCL,
  Starlette, "Tiled version", heater retries, "No open traces left to close!", tracebacks);
  ``-v`` shows the logs;
* ``ncsynth replay`` and ``ncsynth flow dry-run`` print readable summaries with the run uids
  and figure paths, ``--json`` one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import forked_cli
import pytest

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
ENV.pop("NCSYNTH_VERBOSE", None)
#: What a quiet command must not print on stderr.
NOISE = re.compile(r"warning|Tiled version|pyOpenCl|No open traces|Traceback|attempt \d+ of",
                   re.IGNORECASE)


def ncsynth(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def forked(*args, timeout=600) -> subprocess.CompletedProcess:
    """The command as a process of its own, forked from one that imported the libraries once
    (tests/forked_cli.py): for what a command prints on stdout; what it prints on stderr,
    importing included, is seen through :func:`ncsynth`."""
    return forked_cli.ncsynth(args, env=ENV, timeout=timeout)


def _rows(text: str) -> dict:
    """{label: text} of an aligned summary (the label is everything before the two spaces)."""
    return dict(line.strip().split("  ", 1) for line in text.splitlines() if "  " in line.strip())


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """A 20-frame dry run (its analysis too) at the default verbosity: the process's output."""
    root = tmp_path_factory.mktemp("quiet") / "data"
    result = ncsynth("dry-run", "--frames", 20, "--reaction-time", 60, "--background-frames", 2,
                     "--data-dir", root)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "result": result, "uid": _rows(result.stdout)["run"].split()[0]}


def test_a_dry_run_prints_its_summary_and_no_warnings(dry):
    result = dry["result"]
    assert [line for line in result.stderr.splitlines() if NOISE.search(line)] == []
    assert result.stderr == "", result.stderr[-3000:]
    rows = _rows(result.stdout)
    assert rows["run"].startswith(f"{dry['uid']}  scan 1  success, 20 frames, ")
    # 20 frames of the §S.1.4 schedule end 1.9 s into the 60 s reaction: the summary says so
    from ncsynth.plans.schedule import frame_schedule

    need = next(n for n in range(20, 2000) if frame_schedule(n)[-1] >= 60.0)
    assert rows["frames"] == (f"the last at {frame_schedule(20)[-1]:.4g} s of the 60 s reaction: "
                              f"--frames {need} reaches its end")


def test_verbose_shows_the_logs_that_the_default_keeps_quiet(dry):
    quiet = ncsynth("export", -1, "--data-dir", dry["root"])
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    loud = ncsynth("-v", "export", -1, "--data-dir", dry["root"])
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert "tiled.server.app INFO: Tiled version" in loud.stderr


def test_replay_prints_a_readable_summary_with_the_new_analysis_run_and_its_figure(dry):
    result = forked("replay", dry["uid"][:8], "--processes", 1, "--data-dir", dry["root"])
    assert result.returncode == 0, result.stderr[-3000:]  # quiet: the dry run's test
    rows = _rows(result.stdout)
    assert rows["run"] == f"{dry['uid']}  scan 1"
    # a dry run's replay shows its flask beside the numbers, as the dry run's summary did
    for label in ("radius", "concentration", "yield"):
        flask = _rows(dry["result"].stdout)[label].split("   ", 1)[1]
        assert flask.startswith("(simulated flask at the last frame, ") and rows[label].endswith(flask)
    assert re.fullmatch(r"[0-9a-f-]{36}", rows["analysis run"])
    assert rows["analysis"].startswith("20 frames, ")
    figure = Path(rows["figure"])
    assert figure.parent == dry["root"] / "reports" and figure.name.startswith(
        f"scan0001-{dry['uid'][:8]}") and figure.read_bytes()[:4] == b"\x89PNG"
    machine = forked("replay", dry["uid"][:8], "--processes", 1, "--json",
                      "--data-dir", dry["root"])
    assert machine.returncode == 0, machine.stderr[-3000:]
    again = json.loads(machine.stdout)
    assert again["raw_uid"] == again["uid"] == dry["uid"]
    assert again["analysis_uid"] != rows["analysis run"]  # a new analysis run each time
    assert again["final_radius_nm"] == pytest.approx(float(rows["radius"].split()[0]), rel=1e-3)
    assert again["figures"] != [rows["figure"]]  # never overwritten
    truth = json.loads((dry["root"] / "truth" / f"{dry['uid']}.json").read_text())
    assert again["simulator_truth"] == truth["headline"]


def test_a_damaged_truth_file_is_named_by_validate(dry):
    """validate said "Expecting value: line 1 column 1 (char 0)"; it names the file now."""
    path = dry["root"] / "truth" / f"{dry['uid']}.json"
    kept = path.read_bytes()
    try:
        path.write_text('{"headline": ')
        result = ncsynth("validate", -1, "--data-dir", dry["root"])
    finally:
        path.write_bytes(kept)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"ncsynth validate: {path}: not a readable simulated truth (")
    assert result.stderr.count("\n") == 1


def test_flow_dry_run_prints_a_line_per_point(tmp_path):
    result = ncsynth("flow", "dry-run", "--nucleation", 280, "--growth", 260, 270,
                     "--processes", 1, "--data-dir", tmp_path / "flow")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if NOISE.search(line)] == []
    rows = _rows(result.stdout)
    assert rows["run"].split()[1:3] == ["success,", "2"]
    assert {"280/260 °C", "280/270 °C"} <= set(rows)
    assert "NC" in rows["280/260 °C"] and "SAXS φ" in rows["280/260 °C"]
    assert Path(rows["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert len(result.stdout) < 2000
