"""Kinetics from SAXS fits: yield (S2.5–S2.6), S3.3 and S3.2 fits, t98 and the nucleation fraction."""
import math

import numpy as np
import pytest
from scipy.integrate import quad

from ncsynth.analysis.kinetics import (
    CDSE_LATTICE_NM, buildup_fraction, cd_after_second_injection, fit_buildup, fit_second_order,
    second_order_fraction, time_to_fraction, yield_fraction)
from ncsynth.analysis.nucleation_period import summarize_kinetics, time_to_fraction_of_final

TIME_S = np.linspace(0.0, 3000.0, 150)
CD0 = 0.2e-3 / 12e-3  # 0.2 mmol Cd in 12 mL (seed 000 §S.3.1)


def test_yield_uses_mean_gaussian_volume_and_four_cd_per_cell():
    radius, sigma, concentration = 2.0, 0.3, 2e-5
    mean_r3 = quad(lambda r: r**3 * math.exp(-0.5 * ((r - radius) / sigma) ** 2), -np.inf, np.inf)[0] / (
        math.sqrt(2 * math.pi) * sigma)
    expected = concentration * 4 * (4 / 3 * math.pi * mean_r3) / CDSE_LATTICE_NM**3 / CD0
    assert yield_fraction(radius, sigma, concentration, CD0) == pytest.approx(expected, rel=1e-10)
    values = yield_fraction(np.array([2.0, np.nan]), np.array([0.3, 0.3]), np.array([2e-5, 2e-5]), CD0)
    assert values[0] == pytest.approx(expected) and math.isnan(values[1])
    with pytest.raises(ValueError, match="cd_initial_molar"):
        yield_fraction(2.0, 0.3, 2e-5, 0.0)


def test_buildup_fit_recovers_rate_and_plateau_and_skips_failed_frames():
    rng = np.random.default_rng(1)
    truth_rate, truth_plateau, noise = 0.004, 2.4e-5, 3e-7
    values = truth_plateau * buildup_fraction(TIME_S, truth_rate) + rng.normal(0, noise, TIME_S.size)
    errors = np.full(TIME_S.size, noise)
    values[::10] = np.nan  # failed frames
    fit = fit_buildup(TIME_S, values, errors)
    assert fit.success and fit.n_points == TIME_S.size - 15
    assert abs(fit["rate_per_s"] - truth_rate) < 3 * fit.error("rate_per_s")
    assert abs(fit["amplitude"] - truth_plateau) < 3 * fit.error("amplitude")
    t98, t98_err = time_to_fraction(fit)
    assert abs(t98 - math.log(50) / truth_rate) < 3 * t98_err


def test_t98_of_the_exponential_buildup_is_ln50_over_k():
    fit = fit_buildup(TIME_S, 3.0 * buildup_fraction(TIME_S, 0.01))
    assert fit["rate_per_s"] == pytest.approx(0.01, rel=1e-8)
    assert time_to_fraction(fit)[0] == pytest.approx(math.log(50) / 0.01, rel=1e-8)
    assert time_to_fraction(fit, 0.5)[0] == pytest.approx(math.log(2) / 0.01, rel=1e-8)


def test_buildup_with_delay():
    rng = np.random.default_rng(2)
    values = 1.0 * buildup_fraction(TIME_S, 0.005, delay_s=40.0) + rng.normal(0, 0.01, TIME_S.size)
    fit = fit_buildup(TIME_S, values, np.full(TIME_S.size, 0.01), fit_delay=True)
    assert abs(fit["delay_s"] - 40.0) < 3 * fit.error("delay_s")
    assert time_to_fraction(fit)[0] == pytest.approx(fit["delay_s"] + math.log(50) / fit["rate_per_s"])


@pytest.mark.parametrize("beta", [2.5, 1.0, 0.6])
def test_second_order_time_to_fraction_inverts_the_curve(beta):
    fit = fit_second_order(TIME_S, 0.8 * second_order_fraction(TIME_S, 0.14, beta, CD0), CD0, beta)
    assert fit["k2_l_per_mol_s"] == pytest.approx(0.14, rel=1e-6)
    t98, _ = time_to_fraction(fit)
    assert second_order_fraction(t98, 0.14, beta, CD0) == pytest.approx(0.98, abs=1e-9)


def test_second_order_fraction_follows_s32():
    beta, k2 = 2.5, 0.14
    exponent = np.exp(-k2 * (beta - 1) * CD0 * TIME_S)
    s32 = 1 - (beta - 1) * exponent / (beta - exponent)
    np.testing.assert_allclose(second_order_fraction(TIME_S, k2, beta, CD0), s32, rtol=1e-12, atol=1e-15)
    limit = second_order_fraction(TIME_S, k2, 1.0 + 1e-4, CD0)
    np.testing.assert_allclose(second_order_fraction(TIME_S, k2, 1.0, CD0), limit, rtol=1e-3, atol=1e-9)


