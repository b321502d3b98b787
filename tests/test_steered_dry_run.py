"""Steered dry runs (issue 19): the plan decides from the live fits of the real analysis,
on the simulated beamline, and the decisions are in the run.

Short protocols (150 frames at ratio 1.05, ~630 s; reaction time 900 s) keep each dry run to
~45-60 s; the default 575-frame protocol is measured in the issue's note (quench at 2.0 nm:
final 2.044 nm measured, 2.038 nm in the simulated flask). Two dry runs: a target radius ending
the growth with a quench, a second injection at a radius.
"""

import math

import pytest

from ncsynth.config import load_config
from ncsynth.dryrun import dry_run

SHORT = {"n_frames": 150, "ratio": 1.05}
RECIPE = {"reaction_time_s": 900.0}


def steered(tmp_path_factory, name, steering):
    root = tmp_path_factory.mktemp(name)
    config = load_config(hardware="sim", data={"dir": str(root)})
    return dry_run(config, seed=5, progress=False, plan_kwargs=dict(SHORT),
                   recipe_kwargs=dict(RECIPE), steering=steering), root


@pytest.fixture(scope="module")
def quenched(tmp_path_factory):
    return steered(tmp_path_factory, "quench", {"target_radius_nm": 2.0, "quench": True})


@pytest.fixture(scope="module")
def second_at_radius(tmp_path_factory):
    return steered(tmp_path_factory, "second", {"second_injection_at_radius_nm": 1.5})


def test_the_growth_ends_at_the_target_radius_within_0_05_nm(quenched):
    summary, _ = quenched
    assert summary["exit_status"] == "success", summary.get("error")
    report = summary["steering"]
    assert report["acted"] and not report["fell_back"]
    assert abs(report["miss_nm"]) <= 0.05
    assert abs(report["simulated_miss_nm"]) <= 0.05  # the flask itself, at the last frame
    assert summary["heater"].startswith("confirmed safe")


def test_the_decision_used_a_running_estimate_and_acted_within_a_frame(quenched):
    summary, _ = quenched
    (decision,) = [d for d in summary["decisions"] if d["rule"] == "target_radius"]
    assert decision["n_fits"] >= 3  # never one frame
    # acted early by the growth a quench cannot stop (quench_coast_s of the running rate)
    assert decision["predicted_nm"] == pytest.approx(
        decision["radius_nm"] + decision["lead_s"] * decision["rate_nm_per_s"])
    assert decision["lead_s"] > 0 and decision["radius_nm"] < 2.0
    assert decision["predicted_nm"] - 2 * decision["radius_err_nm"] >= 2.0
    assert decision["action"] == "heater off (safe state); quench by piston B (cold solvent)"
    assert 0 <= decision["latency_world_s"] < decision["frame_interval_s"]
    assert 0 <= decision["latency_wall_s"] < decision["frame_interval_s"]
    assert decision["evaluations"] > 10
    assert decision["time_s"] - decision["fit_time_s"] < decision["frame_interval_s"]


def test_the_decisions_are_an_agent_stream_of_the_stored_run(quenched):
    from ncsynth.storage import open_catalog

    summary, root = quenched
    with open_catalog(root) as catalog:
        run = catalog[summary["uid"]]
        agent = run["agent"].read()
        assert list(agent["agent_rule"].values) == [d["rule"] for d in summary["decisions"]]
        assert float(agent["agent_radius_nm"][0]) == pytest.approx(
            summary["decisions"][0]["radius_nm"])
        safety = run["safety"].read()
        assert int(safety["injector_armed"][-1]) == 0  # the injector disarmed at the end
        assert run.metadata["start"]["steering"]["quench"] is True


def test_piston_b_fires_within_one_frame_interval_of_the_crossing(second_at_radius):
    summary, _ = second_at_radius
    assert summary["exit_status"] == "success", summary.get("error")
    report = summary["steering"]
    assert report["acted"]
    (decision,) = [d for d in summary["decisions"] if d["rule"] == "second_injection_at_radius"]
    # decided on the first frame whose fit put the running line past 1.5 nm, at that frame's
    # end, and fired before the next frame was due (the simulated flask's number mean crosses
    # later: the Gaussian fit's mean runs ~0.03 nm above it while the set is skewed, see
    # analysis/superfocusing.py; reported, not asserted): fit 89.04 s, fired 89.08 s, crossing
    # 86.70 s, idle or beside two CPU hogs. Until the simulated IOC's circuits sent without
    # Nagle's delay, a frame's read-out often ended with the world at the next frame's start,
    # and B fired a frame or two late (fit 93.18 s, fired 93.22 s; fired 97.50 s)
    assert 0 <= decision["fit_time_s"] - report["crossing_time_s"] <= report["frame_interval_s"]
    assert 0 <= report["fired_at_s"] - decision["fit_time_s"] < report["frame_interval_s"]
    assert math.isfinite(report["simulated_crossing_time_s"])
    assert decision["action"] == "piston B fired (second injection)"
    # frames went on after B on the second, dense schedule
    assert summary["frames"] > 0 and math.isfinite(decision["latency_wall_s"])
