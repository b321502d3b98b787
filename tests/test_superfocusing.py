"""Superfocusing (seed 000 §S.4.3–S.5): the growth exponent from the frames after a second
injection, against the effective exponent the simulated flask's own radii imply.

Fast tests: the project's pure population-balance model (ReactionState) gives the flask after
both injections, the scattering model (S2.1) its patterns with detector-like noise; the truth
splits the distribution into the set present before piston B (its largest crystals: growth
keeps the order of the radii) and the new one. One short end-to-end dry run checks the same
against ``simulator_truth`` and the yield after the second injection.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from ncsynth.analysis.growth import fit_growth_exponent
from ncsynth.analysis.scattering import distribution_intensity, sphere_intensity
from ncsynth.analysis.bimodal import fit_bimodal
from ncsynth.analysis.pair_exponent import growth_exponent
from ncsynth.analysis.superfocusing import NEW_SET_NUMBER_RATIO, analyze_second_injection
from ncsynth.config import load_config
from ncsynth.dryrun import dry_run
from ncsynth.flask_truth import split_largest
from ncsynth.runs import derived_run
from ncsynth.simulators.kinetics import KineticParameters, ReactionState
from ncsynth.simulators.kinetics_parameters import AVOGADRO_PER_MOL, FLASK_GRID, SIMULATED_FLASK
from ncsynth.storage import open_catalog

DELAY_S = 240.0                        # piston B after 4 min (§S.5.1)
TEMPERATURE_C = 260.0
FIRST_MOLAR = 0.027                    # [P]i of Table S6.1
DILUTION = 16.0 / 20.5                 # piston B's 4.5 mL into the 16 mL after piston A
Q_NM = np.linspace(0.1, 5.0, 151)
#: variance per (cm⁻¹ + flat background) per nm of q of a reduced dry-run frame (75 ms)
NOISE_CM_NM = 6.6e-7
FLAT_BACKGROUND_CM = 0.09


def _double_injection(n, second_molar, seed=1, parameters=KineticParameters(), after_b_s=(1.0, 1200.0),
                      frames=60, delay_s=DELAY_S, before_b_s=(), grid=None):
    """Frames (s after A: at ``before_b_s`` before piston B, then ``frames`` after it), their
    patterns, and the two sets' true mean radii (NaN before B)."""
    state = ReactionState(replace(parameters, growth_exponent=n), grid)
    state.add_precursor(FIRST_MOLAR)
    rng = np.random.default_rng(seed)
    times = np.concatenate([delay_s - np.asarray(before_b_s, dtype=float),
                            delay_s + np.geomspace(*after_b_s, frames)])
    patterns, errors, radii, old_set_molar = [], [], [], None
    for t in times:
        if old_set_molar is None and t > delay_s:
            state.step(delay_s - state.time_s, TEMPERATURE_C)
            old_set_molar = state.concentration_molar * DILUTION
            state.add_precursor(second_molar, dilution=DILUTION)
        state.step(t - state.time_s, TEMPERATURE_C)
        numbers = state.number_density_per_m3 / AVOGADRO_PER_MOL / 1000.0
        intensity = distribution_intensity(Q_NM, state.radius_nm, numbers)
        sigma = np.sqrt(NOISE_CM_NM * (intensity + FLAT_BACKGROUND_CM) / Q_NM)
        patterns.append(intensity + sigma * rng.normal(size=Q_NM.size))
        errors.append(sigma)
        r1, _, r2, _, _ = (split_largest(state.radius_nm, numbers, old_set_molar)
                           if old_set_molar is not None else (math.nan,) * 5)
        radii.append((r1, r2))
    return times, np.array(patterns), np.array(errors), np.array(radii)


