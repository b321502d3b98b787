"""The polydisperse-sphere model (seed 000 S2.1–S2.4) against sasmodels and against itself."""
import math

import numpy as np
import pytest
from scipy.integrate import quad

from ncsynth.analysis.scattering import (
    BASE_STEP_NM, CONTRAST_CDSE_PER_CM2, RadiusGridKernel, distribution_intensity,
    molar_to_per_cm3, parameters, sphere_form_factor, sphere_intensity)

sasmodels_core = pytest.importorskip("sasmodels.core")
from sasmodels.direct_model import call_kernel  # noqa: E402

Q_NM = np.geomspace(0.1, 5.0, 400)
SLD_CDSE, SLD_MIXTURE = 40.7, 5.5  # 1e-6 Å⁻², seed 000 below S2.4


@pytest.fixture(scope="module")
def sasmodels_sphere():
    model = sasmodels_core.load_model("sphere", dtype="double")
    return model.make_kernel([Q_NM / 10.0])  # sasmodels takes q in Å⁻¹


def truncated_mean_volume_nm3(radius, sigma):
    """⟨V⟩ of the Gaussian truncated to [max(0, R−5σ), R+5σ], by adaptive quadrature."""
    lo, hi = max(0.0, radius - 5 * sigma), radius + 5 * sigma
    gauss = lambda r: math.exp(-0.5 * ((r - radius) / sigma) ** 2)  # noqa: E731
    norm = quad(gauss, lo, hi, epsabs=0, epsrel=1e-12)[0]
    return quad(lambda r: gauss(r) * 4 / 3 * math.pi * r**3, lo, hi, epsabs=0, epsrel=1e-12)[0] / norm


def sasmodels_intensity(kernel, radius, sigma, concentration):
    """sasmodels I(q) in cm⁻¹; scale = volume fraction φ = n·⟨V⟩ because sasmodels divides by ⟨V⟩."""
    mean_volume = truncated_mean_volume_nm3(radius, sigma) if sigma else 4 / 3 * math.pi * radius**3
    phi = molar_to_per_cm3(concentration) * mean_volume * 1e-21
    pars = dict(radius=radius * 10.0, sld=SLD_CDSE, sld_solvent=SLD_MIXTURE, scale=phi, background=0.0,
                radius_pd=sigma / radius, radius_pd_n=400, radius_pd_nsigma=5)
    return call_kernel(kernel, pars)  # cutoff=0: DirectModel's default cutoff=1e-5 drops weights


@pytest.mark.parametrize("radius, relative_width", [
    (0.5, 0.02), (0.8, 0.3), (2.0, 0.1), (3.0, 0.05), (6.0, 0.02), (6.0, 0.3), (1.0, 0.005), (4.0, 0.0)])
def test_sphere_intensity_matches_sasmodels(sasmodels_sphere, radius, relative_width):
    sigma = radius * relative_width
    ours = sphere_intensity(Q_NM, radius, sigma, 2e-5)
    theirs = sasmodels_intensity(sasmodels_sphere, radius, sigma, 2e-5)
    assert np.max(np.abs(ours / theirs - 1)) < 1e-3


def test_forward_intensity_has_the_9_dr2_v2_prefactor():
    radius_nm, concentration = 2.3, 24e-6
    volume_cm3 = 4 / 3 * math.pi * (radius_nm * 1e-7) ** 3
    expected = concentration * 6.02214076e23 / 1000 * (35.2e-6 * 1e16) ** 2 * volume_cm3**2
    assert sphere_intensity(np.array([1e-4]), radius_nm, 0.0, concentration)[0] == pytest.approx(expected, rel=1e-6)
    assert CONTRAST_CDSE_PER_CM2 == pytest.approx(3.52e11)


def test_distribution_intensity_matches_sasmodels_for_two_populations(sasmodels_sphere):
    radii = np.array([1.5, 3.0])
    numbers = np.array([4e-5, 1e-5])
    expected = sum(sasmodels_intensity(sasmodels_sphere, r, 0.0, n) for r, n in zip(radii, numbers))
    assert np.max(np.abs(distribution_intensity(Q_NM, radii, numbers) / expected - 1)) < 1e-10


def test_distribution_of_gaussian_cells_reproduces_sphere_intensity():
    radius, sigma, concentration = 2.5, 0.3, 1e-5
    cells = np.linspace(radius - 6 * sigma, radius + 6 * sigma, 601)
    weights = np.exp(-0.5 * ((cells - radius) / sigma) ** 2)
    numbers = concentration * weights / weights.sum()
    assert np.max(np.abs(distribution_intensity(Q_NM, cells, numbers)
                         / sphere_intensity(Q_NM, radius, sigma, concentration) - 1)) < 1e-4


def test_narrow_and_sampled_quadratures_join_smoothly():
    switch = 2 * BASE_STEP_NM
    below = sphere_intensity(Q_NM, 1.7, switch * (1 - 1e-9), 1e-5)
    above = sphere_intensity(Q_NM, 1.7, switch * (1 + 1e-9), 1e-5)
    assert np.max(np.abs(below / above - 1)) < 2e-5  # largest at the near-zeros of F²


