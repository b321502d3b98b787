"""Growth exponent from a bimodal ensemble (seed 000 §S.4.3–S.4.4, §S.5.5), on synthetic radius
pairs and on the population-balance simulator with a second injection."""
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from ncsynth.analysis.growth import (ExponentFit, expected_large_radius, expected_small_radius,
                                     fit_growth_exponent, growth_rate, law_chord_exponent,
                                     law_local_exponent, local_exponent, pair_rate_exponent)
from ncsynth.simulators.kinetics import KineticParameters, ReactionState
from ncsynth.simulators.kinetics_rates import growth_rate_m_per_s

TIMES_S = np.linspace(5.0, 600.0, 30)


def supersaturation(t_s):
    """A made-up S(t): a decaying burst on a plateau, as after an injection."""
    return 100.0 * np.exp(-t_s / 200.0) + 5.0


def pair_series(n, r1_0=2.0, r2_0=1.0, r1_end=3.5, times_s=TIMES_S):
    """Radii of two sets integrated from dr/dt = A·S(t)/rⁿ (S4.12), A chosen so r₁ ends at r1_end."""
    integral = 100.0 * 200.0 * (1 - math.exp(-times_s[-1] / 200.0)) + 5.0 * times_s[-1]
    rate_constant = (r1_end ** (n + 1) - r1_0 ** (n + 1)) / ((n + 1) * integral)
    solution = solve_ivp(lambda t, r: rate_constant * supersaturation(t) / r**n, (0.0, times_s[-1]),
                         [r1_0, r2_0], t_eval=times_s, rtol=1e-11, atol=1e-12)
    return solution.y


@pytest.mark.parametrize("n", [0.0, 1.0, 2.0, 4.0])
def test_exact_pairs_give_the_exponent_and_the_constant(n):
    r1, r2 = pair_series(n)
    fit = fit_growth_exponent(r1, r2)
    assert fit.success, fit.reason
    assert fit.n == pytest.approx(n, abs=1e-4)
    assert fit.constant == pytest.approx(2.0 ** (n + 1) - 1.0, rel=1e-4)
    assert fit.n_lower <= fit.n <= fit.n_upper


@pytest.mark.parametrize("n", [0.0, 1.0, 2.0, 4.0])
def test_noisy_pairs_recover_the_exponent_with_honest_errors(n):
    r1, r2 = pair_series(n)
    rng = np.random.default_rng(int(10 * n) + 1)
    error = 0.01
    pulls, widths, constant_pulls = [], [], []
    for _ in range(60):
        fit = fit_growth_exponent(r1 + rng.normal(0, error, r1.size), r2 + rng.normal(0, error, r2.size),
                                  error, error)
        assert fit.success and not fit.errors_from_scatter
        pulls.append((fit.n - n) / fit.n_err)
        widths.append(fit.n_err)
        constant_pulls.append((fit.constant - (2.0 ** (n + 1) - 1.0)) / fit.constant_err)
    assert np.std(constant_pulls, ddof=1) == pytest.approx(1.0, abs=0.3)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.5
    assert pulls.std(ddof=1) == pytest.approx(1.0, abs=0.3)
    assert np.mean(np.abs(pulls) < 2) > 0.85
    # Without given errors the common radius error is estimated from the scatter.
    scatter = fit_growth_exponent(r1 + rng.normal(0, error, r1.size), r2 + rng.normal(0, error, r2.size))
    assert scatter.errors_from_scatter and scatter.chi2_reduced == 1.0
    assert scatter.n_err == pytest.approx(np.median(widths), rel=0.5)
    assert abs(scatter.n - n) < 3 * scatter.n_err


def test_exponents_are_told_apart():
    """Diffusion (n = 1) data reject reaction control (n = 0) and superfocusing (n = 4)."""
    r1, r2 = pair_series(1.0)
    rng = np.random.default_rng(3)
    fit = fit_growth_exponent(r1 + rng.normal(0, 0.01, r1.size), r2 + rng.normal(0, 0.01, r2.size), 0.01, 0.01)
    assert fit.n_lower > 0.5 and fit.n_upper < 1.5


