"""fit_bimodal: two sphere populations after a second injection (seed 000 §S.4.3, §S.5)."""
import math

import numpy as np
import pytest

from ncsynth.analysis.bimodal import BimodalFit, fit_bimodal, fit_skewed_pair
from ncsynth.analysis.saxs import SphereFit, fit_pattern
from ncsynth.analysis.scattering import distribution_intensity, sphere_intensity
from ncsynth.analysis.skewed import pearson3_log_density

Q_NM = np.geomspace(0.1, 5.0, 500)
LARGE = (2.0, 0.1, 1e-5)   # radius nm, sigma nm, concentration mol/L: the first set
SMALL = (1.2, 0.1, 1e-5)   # the set nucleated by the second injection
BACKGROUND_CM = 0.01


def noisy_pattern(rng, large=LARGE, small=SMALL, background=BACKGROUND_CM, peak_counts=1e5, q=Q_NM):
    """Poisson counts of the summed populations, ``peak_counts`` in the brightest bin; σ from the expectation."""
    intensity = sphere_intensity(q, *large) + sphere_intensity(q, *small) + background
    counts_per_cm = peak_counts / intensity.max()
    counts = rng.poisson(intensity * counts_per_cm)
    return counts / counts_per_cm, np.sqrt(intensity * counts_per_cm) / counts_per_cm


def test_cold_fit_recovers_both_populations_and_warm_start_agrees():
    y, s = noisy_pattern(np.random.default_rng(11))
    fit = fit_bimodal(Q_NM, y, s)
    assert fit.success and fit.separable, (fit.reason, fit.separable_reason)
    truth = dict(radius1_nm=2.0, sigma1_nm=0.1, concentration1_molar=1e-5,
                 radius2_nm=1.2, sigma2_nm=0.1, concentration2_molar=1e-5, background_cm=BACKGROUND_CM)
    errors = dict(radius1_nm=fit.radius1_err_nm, sigma1_nm=fit.sigma1_err_nm,
                  concentration1_molar=fit.concentration1_err_molar, radius2_nm=fit.radius2_err_nm,
                  sigma2_nm=fit.sigma2_err_nm, concentration2_molar=fit.concentration2_err_molar,
                  background_cm=fit.background_err_cm)
    for name, value in truth.items():
        assert abs(getattr(fit, name) - value) < 4 * errors[name], name
    assert fit.chi2_reduced == pytest.approx(1.0, abs=0.2)
    assert fit.n_points == Q_NM.size
    # Two populations describe the pattern far better than one.
    assert isinstance(fit.single, SphereFit) and fit.single.success
    assert fit.delta_chi2 > 100
    # The model is the fitted sum, so its residuals are the fit's χ².
    chi2 = np.sum(((y - fit.model(Q_NM)) / s) ** 2) / (Q_NM.size - 7)
    assert chi2 == pytest.approx(fit.chi2_reduced, rel=1e-6)
    warm = fit_bimodal(Q_NM, y, s, guess=fit)
    assert warm.success and warm.radius2_nm == pytest.approx(fit.radius2_nm, abs=1e-4 * fit.radius2_err_nm + 1e-9)


@pytest.fixture(scope="module")
def repeated_fits():
    rng = np.random.default_rng(20240607)
    guess = (LARGE[:2], SMALL[:2])
    return [fit_bimodal(Q_NM, *noisy_pattern(rng), guess=guess) for _ in range(100)]


@pytest.mark.parametrize("name, error_name, truth", [
    ("radius1_nm", "radius1_err_nm", LARGE[0]), ("sigma1_nm", "sigma1_err_nm", LARGE[1]),
    ("concentration1_molar", "concentration1_err_molar", LARGE[2]),
    ("radius2_nm", "radius2_err_nm", SMALL[0]),
    ("concentration2_molar", "concentration2_err_molar", SMALL[2]),
    ("background_cm", "background_err_cm", BACKGROUND_CM)])
def test_errors_match_the_scatter_over_repeats(repeated_fits, name, error_name, truth):
    assert all(fit.success and fit.separable for fit in repeated_fits)
    values = np.array([getattr(fit, name) for fit in repeated_fits])
    errors = np.array([getattr(fit, error_name) for fit in repeated_fits])
    assert abs(values.mean() - truth) < 3.5 * errors.mean() / math.sqrt(values.size)
    assert values.std(ddof=1) / errors.mean() == pytest.approx(1.0, abs=0.25)


def test_width_of_the_new_set_has_honest_coverage(repeated_fits):
    """σ₂ = 0.1 nm at R₂ = 1.2 nm is barely resolved (error ~70 %) and bounded below by 0, so its
    scatter is not Gaussian; check the coverage of the reported error instead of the spread."""
    sigma2 = np.array([fit.sigma2_nm for fit in repeated_fits])
    errors = np.array([fit.sigma2_err_nm for fit in repeated_fits])
    within_one = np.mean(np.abs(sigma2 - SMALL[1]) < errors)
    within_two = np.mean(np.abs(sigma2 - SMALL[1]) < 2 * errors)
    assert 0.55 < within_one < 0.9
    assert within_two > 0.88


