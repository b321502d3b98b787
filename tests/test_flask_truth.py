"""The simulated truth of a dry run (ncsynth.flask_truth) and the validation report's pulls."""

import math

import numpy as np
import pytest

from ncsynth.analysis.growth import expected_small_radius
from ncsynth.analysis.nucleation_period import time_to_fraction_of_final
from ncsynth.flask_truth import (FlaskRecorder, FlaskTrace, effective_growth_exponent,
                                 frame_mid_times_s, headline_truth, record_truth, split_largest)
from ncsynth.simulators.beamline_models import FlaskReaction
from ncsynth.simulators.kinetics import ReactionState
from ncsynth.simulators.world import SyringeCharge, World
from ncsynth.truth_report import frame_pulls


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def now(self):
        return self.t


class _Flask:
    """A flask at a fixed temperature that only counts its volume."""

    temperature_c = 260.0

    def __init__(self):
        self.volume_ml = 11.5

    def step(self, dt_s, world):
        pass

    def add_liquid(self, mass_g, temperature_c, volume_ml):
        self.volume_ml += volume_ml


def test_the_recorder_follows_the_reaction_and_splits_the_sets_after_the_second_delivery():
    clock = _Clock()
    world = World(clock)
    world.add("flask", _Flask())
    world.add("reaction", FlaskReaction(ReactionState()))
    recorder = world.add("truth_recorder", FlaskRecorder())
    world.deliver(SyringeCharge())
    for t_s, deliver in ((240.0, True), (420.0, False)):
        clock.t = 1000.0 + t_s
        world.advance()
        if deliver:
            world.deliver(SyringeCharge())
    trace = recorder.trace(1000.0, 1240.0)
    # the same flask stepped on its own: 4.5 mL of 0.1 mol/L into 11.5 mL, then into 16 mL
    state = ReactionState()
    state.add_precursor(0.1 * 4.5 / 16.0)
    state.step(240.0, 260.0)
    before_molar = state.concentration_molar
    state.add_precursor(0.1 * 4.5 / 20.5, dilution=16.0 / 20.5)
    state.step(180.0, 260.0)
    assert trace.time_s[-1] == pytest.approx(420.0)
    assert trace.second_injection_s == pytest.approx(240.0)
    assert trace.concentration_molar[-1] == pytest.approx(state.concentration_molar, rel=1e-3)
    assert trace.yield_fraction[-1] == pytest.approx(state.yield_fraction, rel=1e-3)
    before = trace.time_s <= 240.0  # the last record: right before the delivery
    assert np.all(np.isnan(trace.large_radius_nm[before]))
    # after piston B: the old set (its number diluted) and the new one make up the whole
    large_share = trace.concentration_molar[before][-1] * 16.0 / 20.5
    assert large_share == pytest.approx(before_molar * 16.0 / 20.5, rel=1e-3)
    assert trace.small_concentration_molar[-1] == pytest.approx(
        trace.concentration_molar[-1] - large_share, rel=1e-6)
    assert trace.small_radius_nm[-1] < trace.large_radius_nm[-1]
    truth = headline_truth(trace.until(420.0))
    assert truth["t_yield_s"] == time_to_fraction_of_final(trace.time_s, trace.yield_fraction)


def test_split_largest_shares_the_boundary_cell():
    r1, s1, r2, s2, small = split_largest(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), 3.0)
    assert r1 == pytest.approx((2 * 3.0 + 1 * 2.0) / 3) and small == pytest.approx(3.0)
    assert r2 == pytest.approx((2 * 1.0 + 1 * 2.0) / 3)
    assert math.isnan(split_largest(np.array([1.0]), np.array([1.0]), 1.0)[2])


def test_effective_exponent_of_radii_on_an_exact_power_law_is_its_n():
    r1 = np.linspace(1.8, 2.2, 40)
    r2 = expected_small_radius(r1, 1.8, 1.0, 3.0)
    nan = np.full(r1.size, math.nan)
    trace = FlaskTrace(np.arange(r1.size, dtype=float), nan, nan, nan, nan, r1, nan, r2, nan, nan)
    assert effective_growth_exponent(trace, np.arange(5.0, 30.5)) == pytest.approx(3.0, abs=1e-4)
    # weighted as a measurement's pairs are (errors of both radii, strongly correlated)
    assert effective_growth_exponent(trace, np.arange(5.0, 30.5), 0.01, 0.02, 0.99) \
        == pytest.approx(3.0, abs=1e-4)
    assert math.isnan(effective_growth_exponent(trace, [5.0, 6.0]))
    assert math.isnan(effective_growth_exponent(trace, [50.0, 60.0, 70.0]))  # after the record