@pytest.mark.parametrize("fit_beta", [False, True])
def test_second_order_fit_recovers_k2_from_noisy_yield(fit_beta):
    rng = np.random.default_rng(3)
    t = np.linspace(0, 8000, 200)
    truth = 0.75 * second_order_fraction(t, 0.14, 2.5, CD0)
    values = truth + rng.normal(0, 0.01, t.size)
    fit = fit_second_order(t, values, CD0, 2.5 if not fit_beta else 2.0, errors=np.full(t.size, 0.01),
                           fit_beta=fit_beta)
    assert fit.success, fit.reason
    assert abs(fit["k2_l_per_mol_s"] - 0.14) < 3 * fit.error("k2_l_per_mol_s")
    assert abs(fit["amplitude"] - 0.75) < 3 * fit.error("amplitude")
    if fit_beta:
        assert abs(fit["beta"] - 2.5) < 3 * fit.error("beta")
    assert 0.8 < fit.chi2_reduced < 1.25


@pytest.mark.parametrize("values", [np.full(TIME_S.size, np.nan), np.where(TIME_S < 50, 1.0, np.nan),
                                    np.zeros(TIME_S.size)])
def test_too_few_points_or_no_signal_are_flagged(values):
    for fit in (fit_buildup(TIME_S, values), fit_second_order(TIME_S, values, CD0, 2.5)):
        assert not fit.success and fit.reason and not fit.describes_data
        assert all(math.isnan(time) for time in time_to_fraction(fit))



def test_a_rate_the_frames_cannot_resolve_gets_an_infinite_error_not_a_zero_one():
    """A build-up complete before the first frame (a short dry run's first frames, 0.3–2 s):
    χ² is flat in the S3.3 rate above some value, so the data give only a lower bound. scipy's
    bounded ``curve_fit`` drops that direction from its pseudo-inverse and reports the rate's
    error as 0 (it printed "98% at 0.2117 ± 0.0000…97 s" in a 20-frame dry run): the error
    must be infinite, and so must that of the 98 % time, with the reason naming the rate."""
    rng = np.random.default_rng(1)
    time_s = np.linspace(0.3, 2.0, 8)
    values, errors = 1.0 + 0.01 * rng.normal(size=8), np.full(8, 0.01)
    fit = fit_buildup(time_s, values, errors)
    assert fit.success and fit.error("amplitude") == pytest.approx(0.01 / math.sqrt(8), rel=1e-3)
    assert math.isinf(fit.error("rate_per_s")) and "rate_per_s not determined" in fit.reason

    def chi2(rate):
        return float(np.sum(((values - fit["amplitude"] * buildup_fraction(time_s, rate)) / errors)**2))

    best = chi2(fit["rate_per_s"])  # the chi2 is indeed flat: a rate ten times larger fits as well
    assert abs(chi2(10 * fit["rate_per_s"]) - best) < 1e-6 * best
    time, error = time_to_fraction(fit)
    assert time == pytest.approx(math.log(50) / fit["rate_per_s"]) and math.isinf(error)
    # a build-up the frames do resolve keeps curve_fit's finite errors
    resolved = fit_buildup(TIME_S, 2.0 * buildup_fraction(TIME_S, 0.01) + 0.01 * rng.normal(size=150),
                           np.full(150, 0.01))
    assert np.all(np.isfinite(resolved.errors)) and resolved.reason == ""
    assert 0 < time_to_fraction(resolved)[1] < 0.05 * time_to_fraction(resolved)[0]