@pytest.mark.parametrize("ratio", [0.01, 0.05])
def test_faint_second_population_is_reported_with_a_large_error(ratio):
    small = (SMALL[0], SMALL[1], ratio * LARGE[2])
    y, s = noisy_pattern(np.random.default_rng(5), small=small)
    cold = fit_bimodal(Q_NM, y, s)
    assert cold.success, cold.reason
    assert math.isfinite(cold.concentration2_err_molar) and cold.concentration2_err_molar > 0
    # Warm from the previous frame's populations: c₂ is within its (large) error of the truth.
    warm = fit_bimodal(Q_NM, y, s, guess=(LARGE[:2], SMALL[:2]))
    assert warm.success, warm.reason
    assert warm.concentration2_err_molar > 0.3 * small[2]
    assert abs(warm.concentration2_molar - small[2]) < 3 * warm.concentration2_err_molar
    assert warm.radius1_nm == pytest.approx(LARGE[0], abs=4 * warm.radius1_err_nm)


def test_populations_too_close_are_flagged_and_the_single_fit_is_given():
    close = (1.85, 0.12, 1e-5)
    y, s = noisy_pattern(np.random.default_rng(8), small=close)
    fit = fit_bimodal(Q_NM, y, s)
    assert fit.success, fit.reason
    assert not fit.separable and fit.separable_reason
    assert fit.single.success and fit.single.radius_nm == pytest.approx(1.93, abs=0.1)


def test_separated_sizes_with_indistinguishable_patterns_are_flagged():
    """1.6 vs 2.0 nm (gap 0.4 nm > σ1 + σ2) but the two form factors look alike at this noise."""
    y, s = noisy_pattern(np.random.default_rng(9), small=(1.6, 0.12, 1e-5))
    fit = fit_bimodal(Q_NM, y, s)
    assert fit.success
    assert not fit.separable and "correlated" in fit.separable_reason
    assert fit.max_cross_correlation > 0.98


def test_a_previous_single_population_fit_seeds_population_one():
    y, s = noisy_pattern(np.random.default_rng(12))
    previous = fit_pattern(*[Q_NM, *noisy_pattern(np.random.default_rng(13), small=(1.2, 0.1, 0.0))])
    fit = fit_bimodal(Q_NM, y, s, guess=previous)
    assert fit.success and fit.separable
    assert fit.radius2_nm == pytest.approx(SMALL[0], abs=4 * fit.radius2_err_nm)


@pytest.mark.parametrize("make_frame, reason", [
    (lambda y, s: (y[:12], s[:12], Q_NM[:12]), "usable points"),
    (lambda y, s: (np.full_like(y, np.nan), s, Q_NM), "usable points"),
    (lambda y, s: (y, np.where(np.arange(y.size) == 3, 0.0, s), Q_NM), "sigma_cm <= 0"),
    (lambda y, s: (BACKGROUND_CM + s * np.random.default_rng(1).standard_normal(y.size), s, Q_NM),
     "one-population fit failed"),
])
def test_bad_frames_fail_with_a_reason(make_frame, reason):
    y, s = noisy_pattern(np.random.default_rng(14))
    frame_y, frame_s, q = make_frame(y, s)
    fit = fit_bimodal(q, frame_y, frame_s)
    assert isinstance(fit, BimodalFit) and not fit.success
    assert reason in fit.reason
    assert math.isnan(fit.radius1_nm)
    with pytest.raises(ValueError, match="failed fit"):
        fit.model(Q_NM)


def test_malformed_arguments_raise():
    y, s = noisy_pattern(np.random.default_rng(15))
    with pytest.raises(ValueError, match="same length"):
        fit_bimodal(Q_NM, y[:-1], s)
    with pytest.raises(TypeError, match="guess"):
        fit_bimodal(Q_NM, y, s, guess="2 nm")
    with pytest.raises(ValueError, match="radius_nm > 0"):
        fit_bimodal(Q_NM, y, s, guess=((2.0, 0.1), (-1.0, 0.1)))
    with pytest.raises(ValueError, match="q_range_nm"):
        fit_bimodal(Q_NM, y, s, q_range_nm=(3.0, 1.0))


def test_two_skewed_sets_give_their_number_means_where_two_gaussians_run_high():
    """A set with a tail of small crystals (as the new set while it nucleates, §S.5): the small
    crystals scatter little, so two Gaussians fit the pattern as well (χ²) yet put the new set's
    mean on its bulk; the Pearson III pair recovers both number means."""
    radii = np.linspace(0.3, 3.5, 3201)
    q = np.linspace(0.11, 5.0, 151)
    numbers, number_means = np.zeros_like(radii), []
    for mean, std, skew, molar in ((2.43, 0.06, -0.8, 1.3e-5), (1.62, 0.26, -1.0, 0.9e-5)):
        z = (radii - mean) / std                   # R, σ, γ, c of a simulated flask 150 s after B
        inside = 0.5 * skew * z > -1.0
        density = np.zeros_like(radii)
        density[inside] = np.exp(pearson3_log_density(z[inside], skew))
        numbers += molar * density / density.sum()
        number_means.append(float(density @ radii / density.sum()))
    intensity = distribution_intensity(q, radii, numbers) + 0.09
    sigma = np.sqrt(5.8e-7 * intensity / q)        # a reduced dry-run frame's errors, no noise
    gaussians = fit_bimodal(q, intensity, sigma, guess=((2.43, 0.06), (1.62, 0.26)))
    assert gaussians.success and gaussians.chi2_reduced < 0.1
    assert gaussians.radius2_nm - number_means[1] > 5 * gaussians.radius2_err_nm  # biased
    r1, r2, theta = fit_skewed_pair(q, intensity, sigma, gaussians)
    assert theta is not None
    assert r1 == pytest.approx(number_means[0], abs=1e-3)
    assert r2 == pytest.approx(number_means[1], abs=2e-3)