@pytest.mark.parametrize("n, second_molar", [(4.0, 0.022), (2.0, 0.05)])
def test_the_exponent_is_the_flasks_effective_one_over_the_window_where_both_sets_grow(n, second_molar):
    times, patterns, errors, radii = _double_injection(n, second_molar)
    analysis = analyze_second_injection(times, Q_NM, patterns, errors, DELAY_S)
    fit = analysis.exponent
    assert analysis.second_population and fit.success, fit.reason
    start, end = analysis.window_s
    assert DELAY_S < analysis.onset_s <= start < end <= times[-1]
    assert fit.n_points >= 8 and fit.n_points == analysis.used.sum()
    inside = (times >= start) & (times <= end)
    effective = fit_growth_exponent(radii[inside, 0], radii[inside, 1]).n
    # S6.16's offset B and the Kelvin term keep the effective exponent below the model's n
    assert effective < n
    assert abs(fit.n - effective) < 2 * fit.n_err, (fit, effective)
    summary = analysis.summary()
    assert summary["growth_exponent_window_s"] == [start, end]
    assert summary["growth_exponent_pairs"] == fit.n_points


def test_the_size_models_bracket_the_flasks_exponent_where_two_gaussians_miss_it():
    """The simulated beamline's flask (n = 4), 150–600 s after piston B: the new set still has a
    tail of small crystals, two Gaussians put its mean on the bulk and their n misses the
    flask's effective exponent by several of its own errors; n from the middle of the three
    size models, with half their range as a systematic, holds it within 2σ (steps 4–5)."""
    times, patterns, errors, radii = _double_injection(4.0, 0.022, parameters=SIMULATED_FLASK,
                                                       after_b_s=(150.0, 600.0), frames=10)
    fits, guess = [], tuple(zip(radii[0], (0.05, 0.15)))  # the first frame started near the truth
    for pattern, error in zip(patterns, errors):
        fits.append(fit_bimodal(Q_NM, pattern, error, guess=guess))
        guess = fits[-1]
    assert all(f.success for f in fits)
    e1, e2, rho = (np.array([getattr(f, k) for f in fits]) for k in
                   ("radius1_err_nm", "radius2_err_nm", "radius_correlation"))
    effective = fit_growth_exponent(radii[:, 0], radii[:, 1], e1, e2, radius_correlation=rho).n
    gaussians = fit_growth_exponent([f.radius1_nm for f in fits], [f.radius2_nm for f in fits],
                                    e1, e2, radius_correlation=rho)
    assert abs(gaussians.n - effective) > 2 * gaussians.n_err, (gaussians, effective)  # biased
    fit = growth_exponent(np.broadcast_to(Q_NM, patterns.shape), patterns, errors, fits)
    assert fit.success and fit.model_spread > 0
    assert abs(fit.n - effective) < 2 * fit.n_err, (fit, effective)


def test_no_second_population_is_reported_as_such():
    """Diffusion control (n = 1) with the standard second syringe nucleates no visible new set;
    the one skewed population it leaves must not be taken for two, and the number of crystals
    (frames before piston B beside those after) does not rise."""
    times, patterns, errors, _ = _double_injection(1.0, 0.022, before_b_s=(3.0, 2.0, 1.0))
    analysis = analyze_second_injection(times, Q_NM, patterns, errors, DELAY_S, dilution=DILUTION)
    assert not analysis.second_population and not analysis.exponent.success
    assert analysis.exponent.reason.startswith("no second population after piston B")
    assert not analysis.used.any() and math.isnan(analysis.summary()["growth_exponent"])
    assert analysis.summary()["crystal_number_ratio_max"] < NEW_SET_NUMBER_RATIO  # only diluted


@pytest.mark.parametrize("n", [4.0, 2.0])
def test_a_new_set_formed_while_the_first_still_nucleates_gives_n_from_the_count_split(n):
    """Piston B 20 s after A (the simulated flask at 260 °C): the first set is still nucleating,
    the new one forms within seconds and overlaps it in size (it ends with 2-3 times the
    crystals), so two populations are not told apart; the number of crystals says a second set
    formed from the first seconds after B, and the N₁ largest crystals of each frame's fitted
    distribution (N₁ counted before B) give n within 2σ of the flask's effective exponent at
    the same frames (the flask's sets split the same way)."""
    delay_s = 20.0
    times, patterns, errors, radii = _double_injection(
        n, 0.022, parameters=SIMULATED_FLASK, grid=FLASK_GRID, delay_s=delay_s,
        before_b_s=(4.0, 3.0, 2.0, 1.0, 0.5), frames=30)
    analysis = analyze_second_injection(times, Q_NM, patterns, errors, delay_s, dilution=DILUTION)
    assert np.nanmin(radii[:, 0] - radii[:, 1]) > 0.05          # the truth holds two sets
    summary = analysis.summary()
    assert analysis.second_population and analysis.exponent.success, analysis.exponent.reason
    assert 0 < summary["second_population_onset_after_b_s"] < 30.0
    assert summary["crystal_number_ratio_max"] > NEW_SET_NUMBER_RATIO
    assert analysis.split_by_count and summary["growth_exponent_pairs_from"] == "count split"
    used = analysis.used
    assert used.sum() >= 5 and summary["growth_exponent_pairs"] == used.sum()
    start, end = analysis.window_s
    assert analysis.onset_s <= start < end and np.all(analysis.time_s[used] >= start)
    true = radii[times > delay_s][used]
    effective = fit_growth_exponent(true[:, 0], true[:, 1]).n
    fit = analysis.exponent
    assert abs(fit.n - effective) < 2 * fit.n_err, (fit, effective)