def test_expected_curves_are_s4_16_and_s4_17():
    r2 = np.linspace(1.0, 3.0, 9)
    r1_0, r2_0 = 2.0, 1.0
    assert np.allclose(expected_large_radius(r2, r1_0, r2_0, 1), np.sqrt(r2**2 + r1_0**2 - r2_0**2))
    assert np.allclose(expected_large_radius(r2, r1_0, r2_0, 0), r2 + (r1_0 - r2_0))
    assert np.allclose(expected_large_radius(r2, r1_0, r2_0, -1), r2 * r1_0 / r2_0)
    for n in (0.0, 1.0, 4.0, 2.5):
        r1 = expected_large_radius(r2, r1_0, r2_0, n)
        assert np.allclose(expected_small_radius(r1, r1_0, r2_0, n), r2)
        assert np.allclose(r1 ** (n + 1) - r2 ** (n + 1), r1_0 ** (n + 1) - r2_0 ** (n + 1))
    # The simulated pairs lie on their own expected curve.
    r1, r2 = pair_series(4.0)
    assert np.allclose(expected_small_radius(r1, r1[0], r2[0], 4.0), r2, rtol=1e-6)
    # Going back below where the small set could exist gives NaN, not a complex or negative radius.
    assert math.isnan(expected_small_radius(np.array([1.5]), 2.0, 0.5, 1.0)[0])


@pytest.mark.parametrize("n", [0.0, 1.0, 4.0])
def test_pair_rate_exponent_and_chord_exponent_of_a_power_law(n):
    times = np.linspace(5.0, 600.0, 240)  # the window must be short against the change of the rates
    r1, r2 = pair_series(n, times_s=times)
    _, _, rate_exponent = pair_rate_exponent(times, r1, r2)
    # Away from the ends of the series (where the window is one-sided) and the fast first seconds.
    assert np.allclose(rate_exponent[10:-3], n, atol=0.1)
    assert np.median(rate_exponent) == pytest.approx(n, abs=0.01)
    assert np.allclose(law_chord_exponent(lambda r: 2.0 / r**n, r2, r1), n)


def test_local_exponent_of_a_power_law_and_of_a_growth_curve():
    r = np.geomspace(0.8, 4.0, 25)
    for n in (0.0, 1.0, 4.0):
        assert np.allclose(local_exponent(r, 3.0 / r**n), n, atol=1e-10)
        assert np.allclose(law_local_exponent(lambda x: 3.0 / x**n, r), n, atol=1e-7)
    # From a sampled r(t) at constant S: dr/dt = A/r² gives r³ = r0³ + 3At.
    t = np.linspace(0.0, 300.0, 61)
    radius = np.cbrt(8.0 + 3 * 0.05 * t)
    smooth, rate = growth_rate(t, radius)
    assert np.allclose(rate[3:-3], 0.05 / radius[3:-3] ** 2, rtol=1e-2)
    assert np.allclose(rate, 0.05 / radius**2, rtol=3e-2)  # one-sided windows at the ends
    assert np.allclose(smooth, radius, atol=1e-3)
    # The ends inherit the one-sided rates; inside, the local exponent is 2.
    assert np.allclose(local_exponent(smooth, rate)[6:-6], 2.0, atol=0.05)
    # Noise averaged by the window: still about 2 with 9 points per line.
    noisy = radius + np.random.default_rng(4).normal(0, 2e-4, radius.size)
    smooth, rate = growth_rate(t, noisy, window_points=9)
    assert np.median(local_exponent(smooth, rate, window_points=9)) == pytest.approx(2.0, abs=0.3)


def test_bad_input_raises_and_too_few_pairs_fail():
    with pytest.raises(ValueError, match="same length"):
        fit_growth_exponent([2.0, 2.1], [1.0])
    with pytest.raises(ValueError, match="r2_nm must be > 0"):
        fit_growth_exponent([2.0, 2.1, 2.2], [1.0, -1.0, 1.1])
    with pytest.raises(ValueError, match="both r1_err_nm and r2_err_nm"):
        fit_growth_exponent([2.0, 2.1, 2.2], [1.0, 1.05, 1.1], r1_err_nm=0.01)
    with pytest.raises(ValueError, match="r1_err_nm must be > 0"):
        fit_growth_exponent([2.0, 2.1, 2.2], [1.0, 1.05, 1.1], 0.0, 0.01)
    with pytest.raises(ValueError, match="n must be"):
        expected_small_radius([2.0], 2.0, 1.0, math.nan)
    with pytest.raises(ValueError, match="strictly increasing"):
        growth_rate([0, 2, 1, 3, 4, 5, 6], np.ones(7))
    with pytest.raises(ValueError, match="rate must be"):
        local_exponent(np.linspace(1, 2, 7), -np.ones(7))
    fit = fit_growth_exponent([2.0, np.nan, 2.2], [1.0, 1.1, 1.3])
    assert isinstance(fit, ExponentFit) and not fit.success and "2 usable" in fit.reason
    flat = fit_growth_exponent(np.full(8, 2.0), np.full(8, 1.0), 0.01, 0.01)
    assert not flat.success and "do not constrain" in flat.reason