@pytest.mark.parametrize("sigma", [0.003, 1e-5])
def test_narrow_distributions_match_a_dense_trapezoid(sigma):
    radius = 1.7
    radii = np.linspace(radius - 5 * sigma, radius + 5 * sigma, 2001)
    weights = np.exp(-0.5 * ((radii - radius) / sigma) ** 2)
    dense = (sphere_form_factor(Q_NM[:, None], radii[None, :]) @ weights) / weights.sum()
    ours = sphere_intensity(Q_NM, radius, sigma, 1e-5) / molar_to_per_cm3(1e-5)
    assert np.max(np.abs(ours / dense - 1)) < 5e-5  # the dense sum is cut at ±5σ


@pytest.mark.parametrize("radius, sigma", [(2.0123, 0.2071), (0.5031, 0.01013), (1.3, 0.4), (3.1, 0.0031), (0.7, 1e-4)])
def test_grid_kernel_matches_model_and_its_derivatives(radius, sigma):
    kernel = RadiusGridKernel(Q_NM)
    value, d_radius, d_sigma = kernel.evaluate(radius, sigma)
    np.testing.assert_allclose(value, sphere_intensity(Q_NM, radius, sigma, 1.0), rtol=1e-12)
    eps = 1e-6
    fd_radius = (kernel.evaluate(radius + eps, sigma)[0] - kernel.evaluate(radius - eps, sigma)[0]) / (2 * eps)
    eps_sigma = 1e-3 if sigma < 0.005 else eps  # dI/dσ ∝ σ is tiny for narrow distributions
    fd_sigma = (kernel.evaluate(radius, sigma * (1 + eps_sigma))[0]
                - kernel.evaluate(radius, sigma * (1 - eps_sigma))[0]) / (2 * eps_sigma * sigma)
    assert np.max(np.abs(d_radius - fd_radius)) < 1e-4 * np.max(np.abs(fd_radius))
    assert np.max(np.abs(d_sigma - fd_sigma)) < 1e-3 * np.max(np.abs(fd_sigma))


def test_lazily_computed_rows_equal_eagerly_computed_ones():
    # windows in random order on one kernel, crossing its 16-row blocks and 256-row chunks
    kernel = RadiusGridKernel(Q_NM)
    step = 2 * BASE_STEP_NM
    rng = np.random.default_rng(3)
    windows = [(250, 20), (0, 1), (15, 2), (500, 300), (31, 1), (240, 40), (767, 2),
               *zip(rng.integers(0, 900, 30), rng.integers(1, 300, 30))]
    for first, count in windows:
        radii = (first + np.arange(count)) * step
        eager = sphere_form_factor(Q_NM[None, :], radii[:, None], contrast_per_cm2=1.0)
        np.testing.assert_allclose(kernel._rows(step, int(first), int(count)), eager, rtol=1e-12, atol=0)


def test_a_kept_evaluation_cannot_be_changed_by_its_callers():
    kernel = RadiusGridKernel(Q_NM)
    first = kernel.evaluate(2.0, 0.2)
    expected = first.copy()
    with pytest.raises(ValueError, match="read-only"):
        first[0] *= 2.0
    other = kernel.evaluate(2.5, 0.3)
    np.testing.assert_array_equal(kernel.evaluate(2.0, 0.2), expected)
    assert not np.array_equal(other, expected)


def test_form_factor_broadcasts_and_is_finite_at_zero():
    table = sphere_form_factor(Q_NM[:, None], np.array([0.0, 1.0, 2.0])[None, :])
    assert table.shape == (Q_NM.size, 3)
    assert np.all(table[:, 0] == 0) and np.all(np.isfinite(table))


def test_parameter_table_names_the_model_arguments():
    assert [p[0] for p in parameters][:4] == ["radius_nm", "sigma_nm", "concentration_molar", "background_cm"]


@pytest.mark.parametrize("kwargs, error", [
    (dict(radius_nm=-1.0), ValueError), (dict(radius_nm=0.0), ValueError), (dict(sigma_nm=-0.1), ValueError),
    (dict(concentration_molar=math.nan), ValueError), (dict(radius_nm="2"), TypeError), (dict(sigma_nm=True), TypeError)])
def test_sphere_intensity_rejects_bad_parameters(kwargs, error):
    arguments = dict(radius_nm=2.0, sigma_nm=0.2, concentration_molar=1e-5) | kwargs
    with pytest.raises(error, match=next(iter(kwargs))):
        sphere_intensity(Q_NM, **arguments)


def test_distribution_intensity_rejects_mismatched_cells():
    with pytest.raises(ValueError, match="same length"):
        distribution_intensity(Q_NM, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="radius_nm"):
        distribution_intensity(Q_NM, np.array([-1.0]), np.ones(1))