def _frames(time_s, concentration, yields, relative_width=0.1):
    """Radius and width that give ``yields`` with ``concentration`` (S2.5–S2.6)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_volume = yields * CD0 * CDSE_LATTICE_NM**3 / (4 * concentration)
        radius = np.cbrt(mean_volume * 3 / (4 * math.pi) / (1 + 3 * relative_width**2))
    return radius, relative_width * radius


def test_summary_of_a_synthetic_run_where_the_laws_hold():
    rng = np.random.default_rng(4)
    rate, k2, beta, final_yield = 0.01, 0.14, 2.5, 0.8
    concentration = 2.4e-5 * buildup_fraction(TIME_S, rate)
    yields = final_yield * second_order_fraction(TIME_S, k2, beta, CD0)
    radius, sigma = _frames(TIME_S, concentration, yields)
    concentration_err = 0.002 * concentration
    concentration_noisy = concentration + rng.normal(0, 1, TIME_S.size) * concentration_err
    radius[0] = np.nan  # the t = 0 frame has no particles: a failed fit
    radius[[30, 77]] = np.nan
    summary = summarize_kinetics(TIME_S, radius, sigma, concentration_noisy, CD0, beta,
                                 concentration_err, 1e-4 * radius, 1e-4 * sigma)
    times = summary.times
    assert times.success, times.reason
    t98_concentration = math.log(50) / rate
    t98_yield = -math.log(0.02 * beta / (beta - 0.98)) / (k2 * (beta - 1) * CD0)
    # the laws reach 98 % of their asymptotes there ...
    assert summary.law_t_concentration_s == pytest.approx(t98_concentration, rel=0.02)
    assert summary.law_t_yield_s == pytest.approx(t98_yield, rel=0.02)
    # ... the data 98 % of their value at the last frame, a little earlier for the yield
    fine = np.linspace(0.0, TIME_S[-1], 30001)
    truth_c = time_to_fraction_of_final(fine, buildup_fraction(fine, rate))
    truth_y = time_to_fraction_of_final(fine, second_order_fraction(fine, k2, beta, CD0))
    assert abs(times.t_concentration_s - truth_c) < 3 * times.t_concentration_err_s
    assert abs(times.t_yield_s - truth_y) < 3 * times.t_yield_err_s < 0.1 * truth_y
    ratio = truth_c / truth_y
    assert abs(times.nucleation_fraction - ratio) < 3 * times.nucleation_fraction_err < 0.1 * ratio
    assert 0 < times.nucleation_fraction_err < 0.05 * times.nucleation_fraction
    # the law describes these data: chi2_red ~ 1, nothing flagged
    assert summary.concentration_fit.describes_data and summary.concentration_fit.chi2_reduced < 1.5
    assert summary.law_note == ""


def test_a_law_that_misfits_is_flagged_and_its_errors_scaled():
    """An S-shaped build-up (a delayed logistic) is not S3.3: chi2_red >> 1, covariance scaled."""
    rng = np.random.default_rng(5)
    concentration = 2.4e-5 / (1 + np.exp(-(TIME_S - 200.0) / 40.0))
    error = 0.002 * 2.4e-5
    noisy = concentration + rng.normal(0, error, TIME_S.size)
    weighted = fit_buildup(TIME_S, noisy, np.full(TIME_S.size, error))
    assert weighted.success and weighted.chi2_reduced > 100 and not weighted.describes_data
    assert "S3.3 does not describe the data" in weighted.reason
    unscaled = np.sqrt(np.diag(weighted.covariance / weighted.chi2_reduced))
    assert weighted.error("rate_per_s") == pytest.approx(unscaled[1] * math.sqrt(weighted.chi2_reduced))


def test_summary_with_no_data_is_flagged_not_raised():
    nan = np.full(TIME_S.size, np.nan)
    summary = summarize_kinetics(TIME_S, nan, nan, nan, CD0, 2.5, nan, nan, nan)
    assert not summary.times.success and "usable frames" in summary.times.reason
    assert not summary.concentration_fit.success and not summary.yield_fit.success
    assert math.isnan(summary.times.nucleation_fraction)


def test_a_run_that_ends_before_the_plateau_is_flagged():
    rate, k2, beta = 0.01, 0.14, 2.5
    early = np.linspace(2.0, 150.0, 75)  # the frames stop at half of t98 of the concentration
    concentration = 2.4e-5 * buildup_fraction(early, rate)
    radius, sigma = _frames(early, concentration, 0.8 * second_order_fraction(early, k2, beta, CD0))
    summary = summarize_kinetics(early, radius, sigma, concentration, CD0, beta,
                                 0.01 * concentration, 1e-3 * radius, 1e-3 * sigma)
    assert not summary.times.success
    assert "concentration: 98% of its last value" in summary.times.reason
    assert "not settled before the run ended" in summary.times.reason
    assert summary.law_t_concentration_s > early[-1] and summary.law_t_yield_s > early[-1]
    assert "after the last usable frame" in summary.law_note


def test_yield_after_a_second_injection_counts_the_cadmium_of_both_syringes():
    """S2.6 after piston B: A's Cd diluted by B's volume plus B's Cd (dry-run flask volumes)."""
    flask_ml, a_ml, b_ml, syringe_molar = 11.5, 4.5, 4.5, 0.1
    after_a = syringe_molar * a_ml / (flask_ml + a_ml)
    added_by_b = syringe_molar * b_ml / (flask_ml + a_ml + b_ml)
    total = cd_after_second_injection(after_a, added_by_b, syringe_molar)
    assert total == pytest.approx(syringe_molar * (a_ml + b_ml) / (flask_ml + a_ml + b_ml))
    with pytest.raises(ValueError):
        cd_after_second_injection(after_a, 0.2, 0.1)  # B cannot add more Cd than it holds
