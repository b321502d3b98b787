"""Steering in the hutch session (issue 19): ``steered_synthesis`` in the session's namespace
decides from the session's own live analysis (a real RunEngine, the simulated beamline over
its sockets and IOC, the real analysis of each frame), within the configuration's
``[steering]`` limits; without fits in the session it refuses before anything moves."""

from __future__ import annotations

import pytest

pytest.importorskip("zict", reason="RE.md persistence (bluesky PersistentDict) needs zict")

from ncsynth.config import load_config  # noqa: E402
from ncsynth.errors import RefusedToStart  # noqa: E402
from ncsynth.plans import Recipe  # noqa: E402
from ncsynth.session import session_namespace  # noqa: E402

#: A short protocol (as tests/test_steered_dry_run.py): 150 frames at ratio 1.05, ~630 s.
SHORT = {"n_frames": 150, "ratio": 1.05}
TARGET_NM = 1.9


def _config(data_dir):
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(data_dir)
    config["catalog"]["server_url"] = ""
    return config


def _recipe(ns) -> Recipe:
    return Recipe(operator="pytest", sample="session-steered", reaction_time_s=900.0,
                  cd_initial_molar=round(ns["sim"].cd_initial_molar(), 6))


def test_a_session_steers_the_growth_to_a_target_radius_from_its_own_live_fits(tmp_path):
    ns = session_namespace(_config(tmp_path), sim=True, speed=0, live_plots=False)
    try:
        RE, cat, heater = ns["RE"], ns["cat"], ns["heater"]
        assert ns["fit_feed"] is not None
        (uid,) = RE(ns["steered_synthesis"](heater, ns["injector"], ns["detector"], _recipe(ns),
                                            target_radius_nm=TARGET_NM, **SHORT))
        assert ns["analysis"].flush(60)
        fed = ns["fit_feed"].points()  # what the plan decided from: this session's fits
        run = cat[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        agent = run["agent"].read()
        rules = list(agent["agent_rule"].values)
        assert "target_radius" in rules, rules
        k = rules.index("target_radius")
        assert str(agent["agent_action"].values[k]).startswith("heater off")
        assert int(agent["agent_n_fits"].values[k]) >= 3  # a running estimate, never one frame
        # it acted ahead of the growth that goes on after the heater is off, on the newest fit
        # this session's analysis had delivered: every frame's fit reached the plan's feed
        assert float(agent["agent_radius_nm"].values[k]) < TARGET_NM
        newest_s = float(agent["agent_fit_time_s"].values[k])
        assert min(abs(point.time_s - newest_s) for point in fed) < 1e-9
        fits = cat.analysis(uid)["fits"].read()
        assert len(fed) == len(fits["radius_nm"]) == len(run["primary"].read()["saxs_frame_time"])
        assert heater.output.get() == 0.0 or heater.setpoint.get() <= heater.safe_setpoint_c
    finally:
        ns["close"]()


def test_a_session_without_live_fits_refuses_a_steered_synthesis_before_anything_moves(tmp_path):
    ns = session_namespace(_config(tmp_path), sim=True, speed=0, live_plots=False, analysis=False)
    try:
        assert ns["fit_feed"] is None
        setpoint = ns["heater"].setpoint.get()
        with pytest.raises(RefusedToStart, match="live fits of this session"):
            ns["steered_synthesis"](ns["heater"], ns["injector"], ns["detector"], _recipe(ns),
                                    target_radius_nm=TARGET_NM, **SHORT)
        assert ns["heater"].setpoint.get() == setpoint
        assert len(ns["cat"]) == 0
    finally:
        ns["close"]()
