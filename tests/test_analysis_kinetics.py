"""Kinetics from SAXS fits: yield (S2.5–S2.6), S3.3 and S3.2 fits, t98 and the nucleation fraction."""
import math

import numpy as np
import pytest
from scipy.integrate import quad

from ncsynth.analysis.kinetics import (
    CDSE_LATTICE_NM, buildup_fraction, fit_buildup, fit_second_order, second_order_fraction,
    summarize_kinetics, time_to_fraction, yield_fraction)

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
        assert not fit.success and fit.reason
        assert all(math.isnan(time) for time in time_to_fraction(fit))


def test_summary_of_a_synthetic_run():
    rng = np.random.default_rng(4)
    rate, k2, beta, final_yield = 0.01, 0.14, 2.5, 0.8
    concentration = 2.4e-5 * buildup_fraction(TIME_S, rate)
    yields = final_yield * second_order_fraction(TIME_S, k2, beta, CD0)
    relative_width = 0.1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_volume = yields * CD0 * CDSE_LATTICE_NM**3 / (4 * concentration)
        radius = np.cbrt(mean_volume * 3 / (4 * math.pi) / (1 + 3 * relative_width**2))
    concentration_noisy = concentration * (1 + rng.normal(0, 0.01, TIME_S.size))
    radius[0] = np.nan  # the t = 0 frame has no particles: a failed fit
    radius[[30, 77]] = np.nan
    summary = summarize_kinetics(TIME_S, radius, relative_width * radius, concentration_noisy, CD0, beta)
    assert summary.success, summary.reason
    t98_yield = -math.log(0.02 * beta / (beta - 0.98)) / (k2 * (beta - 1) * CD0)
    assert summary.t_concentration_s == pytest.approx(math.log(50) / rate, rel=0.02)
    assert summary.t_yield_s == pytest.approx(t98_yield, rel=0.02)
    assert summary.nucleation_fraction == pytest.approx(math.log(50) / rate / t98_yield, rel=0.03)
    assert 0 < summary.nucleation_fraction_err < 0.05 * summary.nucleation_fraction


def test_summary_with_no_data_is_flagged_not_raised():
    nan = np.full(TIME_S.size, np.nan)
    summary = summarize_kinetics(TIME_S, nan, nan, nan, CD0, 2.5)
    assert not summary.success and "concentration fit" in summary.reason and "yield fit" in summary.reason
    assert math.isnan(summary.nucleation_fraction)


def test_a_run_that_ends_before_the_plateau_is_flagged_as_extrapolated():
    rate, k2, beta = 0.01, 0.14, 2.5
    early = TIME_S[TIME_S < 150.0]  # the frames stop at half of t98 of the concentration
    concentration = 2.4e-5 * buildup_fraction(early, rate)
    yields = 0.8 * second_order_fraction(early, k2, beta, CD0)
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = np.cbrt(yields * CD0 * CDSE_LATTICE_NM**3 / (4 * concentration) * 3
                         / (4 * math.pi) / 1.03)
    summary = summarize_kinetics(early, radius, 0.1 * radius, concentration, CD0, beta)
    assert summary.concentration_fit.success and summary.yield_fit.success
    assert summary.t_concentration_s > early[-1] and summary.t_yield_s > early[-1]
    assert not summary.success
    assert "concentration: 98% is reached at" in summary.reason
    assert "yield: 98% is reached at" in summary.reason and "after the last usable frame" in summary.reason