def _two_sets(before, after, dilution=1.0, seed=4):
    """Frames 3, 2, 1 s before piston B and 12 after it (5-600 s) of two Gaussian sets growing
    apart from 3.0 and 2.4 nm (widths 0.08, 0.15 nm); ``before``, ``after``: the two sets'
    number concentrations (mol/L), the latter times ``dilution``. Returns the analysis."""
    rng = np.random.default_rng(seed)
    times = DELAY_S + np.concatenate([[-3.0, -2.0, -1.0], np.geomspace(5.0, 600.0, 12)])
    r1 = 3.0 + 0.4 * np.clip(times - DELAY_S, 0.0, None) / 600.0
    r2 = 2.4 + 0.8 * np.clip(times - DELAY_S, 0.0, None) / 600.0
    patterns, errors = [], []
    for t, radius1, radius2 in zip(times, r1, r2):
        c1, c2 = before if t <= DELAY_S else np.multiply(after, dilution)
        intensity = sphere_intensity(Q_NM, radius1, 0.08, c1) + sphere_intensity(Q_NM, radius2, 0.15, c2)
        sigma = np.sqrt(NOISE_CM_NM * (intensity + FLAT_BACKGROUND_CM) / Q_NM)
        patterns.append(intensity + sigma * rng.normal(size=Q_NM.size))
        errors.append(sigma)
    return analyze_second_injection(times, Q_NM, np.array(patterns), np.array(errors), DELAY_S,
                                    dilution=dilution)


def test_the_number_of_crystals_tells_a_new_set_from_a_split_of_the_old_one():
    """Two resolved Gaussian sets after piston B count as the first set and a new one only if
    the crystals add up: the first set's crystals only dissolve, a new set adds crystals
    (c: 2e-5 mol/L). Before B one set of c, after it 0.8c and c: n. After it 3c and c: the
    larger set is not the first set (no pairs, the reason says why). The same two sets before
    and after B, only diluted by syringe B (0.8), as one population with a tail of small
    crystals that two Gaussians fit better than one Pearson III (the n = 1 dry run's flask):
    no second population, though the frames are bimodal."""
    c = 2e-5
    found = _two_sets((c, 0.0), (0.8 * c, c))
    assert found.exponent.success and found.second_population, found.exponent.reason
    rejected = _two_sets((c, 0.0), (3.0 * c, c))
    assert not rejected.exponent.success and not rejected.bimodal.any()
    assert "more rejected: their larger set held over 1.5x the crystals left from before " \
           "piston B" in rejected.exponent.reason, rejected.exponent.reason
    split = _two_sets((0.8 * c, 0.2 * c), (0.8 * c, 0.2 * c), dilution=0.8)
    assert split.bimodal.sum() >= 10 and math.isfinite(split.resolved_s)
    assert not split.second_population and not split.exponent.success
    assert split.exponent.reason.startswith("no second population after piston B: the number of "
                                            "crystals stayed below"), split.exponent.reason
    assert math.isnan(split.summary()["growth_exponent"]) and not split.used.any()