def test_frame_pulls_tell_a_drifting_bias_from_the_noise():
    rng = np.random.default_rng(2)
    t = np.geomspace(1.0, 1000.0, 600)
    truth = np.log(t)
    errors = np.full(t.size, 0.01)
    bias = np.where(t > 60.0, 0.05 * np.log(t / 60.0), 0.0)  # a model bias growing slowly
    measured = truth + bias + errors * rng.normal(size=t.size)
    rows = frame_pulls(t, measured, errors, t, truth)
    for (low, high), count, mean, std, noise in rows:
        assert count > 50
        assert 0.85 < noise < 1.15
    assert abs(rows[0][2]) < 0.3 and rows[2][2] > 5 and rows[2][3] > 2


def test_the_truth_of_a_run_cut_short_is_the_flask_at_its_last_frame(tmp_path):
    """``--frames 40`` ends 4 s after injection: the summary's flask is the flask then, not at
    the end of the protocol (a 50x 'analysis error' otherwise)."""
    t = np.linspace(0.0, 100.0, 201)
    radius = 0.5 + 0.02 * t  # nm, growing: the end differs from any early frame
    nan = np.full(t.size, math.nan)
    trace = FlaskTrace(t, radius, 0.1 * radius, 1e-5 * t, 0.01 * t, nan, nan, nan, nan, nan)
    start = {"frame_offsets_s": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "exposure_s": 1.0}
    truth = record_truth(trace, start, 4, None, tmp_path / "truth.json")
    last = frame_mid_times_s(start, 4)[-1]
    assert last < 5.0
    assert truth["at_last_frame"]["time_s"] == pytest.approx(last)
    assert truth["at_last_frame"]["mean_radius_nm"] == pytest.approx(0.5 + 0.02 * last)
    assert truth["at_last_frame"]["yield_fraction"] == pytest.approx(0.01 * last)


def test_frame_pulls_add_the_systematic_to_the_pulls_but_not_to_the_noise():
    rng = np.random.default_rng(4)
    t = np.geomspace(1.0, 1000.0, 600)
    errors = np.full(t.size, 0.01)
    bias = np.where(t > 60.0, 0.05 * np.log(t / 60.0), 0.0)
    measured = np.log(t) + bias + errors * rng.normal(size=t.size)
    rows = frame_pulls(t, measured, errors, t, np.log(t), systematic=bias)
    assert 0.3 < rows[2][2] < 1.2 and rows[2][3] < 0.5  # the bias within its systematic error
    assert all(0.85 < noise < 1.15 for *_, noise in rows)  # noise: statistical errors only


def test_validate_says_in_one_line_why_a_double_injection_has_no_exponent():
    """`ncsynth validate` after a double injection: a missing n comes with the analysis's reason
    (e.g. the sets never told apart), not only 'nan'; a measured n has no such line."""
    from ncsynth.truth_report import format_validation

    row = ("growth exponent n", float("nan"), float("nan"), float("nan"))
    reason = ("a second set formed (...) but was never told apart from the first (...): the data "
              "cannot constrain n")
    text = format_validation({"uid": "u", "headline": [row], "frame_pulls": {},
                              "growth_exponent_reason": reason})
    assert f"  n not measured: {reason}" in text.splitlines()
    measured = format_validation({"uid": "u", "headline": [("growth exponent n", 1.76, 0.01, 1.78)],
                                  "frame_pulls": {}, "growth_exponent_reason": ""})
    assert "not measured" not in measured and "-2.00" in measured
    assert "98% times not determined" not in measured


def test_validate_writes_what_the_analysis_did_not_give_in_words_not_nan():
    """A run too short for the 98 % times: the measured column says "not determined", the pull
    "-", the reason line claims no "last values" it does not show, and a window without frames
    reads "no frames" (before: "nan ± nan", "0 +nan nan nan"); a noise std needs more than
    NEIGHBOURS frames and reads "-" below that."""
    from ncsynth.truth_report import NEIGHBOURS, format_validation

    nan = float("nan")
    t = np.linspace(1.0, 4.0, 5)
    pulls = frame_pulls(t, t + 0.1, np.full(5, 0.1), t, t)
    assert pulls[1][1] == 0 and not math.isfinite(pulls[0][4])   # 5 <= NEIGHBOURS frames
    report = {"uid": "u", "headline": [("98% concentration, s", nan, nan, 1.806)],
              "frame_pulls": {"radius": pulls}, "growth_exponent_reason": "",
              "kinetics_reason": "9 usable frames, need 22 for the 98 % times"}
    lines = format_validation(report).splitlines()
    assert lines[2].split() == ["98%", "concentration,", "s", "not", "determined", "1.806", "-"]
    assert lines[3] == "  98% times not determined by the analysis: 9 usable frames, need 22 for the 98 % times"
    assert lines[-1] == "  radius         1-5 s: 5 +1.00 0.00 -; 5-60 s: no frames; 60-inf s: no frames"
    assert f"needs more than {NEIGHBOURS} frames" in lines[-2] and "nan" not in "\n".join(lines)
    shown = format_validation({**report, "headline": [("98% concentration, s", 280.0, 5.0, 289.0)]})
    assert "(98% of the last values shown)" in shown and "-1.80" in shown
