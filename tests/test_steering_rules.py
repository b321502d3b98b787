"""In-run decisions (issue 19), the parts that need no beamline: the running estimate and its
rule, the configured limits and their refusals (plan and command line), the fit feed the plan
waits on, and the decision log the summary is read from. The steered dry runs themselves are in
test_steered_dry_run.py."""

import math
import threading
import time

import numpy as np
import pytest
from event_model import compose_run

from ncsynth.plans.decisions import (FitPoint, RadiusRule, SteeringLimits, check_steering,
                                     running_radius)
from ncsynth.plans.decisions import AGENT
from ncsynth.steering_feed import FITS, DecisionLog, FitFeed
from test_command_line import refuse


def growing(n=40, rate_nm_per_frame=0.01, r0_nm=1.8, err_nm=0.002, seed=1, scatter=1.0):
    """Frames 1 s apart of a radius growing linearly, the fits scattered by ``scatter`` × their
    errors."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    r = r0_nm + rate_nm_per_frame * t + rng.normal(0, scatter * err_nm, n)
    return [FitPoint(ti, ri, err_nm) for ti, ri in zip(t, r)], r0_nm + rate_nm_per_frame * t


def test_the_running_estimate_follows_the_line_within_its_error():
    points, truth = growing()
    estimate = running_radius(points, window=5)
    assert estimate.n_fits == 5 and estimate.time_s == 39
    assert abs(estimate.radius_nm - truth[-1]) < 3 * estimate.radius_err_nm
    assert estimate.rate_nm_per_s == pytest.approx(0.01, rel=0.2)
    assert estimate.crossing_time_s(truth[-1] + 0.05) == pytest.approx(44, abs=1)


def test_scatter_beyond_the_error_bars_widens_the_estimate():
    tight = running_radius(growing(scatter=1.0)[0], window=8)
    loose = running_radius(growing(scatter=10.0)[0], window=8)
    assert loose.radius_err_nm > 3 * tight.radius_err_nm


def test_failed_fits_are_left_out_and_too_few_give_no_estimate():
    points = [FitPoint(0, 1.9, 0.01), FitPoint(1, math.nan, math.nan), FitPoint(2, 1.95, 0.01)]
    assert running_radius(points, window=5) is None
    assert running_radius([*points, FitPoint(3, 1.97, 0.01)], window=5).n_fits == 3


def test_one_frame_scattering_high_does_not_reach_the_target():
    points = [FitPoint(t, 1.90 + 0.001 * t, 0.002) for t in range(10)]
    points.append(FitPoint(10, 2.10, 0.002))  # one frame far above the target
    rule = RadiusRule("target_radius", 2.0, 2.0)
    assert not rule.reached(running_radius(points, window=5))


def test_the_rule_acts_within_one_frame_of_the_crossing():
    points, truth = growing(n=60, rate_nm_per_frame=0.01, r0_nm=1.7)
    rule = RadiusRule("target_radius", 2.0, 2.0)
    acted = next(k for k in range(len(points)) if rule.reached(running_radius(points[:k + 1])))
    crossing = (2.0 - 1.7) / 0.01  # frame 30
    assert crossing <= acted <= crossing + 1 + 1  # one frame, plus z*error (0.004 nm)
    assert truth[acted] - 2.0 < 0.02


def test_a_lead_acts_earlier_by_the_growth_expected_after_the_stop():
    points, _ = growing(n=60, rate_nm_per_frame=0.01, r0_nm=1.7)
    plain, lead = RadiusRule("target_radius", 2.0), RadiusRule("target_radius", 2.0, lead_s=10)
    first = [next(k for k in range(3, len(points)) if rule.reached(running_radius(points[:k + 1])))
             for rule in (plain, lead)]
    assert first[0] - first[1] == pytest.approx(10, abs=1.5)  # 10 s at 0.01 nm/s: 0.1 nm early
    estimate = running_radius(points[:first[1] + 1])
    assert lead.predicted_nm(estimate) == pytest.approx(
        estimate.radius_nm + 10 * estimate.rate_nm_per_s)


def test_the_fast_early_growth_is_not_projected_ahead():
    """Nucleation: ~1 nm, growing ~1 nm/s (the simulated flask's first seconds): 40 s ahead
    the line would be at ~40 nm; the rule projects no more than max_lead_nm and waits."""
    points = [FitPoint(0.1 * k, 1.0 + 0.1 * k, 0.002) for k in range(5)]
    estimate = running_radius(points)
    assert estimate.ahead(40.0)[0] > 40
    rule = RadiusRule("target_radius", 2.0, 2.0, lead_s=40.0, max_lead_nm=0.2)
    assert rule.lead_for(estimate) == 0 and rule.predicted_nm(estimate) == pytest.approx(1.4)
    assert not rule.reached(estimate)


@pytest.mark.parametrize("kwargs, message", [
    ({"target_radius_nm": 9.0}, r"target_radius_nm must be a finite number >= 1 and <= 5 nm, "
                                r"got 9.0 \(the configured \[steering\] limits\)"),
    ({"target_radius_nm": 0.5}, "target_radius_nm must be a finite number >= 1 and <= 5 nm"),
    ({"second_injection_at_radius_nm": 0.2}, "second_injection_at_radius_nm must be"),
    ({}, "steering needs a target_radius_nm or"),
    ({"second_injection_at_radius_nm": 1.5, "quench": True}, "quench ends the growth"),
    ({"target_radius_nm": 2.0, "second_injection_at_radius_nm": 1.5}, "one decision per run"),
    ({"second_injection_at_radius_nm": 1.5, "fixed_second_injection": True},
     "replaces the fixed second injection"),
    ({"target_radius_nm": 2.0, "acquisition": "detector"}, "acquisition must be 'software'"),
])
def test_requests_outside_the_limits_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as refused:
        check_steering(SteeringLimits(), **kwargs)
    assert "\n" not in str(refused.value)


def test_the_limits_come_from_the_configuration_and_are_checked(tmp_path):
    from ncsynth.config import ConfigError, load_config

    good = tmp_path / "good.toml"
    good.write_text("[steering]\nmax_radius_nm = 3.0\nconfidence_sigma = 3.0\n")
    limits = SteeringLimits.from_config(load_config(good))
    assert (limits.max_radius_nm, limits.confidence_sigma, limits.window_frames) == (3.0, 3.0, 5)
    assert SteeringLimits.from_config(load_config()) == SteeringLimits()  # one set of defaults
    with pytest.raises(ValueError, match="target_radius_nm must be a finite number >= 1 and <= 3"):
        check_steering(limits, target_radius_nm=4.0)
    bad = tmp_path / "bad.toml"
    bad.write_text("[steering]\nwindow_frame = 5\n")
    with pytest.raises(ConfigError, match="window_frame"):
        load_config(bad)
    with pytest.raises(ValueError, match="min_radius_nm .* must be below max_radius_nm"):
        SteeringLimits(min_radius_nm=3.0, max_radius_nm=2.0)


@pytest.mark.parametrize("args, message", [
    (["--target-radius", "7"], "--target-radius must be a finite number >= 1 and <= 5 nm"),
    (["--quench"], "quench ends the growth at the target radius: give --target-radius"),
    (["--target-radius", "2", "--no-analysis"], "drop --no-analysis"),
    (["--target-radius", "2", "--second-injection-at-radius", "1.5"], "one decision per run"),
    (["--second-injection-at-radius", "1.5", "--second-injection", "240"],
     "replaces the fixed second injection"),
    (["--target-radius", "2", "--acquisition", "detector"], "acquisition must be 'software'"),
    (["--target-radius", "2", "--piston", "B"], "a steered synthesis fires A first"),
])
def test_the_command_line_refuses_a_bad_steering_request_before_anything_starts(
        tmp_path, args, message):
    data = tmp_path / "data"
    code, stderr, heavy = refuse("dry-run", "--data-dir", str(data), *args)
    assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    assert heavy == [] and not data.exists()


def derived_fits_documents(radii_nm, err_nm=0.001):
    """A derived run's documents as the live analysis emits them: start, the ``fits``
    descriptor, one event per frame (radius, error, time after the firing), stop."""
    bundle = compose_run(metadata={"raw_uid": "raw"})
    fits = bundle.compose_descriptor(name=FITS, data_keys={
        key: {"dtype": "number", "shape": [], "source": "test"}
        for key in ("time_s", "radius_nm", "radius_err_nm")})
    docs = [("start", bundle.start_doc), ("descriptor", fits.descriptor_doc)]
    for k, r in enumerate(radii_nm):
        data = {"time_s": float(k), "radius_nm": r, "radius_err_nm": err_nm}
        docs.append(("event", fits.compose_event(data=data, timestamps={x: 0 for x in data})))
    return docs


def test_the_feed_wakes_a_waiting_plan_when_the_fit_arrives_from_another_thread():
    feed = FitFeed()
    docs = derived_fits_documents([1.5, 1.6, math.nan])
    for name, doc in docs[:3]:
        feed(name, doc)
    assert feed.wait_for(1, 0.01) and not feed.wait_for(2, 0.05)

    def analysis():
        time.sleep(0.1)
        for name, doc in docs[3:]:
            feed(name, doc)

    threading.Thread(target=analysis).start()
    started = time.perf_counter()
    assert feed.wait_for(3, 10.0)
    assert 0.05 < time.perf_counter() - started < 5.0
    points = feed.points()
    assert [p.radius_nm for p in points[:2]] == [1.5, 1.6] and not points[2].usable
    assert all(started < p.arrived_wall_s for p in points[1:])
    feed(*derived_fits_documents([])[0])  # the next synthesis' derived run
    assert len(feed) == 0


def test_a_lost_analysis_ends_the_wait_at_once_and_says_why():
    lost = []
    feed = FitFeed(health=lambda: lost[0] if lost else None)
    threading.Timer(0.05, lambda: lost.append("the analysis process ended (exit 1)")).start()
    started = time.perf_counter()
    assert not feed.wait_for(1, 30.0)
    assert time.perf_counter() - started < 5.0
    assert feed.error == "the analysis process ended (exit 1)"


def test_the_decision_log_reads_the_agent_stream_of_the_raw_run():
    bundle = compose_run(metadata={})
    agent = bundle.compose_descriptor(name=AGENT, data_keys={
        f"{AGENT}_{key}": {"dtype": "number" if key != "rule" else "string", "shape": [],
                           "source": "test"} for key in ("rule", "radius_nm")})
    other = bundle.compose_descriptor(name="primary", data_keys={
        "x": {"dtype": "number", "shape": [], "source": "test"}})
    log = DecisionLog()
    log("start", bundle.start_doc)
    log("descriptor", agent.descriptor_doc)
    log("descriptor", other.descriptor_doc)
    log("event", other.compose_event(data={"x": 1.0}, timestamps={"x": 0}))
    data = {f"{AGENT}_rule": "target_radius", f"{AGENT}_radius_nm": 2.003}
    log("event", agent.compose_event(data=data, timestamps={k: 0 for k in data}))
    assert log.decisions == [{"rule": "target_radius", "radius_nm": 2.003}]


def test_the_feed_reads_the_stream_the_live_analysis_names():
    from ncsynth.analysis.derived_run import FIT_KEYS
    from ncsynth.analysis.derived_run import FITS as LIVE_FITS

    assert FITS == LIVE_FITS and {"time_s", "radius_nm", "radius_err_nm"} <= set(FIT_KEYS)


def test_the_terminal_summary_shows_each_decision_and_the_outcome():
    from ncsynth.steering_setup import steering_summary
    from ncsynth.summary_text import format_summary

    decision = {"rule": "target_radius", "action": "heater off (safe state)",
                "reason": "running radius 2.0031 +- 0.0004 nm (5 frames) reached 2.0 nm at 2 sigma",
                "time_s": 312.4, "fit_time_s": 310.9, "latency_wall_s": 0.0021,
                "latency_world_s": 0.004, "frame_interval_s": 4.3, "evaluations": 120,
                "evaluation_latency_median_s": 0.0004, "evaluation_latency_max_s": 0.002}
    summary = {"uid": "u", "exit_status": "success", "frames": 150, "final_radius_nm": 2.031,
               "simulator_truth": {"at_last_frame": {"time_s": 630.0, "mean_radius_nm": 2.029}}}
    summary.update(steering_summary([decision], {"target_radius_nm": 2.0}, summary))
    assert summary["steering"]["miss_nm"] == pytest.approx(0.031)
    assert summary["steering"]["within_tolerance"]
    text = format_summary(summary)
    assert "312.4 s after A: target_radius -> heater off (safe state)" in text
    assert "fit -> action 2.1 ms wall" in text and "frame interval 4.3 s" in text
    assert "target 2 nm: final 2.031 nm (miss +0.031 nm); simulated flask 2.029 nm" in text
