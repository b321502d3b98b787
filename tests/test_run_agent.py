"""The run-to-run agent (issue 19): bluesky-adaptive's interface, its proposal rule, its
refusals, and the whole loop through a real queue server against the simulated beamline.

The loop test runs a redis-server and a start-re-manager whose worker imports
``ncsynth.session_startup`` (the simulated beamline with the jumping clock), then
``ncsynth agent`` in a process of its own: it queues ``new_batch`` + ``hot_injection`` items
with bluesky-queueserver-api, reads each run's final radius from the derived fits in the
catalog on disk (while the worker writes it), and stores the agent's report run in the same
catalog, which the test reads back.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from bluesky_adaptive.protocols import ID_KEY, Optimizer, SupportsStoppingCriteria

from ncsynth.agent_protocol import SynthesisProtocol, check_campaign
from ncsynth.agent_rule import RadiusAgent, TargetUnreachable
from ncsynth.config import load_config
from ncsynth.run_agent import run_campaign
from test_command_line import refuse

# Final radius (nm, fits at the last frame, 600 s) of the short protocol against the reaction
# time (s), measured on the simulated flask with the loop test's configuration (seed 2026,
# jumping clock, settle 2 s; docs/run_agent.md): the response the rule is checked against
# without a beamline. Flat up to ~110 s (the flask cools for minutes after the heater goes off).
MEASURED = ((20.0, 1.868), (60.0, 1.873), (107.7, 1.873), (171.4, 1.997), (249.9, 2.103),
            (580.0, 2.231))


def measured_radius(reaction_time_s: float) -> float:
    logs = [math.log(t) for t, _ in MEASURED]
    return float(np.interp(math.log(reaction_time_s), logs, [r for _, r in MEASURED]))


def drive(agent: RadiusAgent, response, max_runs: int = 8) -> list[tuple[float, float]]:
    """Ask/tell ``agent`` against ``response`` until it stops; the (time, radius) of each run."""
    runs = []
    for _ in range(max_runs):
        (proposal,) = agent.suggest(1)
        radius = response(proposal["reaction_time_s"])
        runs.append((proposal["reaction_time_s"], radius))
        agent.ingest([{**proposal, "final_radius_nm": radius, "radius_err_nm": 0.001,
                       "dispersion": 0.04, "raw_uid": f"run-{proposal[ID_KEY]}"}])
        if agent.should_stop()[0]:
            break
    return runs


def test_the_agent_speaks_bluesky_adaptive_and_brackets_the_target():
    agent = RadiusAgent(2.0, (20.0, 580.0))
    assert isinstance(agent, Optimizer) and isinstance(agent, SupportsStoppingCriteria)
    assert agent.get_best_points() == [] and agent.should_stop() == (False, None)
    runs = drive(agent, measured_radius)
    assert abs(runs[-1][1] - 2.0) <= 0.05 and len(runs) <= 4, runs
    assert abs(runs[0][1] - 2.0) > 0.05  # the first proposal (geometric middle) misses
    assert all(20.0 <= t <= 580.0 for t, _ in runs)
    (best_id, params, outcomes), = agent.get_best_points()
    assert params["reaction_time_s"] == runs[-1][0] and outcomes["raw_uid"] == f"run-{best_id}"
    report = agent.report()
    assert report["iteration"] == len(runs) and report["bracket_low_s"] < report["bracket_high_s"]
    with pytest.raises(ValueError, match="num_points must be 1"):
        agent.suggest(2)


@pytest.mark.parametrize("target, bound", [(2.3, 580.0), (1.8, 20.0)])
def test_a_target_the_bounds_cannot_reach_is_said_in_one_line(target, bound):
    agent = RadiusAgent(target, (20.0, 580.0))
    with pytest.raises(TargetUnreachable, match=f"reaction_time_s = {bound:g} s") as err:
        drive(agent, measured_radius)
    assert "\n" not in str(err.value)
    assert agent.runs[-1].reaction_time_s == bound and len(agent.runs) <= 4


@pytest.mark.parametrize("change, match", [
    (dict(target=6.0), "target_radius_nm must be a finite number >= 1 and <= 5 nm"),
    (dict(target=0.5), "target_radius_nm"),
    (dict(max_runs=0), "max_runs"),
    (dict(tolerance=0.0), "tolerance_nm must be a finite number > 0 nm"),
    (dict(growth_temperature_c=400.0), "growth_temperature_c"),
    (dict(max_reaction_time_s=700.0), "must end before the last frame"),
    (dict(min_reaction_time_s=0.0), "min_reaction_time_s"),
])
def test_bad_campaigns_are_refused_before_anything_is_queued(change, match):
    change = dict(change)
    target, max_runs = change.pop("target", 2.0), change.pop("max_runs", 8)
    tolerance = change.pop("tolerance", 0.05)
    with pytest.raises(ValueError, match=match) as err:
        check_campaign(target, SynthesisProtocol(**change), load_config(hardware="sim"), max_runs,
                       tolerance)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--target-radius", "6"], "--target-radius must be a finite number >= 1 and <= 5 nm, got 6.0"),
    (["--target-radius", "0.5"], "--target-radius must be a finite number >= 1"),
    (["--target-radius", "2", "--max-runs", "0"], "--max-runs must be an integer >= 1 and <= 100"),
    (["--target-radius", "2", "--tolerance", "-0.01"], "--tolerance must be a finite number > 0"),
])
def test_ncsynth_agent_refuses_a_bad_campaign_in_one_line_before_any_heavy_import(
        tmp_path, args, message):
    """``ncsynth agent`` in a fresh process (test_command_line's probe): exit 2, one line
    naming the option, neither bluesky nor the queue server's client imported, no data
    directory made, the queue address (nothing listens there) never asked."""
    data = tmp_path / "data"
    code, stderr, heavy = refuse("agent", "--data-dir", str(data), "--queue",
                                 "tcp://127.0.0.1:9", *args)
    assert code == 2 and heavy == [], (stderr, heavy)
    assert stderr.startswith(f"ncsynth agent: {message}") and stderr.count("\n") == 1, stderr
    assert not data.exists()


# -- through the queue server ---------------------------------------------------------------

AGENT_CONFIG = """\
hardware = "sim"
[catalog]
server_url = ""
[session]
speed = 0
[heater]
settle_time_s = 2.0
"""


@pytest.fixture
def agent_queue_server(tmp_path):
    queueserver = pytest.importorskip("test_queueserver")  # skips without redis-server
    server = queueserver.QueueServer(tmp_path, config=AGENT_CONFIG)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def ncsynth_agent(server, *args) -> subprocess.CompletedProcess:
    """``ncsynth agent`` in a process of its own against ``server``: its configuration file and
    data directory (one catalog with the worker's), its 0MQ control address."""
    manager = server.manager.args
    queue = manager[manager.index("--zmq-control-addr") + 1]
    env = {**os.environ, "NCSYNTH_CONFIG": str(server.tmp_path / "hutch.toml"),
           "NCSYNTH_DATA_DIR": str(server.data_dir), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ncsynth.cli", "agent", "--queue", queue, *args],
                          env=env, capture_output=True, text=True, timeout=360)


def stored_report(cat, last_line: str, n_runs: int) -> tuple:
    """The report run ``ncsynth agent``'s last output line names: its uid, start document and
    ``report`` table, checked to have ended reached, one row per synthesis."""
    report_uid = last_line.rsplit(" ", 1)[1]
    report_run = cat[report_uid]
    stop = report_run.metadata["stop"]
    assert stop["exit_status"] == "success" and "reached" in stop["reason"]
    table = report_run["report"].read()
    assert list(table["iteration"].values) == list(range(1, n_runs + 1))
    return report_uid, report_run.metadata["start"], table


@pytest.mark.timeout(420)
def test_the_run_to_run_loop_reaches_the_target_through_the_queue_server(agent_queue_server):
    """The campaign as ``ncsynth agent`` runs it, in a process of its own; what it stored read
    back from the catalog on disk."""
    from ncsynth.storage import open_catalog

    server, target, config = agent_queue_server, 2.0, load_config(hardware="sim")
    RM = server.RM
    refused = ncsynth_agent(server, "--target-radius", str(target))
    assert refused.returncode == 1 and refused.stdout == "", refused
    assert refused.stderr.splitlines() == ["ncsynth agent: RuntimeError: the queue server's "
                                           "environment is not open (RM.environment_open())"]
    RM.environment_open()
    RM.wait_for_idle(timeout=60)
    assert RM.status()["worker_environment_exists"], server.log_tail()
    assert "new_batch" in RM.plans_allowed()["plans_allowed"]
    with pytest.raises(ValueError, match="target_radius_nm must be"):
        run_campaign(RM, None, 6.0, config)
    assert RM.history_get()["items"] == []  # nothing queued

    done = ncsynth_agent(server, "--target-radius", str(target), "--max-runs", "8")
    print(done.stdout, done.stderr)
    assert done.returncode == 0, (done.stdout, done.stderr, server.log_tail())
    assert done.stderr == ""  # quiet: no library banner or warning at the default verbosity
    *lines, last = done.stdout.splitlines()
    assert len(lines) <= 8 and all(line.startswith(f"run {i + 1}: ") for i, line in
                                   enumerate(lines)), lines
    assert last.startswith(f"target {target} nm reached within 0.05 nm") and \
        " report run " in last, last
    with open_catalog(server.data_dir) as cat:
        # the report run: what the agent knew after each run, linked to the raw runs both ways
        report_uid, start, table = stored_report(cat, last, len(lines))
        assert start["plan_name"] == "agent_report" and start["target_radius_nm"] == target
        radii, times = table["final_radius_nm"].values, table["reaction_time_s"].values
        assert abs(radii[-1] - target) <= 0.05
        assert abs(radii[0] - target) > 0.05, lines  # not met by the first proposal
        assert [f"{r:.3f} nm" in line for r, line in zip(radii, lines)] == [True] * len(lines)
        raw_uids = [str(u) for u in table["raw_uid"].values]
        for i, uid in enumerate(raw_uids):
            raw = cat[uid].metadata
            assert raw["start"]["plan_name"] == "hot_injection"
            assert raw["start"]["agent_campaign"] == report_uid
            assert raw["start"]["recipe"]["reaction_time_s"] == pytest.approx(times[i])
            assert raw["stop"]["exit_status"] == "success"
        # the last run's final radius is its derived fits' last frame
        fits = cat.analysis(raw_uids[-1])["fits"].read()
        assert fits["radius_nm"].values[-1] == pytest.approx(radii[-1])
    RM.environment_close()
    RM.wait_for_idle(timeout=30)
    server.wait_worker_exit()
