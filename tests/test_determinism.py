"""A dry run is deterministic for a given seed, also on a loaded machine (issue 15).

Nothing in devices/ or plans/ tells the simulated clock when it works; the jumping world clock
moves only once it sees the whole process quiet (simulators/quiet.py). Two short dry runs with
the same seed, the second beside two CPU-bound processes, must then take their frames at the
same world times, heat and inject at the same times, and give the same fits to 1e-9.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run
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