def test_a_first_set_that_stops_growing_before_the_new_one_forms_leaves_no_window():
    """The window needs both sets growing: a first set whose radius levels off (here as in a
    simulated flask whose crystals pile up at the top of its radius grid, n = 1 or 2) before
    the new set's number settles gives no exponent, and the reason says so; one still growing
    there gives a window that ends before it levels off."""
    from ncsynth.analysis.superfocusing import _window

    t = np.linspace(0.0, 600.0, 121)                        # s after piston B
    c2 = 1e-6 * np.minimum(1.0, t / 300.0)                  # settles (95 %) at 285 s
    r2 = 1.0 + 2e-3 * t
    candidates = np.arange(t.size)
    for stop_s, window in ((150.0, False), (450.0, True)):
        r1 = 3.0 + np.minimum(t, stop_s) * 1e-3
        first, last, reason = _window(candidates, c2, r2, r1, t)
        assert bool(reason) != window
        if window:
            assert 280.0 <= t[first] < t[last] <= stop_s
        else:
            assert reason.startswith("no window where both sets grow: the first set stopped "
                                     "growing 150 s after piston B"), reason


@pytest.mark.slow  # ~4 min: a 900 s double-injection dry run with 200 frames after piston B
def test_dry_run_double_injection_against_the_simulated_truth(tmp_path):
    """End to end (short): n = 4, piston B after 4 min; the exponent within 2σ of the effective
    exponent of the simulated radii over the analysis window; yields <= 1.02 throughout (S2.6
    with the Cd of both syringes in the volume after both)."""
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path)
    summary = dry_run(config, seed=3, progress=False, beamline_options={"growth_exponent": 4.0},
                      second_injection={"delay_s": DELAY_S, "cd_molar": 0.1},
                      plan_kwargs={"second_n_frames": 200, "second_ratio": 1.035},  # ~600 s after B
                      recipe_kwargs={"reaction_time_s": 900.0})
    assert summary["exit_status"] == "success"
    truth = summary["simulator_truth"]
    assert summary["second_population"] and math.isfinite(summary["growth_exponent"])
    assert abs(summary["growth_exponent"] - truth["growth_exponent_effective"]) \
        < 2 * summary["growth_exponent_err"], (summary, truth)
    with open_catalog(tmp_path) as catalog:
        yields = np.asarray(derived_run(catalog, summary["uid"])["fits"].read()["yield_fraction"])
    assert np.nanmax(yields) <= 1.02
    # the 98 % rule is for one injection: not quoted as a headline number here
    assert not summary["kinetics"]["success"] and "two injections" in summary["kinetics"]["reason"]
    # the last frame (~845 s) against the flask at that frame, not at the end of the run (900 s)
    frames = json.loads((tmp_path / "truth" / f"{summary['uid']}.json").read_text())["frames"]
    assert summary["yield_fraction"] == pytest.approx(frames["yield_fraction"][-1], abs=0.02)


@pytest.mark.slow  # ~2-4 min each: the default double-injection dry run, piston B 20 s after A
@pytest.mark.parametrize("exponent", [4.0, 2.0])
def test_the_20_s_double_injection_dry_run_recovers_the_flasks_exponent(tmp_path, exponent):
    """Issue 13's 20 s case, as a user runs it (`ncsynth dry-run --json --second-injection 20
    --growth-exponent N`): a second population, n within 2σ of the flask's effective exponent
    over the analysis window, yields <= 1.02 in every frame. Measured at 595c700..be8751a:
    n = 4: 3.67 ± 0.34 (flask 3.58, 155 pairs); n = 2: 1.62 ± 0.28 (flask 1.86, 140 pairs);
    before (1fab42c..): n = 4 "the data cannot constrain n", n = 2 0.96 ± 1.63."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "ncsynth.cli", "dry-run", "--json", "--no-progress", "--second-injection", "20",
         "--growth-exponent", str(exponent), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-2000:]
    summary = json.loads(completed.stdout)
    truth = summary["simulator_truth"]
    assert summary["second_population"] and math.isfinite(summary["growth_exponent"]), summary["growth_exponent_reason"]
    assert abs(summary["growth_exponent"] - truth["growth_exponent_effective"]) \
        < 2 * summary["growth_exponent_err"], (summary["growth_exponent"], summary["growth_exponent_err"], truth)
    with open_catalog(tmp_path) as catalog:
        yields = np.asarray(derived_run(catalog, summary["uid"])["fits"].read()["yield_fraction"])
    assert np.nanmax(yields) <= 1.02
