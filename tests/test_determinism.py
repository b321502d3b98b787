"""A dry run is deterministic for a given seed, also on a loaded machine (issue 15).

Nothing in devices/ or plans/ tells the simulated clock when it works; the jumping world clock
moves only once it sees the whole process quiet (simulators/quiet.py). Two short dry runs with
the same seed, the second beside two CPU-bound processes, must then take their frames at the
same world times, heat and inject at the same times, and give the same fits to 1e-9.
"""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
import pytest

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run
from ncsynth.simulators import quiet
from ncsynth.simulators.clock import WorldClock
from ncsynth.storage import open_catalog

#: Frame starts, s after the injection, and the fit columns compared (all numeric ones).
SCHEDULE_S = np.geomspace(2.0, 60.0, 10).round(3).tolist()
FIT_COLUMNS = ("time_s", "radius_nm", "radius_err_nm", "sigma_nm", "concentration_molar",
               "yield_fraction", "chi2_reduced", "skewed_radius_nm", "temperature_c")


def _run(root) -> dict:
    """A short dry run (writer and analysis in this process); its summary, the frames' start
    times (world time, s after the first) and heater readings, and the fit table."""
    config = load_config(None)
    config["data"]["dir"] = str(root)
    summary = dry_run(config, seed=11, progress=False, recipe_kwargs={"reaction_time_s": 60},
                      plan_kwargs={"schedule_s": SCHEDULE_S, "n_background": 2,
                                   "monitor_period_s": 10}, processes=())
    assert summary["exit_status"] == "success", summary
    with open_catalog(root) as catalog:
        primary = catalog[summary["uid"]]["primary"]
        fits = catalog.analysis(summary["uid"])["fits"].read()
        frame_times = np.asarray(primary["saxs_frame_time"].read(), dtype=float)
        return {"summary": summary, "frame_times": frame_times - frame_times[0],
                "heater_temperature": np.asarray(primary["heater_temperature"].read(), dtype=float),
                "fits": {key: np.asarray(fits[key], dtype=float) for key in FIT_COLUMNS}}


def test_the_same_seed_gives_the_same_run_and_fits_beside_two_cpu_hogs(tmp_path):
    quiet = _run(tmp_path / "quiet")
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        loaded = _run(tmp_path / "loaded")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert quiet["summary"]["frames"] == loaded["summary"]["frames"]
    assert quiet["summary"]["frames_analysed"] == loaded["summary"]["frames_analysed"] == len(SCHEDULE_S)
    assert "frames_skipped" not in quiet["summary"] and "frames_skipped" not in loaded["summary"]
    np.testing.assert_array_equal(quiet["frame_times"], loaded["frame_times"])
    np.testing.assert_array_equal(quiet["heater_temperature"], loaded["heater_temperature"])
    for key, values in quiet["fits"].items():
        assert np.isfinite(values).any(), key
        np.testing.assert_allclose(loaded["fits"][key], values, rtol=1e-9, atol=0, equal_nan=True,
                                   err_msg=key)
    for key in ("final_radius_nm", "concentration_molar", "yield_fraction"):
        assert loaded["summary"][key] == pytest.approx(quiet["summary"][key], rel=1e-9, abs=0), key


def test_a_thread_joining_the_waiters_does_not_hide_what_others_did_meanwhile(monkeypatch):
    """The clock's CPU measure leaves out the threads waiting on it; one that starts waiting
    for a deadline reserved earlier (a detector's schedule, :meth:`WorldClock.deadlines`) takes
    its whole past CPU time off the measure. Unless its joining counts as activity, the idle
    window it joins in looks quiet however busy the rest of the process was. Made visible where
    the CPU measure is the clock's only test (no ``/proc``: the thread scan is skipped): while a
    thread works without pause, every jump must be one forced by ``patience_s``."""
    monkeypatch.setattr(quiet, "_HAS_PROC", False)
    clock = WorldClock(speed=None, idle_s=0.1, patience_s=0.6)
    start = clock.now()
    stop, has_past, go = threading.Event(), threading.Event(), threading.Event()

    def spin():
        while not stop.is_set():
            pass

    def scheduled():  # has worked a while (a past to hide behind), then waits its turn
        until = time.thread_time() + 0.3
        while time.thread_time() < until:
            pass
        has_past.set()
        go.wait()
        wait()

    sequence = threading.Thread(target=scheduled)
    sequence.start()
    assert has_past.wait(30)
    wait = clock.reserve(start + 1.0)
    worker = threading.Thread(target=spin)
    worker.start()
    try:
        time.sleep(0.3)  # the clock refuses to jump while the worker runs...
        go.set()  # ...and the scheduled thread joins the waiters meanwhile
        assert clock.sleep_until(start + 2.0) is True
    finally:
        stop.set()
        go.set()
        worker.join(5)
        sequence.join(5)
        clock.close()
    assert clock.jumps_made == 2
    assert clock.forced == 2  # neither jump judged quiet while the worker ran