# ----------------------------------------------------------------- the simulator's superfocusing
TEMPERATURE_C = 260.0
FIRST_INJECTION_MOLAR = 0.027          # [P]i of Table S6.1
SECOND_INJECTION_S = 240.0             # piston B after 4 min (§S.5.1)
#: Precursor of the second injection: enough to renucleate (S must climb back to ~170).
SECOND_INJECTION_MOLAR = {1.0: 0.08, 4.0: 0.027}
RADIUS_ERROR_NM = 0.01                 # typical standard error of a SAXS radius


def split_populations(radius_nm, numbers):
    """Mean radii and numbers of the large and the small set, split at the minimum between the modes."""
    peaks = [i for i in range(1, numbers.size - 1)
             if numbers[i] > numbers[i - 1] and numbers[i] >= numbers[i + 1] and numbers[i] > 1e-3 * numbers.max()]
    small_peak, large_peak = peaks[0], peaks[-1]
    cut = small_peak + int(np.argmin(numbers[small_peak:large_peak + 1]))
    small, large = slice(0, cut), slice(cut, None)
    return ((numbers[large] @ radius_nm[large]) / numbers[large].sum(),
            (numbers[small] @ radius_nm[small]) / numbers[small].sum(), numbers[small].sum())


def simulated_bimodal(n):
    """Large and small set radii, small-set number and S every 10 s after a second injection."""
    state = ReactionState(KineticParameters(growth_exponent=n))
    state.add_precursor(FIRST_INJECTION_MOLAR)
    state.step(SECOND_INJECTION_S, TEMPERATURE_C)
    state.add_precursor(SECOND_INJECTION_MOLAR[n])
    rows = []
    for t in np.arange(10.0, 601.0, 10.0):
        state.step(SECOND_INJECTION_S + t - state.time_s, TEMPERATURE_C)
        rows.append((*split_populations(state.radius_nm, state.number_density_per_m3), state.supersaturation))
    return state.parameters, np.array(rows).T


def simulator_law(parameters, supersaturation):
    """The simulator's own growth rate (S4.8 with k_a of S6.16) at S, as a function of radius in nm."""
    return lambda r_nm: growth_rate_m_per_s(np.asarray(r_nm) * 1e-9, supersaturation, parameters,
                                            TEMPERATURE_C + 273.15)


@pytest.mark.parametrize("n", [1.0, 4.0])
def test_the_simulators_growth_exponent_is_recovered(n):
    parameters, (r1, r2, small_number, supersat) = simulated_bimodal(n)
    # The second injection made a distinct, smaller set that catches up with the first.
    assert np.all(r2 < r1) and np.all(np.diff(r1 - r2) < 0)
    # Nucleation of the new set goes on for a while (long for superfocusing, which keeps S up);
    # its mean radius is pulled down by fresh nuclei then, so use only times after it ended.
    done = small_number >= 0.995 * small_number[-1]
    assert done.sum() >= 20
    r1, r2, supersat = r1[done], r2[done], supersat[done]
    noise = np.random.default_rng(int(n))
    fit = fit_growth_exponent(r1 + noise.normal(0, RADIUS_ERROR_NM, r1.size),
                              r2 + noise.normal(0, RADIUS_ERROR_NM, r2.size), RADIUS_ERROR_NM, RADIUS_ERROR_NM)
    assert fit.success, fit.reason
    # Like with like: S4.21 across the gap between the sets, on the simulator's own law at the
    # simulated S of each time.  The Kelvin term makes it drift as S falls, so the fitted n must
    # lie within the range it takes, give or take twice the fit's uncertainty.
    chord = np.array([law_chord_exponent(simulator_law(parameters, s), b, a)
                      for a, b, s in zip(r1, r2, supersat)])
    assert chord.min() - 2 * fit.n_err < fit.n < chord.max() + 2 * fit.n_err, (fit, chord.min(), chord.max())
    # The offset B, the diffusion term D/k_a and the Kelvin term keep the effective exponent below n.
    local = law_local_exponent(simulator_law(parameters, supersat[0]), np.array([r2[0], r1[0]]))
    assert chord.max() < n and local.max() < n
    # ... but the regime is still recognised: superfocusing (n > 2) for n = 4, not for n = 1.
    assert (fit.n_lower > 2.0) == (n > 2.0)
    # The time-resolved exponent from both sets' growth rates agrees with the chord exponent.
    _, _, rate_exponent = pair_rate_exponent(np.arange(r1.size) * 10.0, r1, r2)
    assert np.median(rate_exponent) == pytest.approx(np.median(chord), abs=0.1)
