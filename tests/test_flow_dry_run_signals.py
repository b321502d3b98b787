"""Ctrl-C and a service manager's SIGTERM end a flow dry run the way they end the flask's.

Before: one Ctrl-C during the flow dry run's acquisition paused the RunEngine and left it
paused with a traceback (``RunEngineInterrupted``), the pumps running and the heaters on;
a Ctrl-C during its analysis printed a traceback. Now the plan is aborted (its clean-up
stops the pumps and switches both heaters off, as the devices read back), the run is closed
as "abort" with every point measured, those points are analysed and the summary printed.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ncsynth.storage import open_catalog
from interrupting import journaled_events, live_children, signalled_midway

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
GRID = ["--nucleation", "270", "280", "290", "300", "--growth", "240", "250", "260"]  # 12 points


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGINT, 1)])
def test_ctrl_c_aborts_the_flow_dry_run_leaving_the_reactor_safe(tmp_path, sig, exit_code):
    """SIGTERM and SIGHUP take the same path (``ncsynth.termination.run_to_the_end``, which
    tests/test_dry_run.py drives with all three signals); each would cost a flow dry run here."""
    code, out, err = signalled_midway([sys.executable, "-m", "ncsynth.cli", "flow", "dry-run",
                                       "--json", *GRID, "--data-dir", str(tmp_path)],
                                      tmp_path, sig, after_events=4, env=ENV)
    assert code == exit_code, err[-2000:]
    assert "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["exit_status"] == "abort"
    assert all(state.startswith("confirmed safe") for state in summary["heaters"].values())
    assert len(summary["heaters"]) == 2
    assert set(summary["pumps"].values()) == {"stopped"} and len(summary["pumps"]) == 2
    points = summary["points"]
    assert 1 <= len(points) < 12
    assert all(p["saxs"]["volume_fraction"] > 0 and not p["errors"] for p in points)
    if sig != signal.SIGINT:
        assert summary["terminated_by"] == "SIGTERM"
    with open_catalog(tmp_path) as catalog:
        stop = catalog[summary["uid"]].metadata["stop"]
        assert stop["exit_status"] == "abort"
        assert stop["reason"] == ("interrupted by the user (Ctrl-C)" if sig == signal.SIGINT
                                  else "terminated by SIGTERM")
        assert stop["num_events"]["primary"] == len(points)
    assert not list((tmp_path / "journal" / "active").glob("*.jsonl"))  # nothing to recover


def _children(pid: int) -> list[str]:
    """Command lines of ``pid``'s running child processes."""
    lines = []
    for child in live_children(pid):
        try:
            lines.append(open(f"/proc/{child}/cmdline").read().replace("\0", " "))
        except OSError:
            pass
    return lines


def test_ctrl_c_outside_a_plan_ends_a_command_in_one_line(tmp_path):
    """A Ctrl-C while no plan runs (here during the flow dry run's analysis of the points
    measured, once the aborted run is closed: its bootstrap's pool of processes is up) ends the
    command with one line and 130, not a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "ncsynth.cli", "flow", "dry-run", "--json",
                             *GRID, "--data-dir", str(tmp_path)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        journaled_events(proc, tmp_path, at_least=4)
        os.killpg(proc.pid, signal.SIGINT)  # aborts the plan
        deadline = time.monotonic() + 120
        while sum("multiprocessing.spawn" in line for line in _children(proc.pid)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "no analysis pool seen"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # the pool's workers too, as a terminal's Ctrl-C
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the summary (stdout) says what the command did with the second Ctrl-C if it went on (exit
    # 1, no line: the command had SIGINT ignored, see the last test of this file)
    assert proc.returncode == 130, (err[-2000:], out[-3000:])
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "ncsynth flow dry-run: interrupted (Ctrl-C)"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the pool's workers end with the command
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the command's group outlived it by 30 s")


def test_commands_started_by_a_suite_launched_with_ctrl_c_ignored_still_see_it(tmp_path):
    """A CI script's ``python -m pytest &`` starts the suite with SIGINT ignored (a background
    job of a non-interactive shell), and an ignored signal stays ignored across exec: the
    commands the tests start ignored Ctrl-C outside a plan (exit 1 instead of 130 above, once in
    a two-hog suite, by the order its worker had run other files). tests/conftest.py puts the
    default back; here a pytest started that way (``trap "" INT``) with that conftest starts a
    command, which must find SIGINT at Python's default handler."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import subprocess, sys\n\n"
        "def test_a_command_sees_ctrl_c():\n"
        "    out = subprocess.run([sys.executable, '-c', 'import signal; "
        "print(signal.getsignal(signal.SIGINT))'], capture_output=True, text=True).stdout\n"
        "    assert 'default_int_handler' in out, out\n")
    result = subprocess.run(
        ["sh", "-c", 'trap "" INT; exec "$0" "$@"', sys.executable, "-m", "pytest", "-q",
         "-p", "no:cacheprovider", "-o", "addopts=", "-p", "conftest", str(probe)],
        env={**ENV, "PYTHONPATH": str(Path(__file__).parent)}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
