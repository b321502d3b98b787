"""A steered dry run whose live analysis dies (issue 19): the plan says so, in its log and in
its ``agent`` stream, and goes on with the fixed protocol; the run succeeds and ends safe.

The analysis worker process is killed (SIGKILL) from the test while the dry run goes on: a
real crash, seen by the dry run as the analysis process ending.
"""

import threading
import time

import psutil

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run


def kill_the_analysis_worker(stop: threading.Event, killed: list) -> None:
    """SIGKILL this process's ``ncsynth.analysis_worker`` child one second after it appears."""
    while not stop.is_set():
        for child in psutil.Process().children(recursive=True):
            try:
                if "ncsynth.analysis_worker" in " ".join(child.cmdline()):
                    time.sleep(1.0)
                    child.kill()
                    killed.append(child.pid)
                    return
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)


def test_a_dead_analysis_falls_back_to_the_fixed_protocol(tmp_path, caplog):
    config = load_config(hardware="sim", data={"dir": str(tmp_path)},
                         steering={"analysis_stall_s": 5.0})
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_the_analysis_worker, args=(stop, killed), daemon=True)
    killer.start()
    try:
        summary = dry_run(config, seed=3, progress=False, processes=("analysis",),
                          plan_kwargs={"n_frames": 60, "ratio": 1.05},
                          recipe_kwargs={"reaction_time_s": 60.0},
                          steering={"target_radius_nm": 2.0})
    finally:
        stop.set()
    assert killed, "the analysis worker was never seen"
    assert summary["exit_status"] == "success", summary.get("error")
    assert summary["heater"].startswith("confirmed safe")
    rules = [d["rule"] for d in summary["decisions"]]
    assert rules == ["fallback"]
    assert "the live analysis stopped delivering" in summary["decisions"][0]["reason"]
    assert summary["steering"]["fell_back"] and not summary["steering"]["acted"]
    assert any("going on with the fixed protocol" in r.getMessage() for r in caplog.records)
