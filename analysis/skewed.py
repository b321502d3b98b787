"""One skewed population of spheres: the alternative to two populations (seed 000 §S.2.2, §S.5).

Nucleation leaves a tail of small crystals and ripening one of dissolving crystals: the flask's
size distribution is often skewed (skewness ~ −2 in the simulated flask), and a skewed single
population can look like two Gaussian ones. Model (S2.1 with S2.3's Gaussian replaced by a
Pearson type III distribution, a gamma distribution shifted and scaled to mean R, standard
deviation σ and skewness γ; γ = 0 is the Gaussian of S2.3, γ < 0 a tail towards small radii,
γ > 0 the Schulz-like tail towards large ones)::

    I(q) = c·N_A·⟨P_sphere(q)⟩_{R, σ, γ} + b

weighted with 1/σ², averaged on the radius grids of :mod:`~ncsynth.analysis.scattering` (step
≤ σ/8 and under the Nyquist step of V²F²) with each node weighted by the probability of its
cell (:func:`skewed_radius_weights`: smooth in R, σ and γ also where the support ends), c and b
solved exactly for each (ln R, ln σ, γ) (variable projection), Levenberg–Marquardt over those
three with the Kaufman Jacobian from the weights' derivatives (the same search as the Gaussian
fit, :func:`~ncsynth.analysis.fit_projection.levenberg_marquardt`).
``fit_skewed`` warm-starts from a Gaussian :class:`~ncsynth.analysis.saxs.SphereFit`.
Units: nm, mol/L, cm⁻¹.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.optimize import least_squares

from ncsynth.analysis.fit_projection import VariableProjection, levenberg_marquardt
from ncsynth.analysis.saxs import SphereFit, _context_for, _select_points
from ncsynth.analysis.scattering import BASE_STEP_NM

__all__ = ["SkewedFit", "fit_skewed", "skewed_radius_weights"]

#: Search bounds of the skewness γ: below 2 (an exponential tail, whose density jumps at its
#: end) the density falls to 0 at the end of its support and the model is smooth in γ.
SKEW_BOUND = 1.8
#: Skewness of the two cold starts (the distribution's sign of skew is not known).
COLD_SKEWNESS = (-0.5, 0.5)
#: Linear (c, b) plus nonlinear (R, σ, γ) parameters.
N_PARAMETERS = 5
MAX_ITERATIONS = 100
#: A warm start is kept when it ends at most this far in χ² above the Gaussian fit (which the
#: skewed model contains at γ = 0): within one standard error of it; else both cold starts run.
WARM_DELTA_CHI2 = 1.0
_SPAN_SIGMAS = 8.0


@dataclass(frozen=True)
class SkewedFit:
    """Result of ``fit_skewed``: mean radius, standard deviation and skewness of one population."""

    radius_nm: float
    sigma_nm: float
    skewness: float
    concentration_molar: float
    background_cm: float
    chi2: float
    n_points: int
    success: bool
    reason: str = ""

    @property
    def chi2_reduced(self) -> float:
        return self.chi2 / (self.n_points - N_PARAMETERS)

    @classmethod
    def failed(cls, reason, n_points=0):
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, nan, int(n_points), False, reason)


#: Taylor coefficients (in u) of H(u) = (ln(1+u) − u)/u², used below |u| = _SERIES_U, where
#: the closed form loses digits (relative error of either way below 1e-11 there).
_SERIES = np.array([(-1.0) ** (n + 1) / (n + 2) for n in range(10)])
_SERIES_U = 0.05


def _series(u):
    """H(u) by Horner's rule."""
    total = np.full(u.shape, _SERIES[-1])
    for coefficient in _SERIES[-2::-1]:
        total *= u
        total += coefficient
    return total


def pearson3_log_density(z, skewness):
    """ln of the Pearson III density of skewness γ at z = (r − R)/σ, up to a constant in z,
    inside the support 1 + γz/2 > 0.

    With a = 4/γ² and u = γz/2 the density is ∝ (1 + u)^(a−1)·e^(−a·u) (a gamma distribution of
    shape a, shifted and scaled to mean 0, variance 1), so L = z²·H(u) − ln(1 + u) with H as at
    ``_SERIES``: smooth through γ = 0, where L = −z²/2 (the Gaussian of S2.3).
    """
    z = np.asarray(z, dtype=float)
    u = 0.5 * skewness * z
    small = np.abs(u) < _SERIES_U
    with np.errstate(divide="ignore", invalid="ignore"):
        log1p = np.log1p(u)
        h = (log1p - u) / (u * u)
    if small.any():
        h[small] = _series(u[small])
    return z * z * h - log1p


def skewed_radius_weights(radius_nm, sigma_nm, skewness, q_max_nm):
    """``(step_nm, first_index, weights)`` of the Pearson III distribution on the grid r = k·step.

    Each node's weight is the probability of its cell [r − step/2, r + step/2] ∩ [R − 8σ, R + 8σ]
    (differences of the distribution function, :func:`pearson3_cdf`), r > 0, normalised, so
    ⟨f⟩ = Σ wᵢ f(rᵢ): ``weights`` has shape (4, m), the weights and their derivatives d/dR, d/dσ
    (nm⁻¹; from the density at the cells' edges) and d/dγ (central difference, ±1e-6); all 0
    when no cell reaches into the support. The window's ends cut the outer cells, so a node
    enters and leaves it smoothly too.

    Cell probabilities, not the density at the nodes: the density's end of support (at
    R + 2σ/|γ| for γ < 0) falls as (1 + γz/2)^(4/γ² − 1), with an infinite slope for |γ| > √2,
    and weights taken from the density at the nodes jumped in slope each time that end crossed
    a node: the χ² of a skewed flask (γ at the bound −1.8) had a cusp every ~0.003 nm in R, the
    search stopped in one of them, 5 in χ² above the minimum, a different one for the last bits
    of another CPU's vector maths (issue 18's CI failure on an AVX-512 machine). A cell's
    probability grows smoothly from 0 as the end enters it.
    """
    max_step = min(sigma_nm / 8.0, 2.0 * math.pi / (2.0 * q_max_nm + 8.0 / sigma_nm))
    level = max(0, math.floor(math.log2(max_step / BASE_STEP_NM)))
    step = BASE_STEP_NM * 2.0**level
    first = max(math.ceil((radius_nm - _SPAN_SIGMAS * sigma_nm) / step - 0.5), 1)
    last = max(math.floor((radius_nm + _SPAN_SIGMAS * sigma_nm) / step + 0.5), first + 1)
    z = ((np.arange(first, last + 2) - 0.5) * step - radius_nm) / sigma_nm  # the cells' edges
    cut = np.abs(z) > _SPAN_SIGMAS  # the window's ends cut the outer cells: fixed in z
    z = np.clip(z, -_SPAN_SIGMAS, _SPAN_SIGMAS)
    mass = np.diff(pearson3_cdf(z, skewness))
    inside = np.flatnonzero(mass > 0.0)
    if inside.size == 0:
        return step, first, np.zeros((4, mass.size))
    cells = slice(inside[0], inside[-1] + 1)
    edges = slice(inside[0], inside[-1] + 2)
    z = z[edges]
    density = pearson3_density(z, skewness)
    density[cut[edges]] = 0.0  # a cut edge does not move with R or σ
    d_mass = np.stack([-np.diff(density) / sigma_nm, -np.diff(z * density) / sigma_nm,
                       (np.diff(pearson3_cdf(z, skewness + _SKEW_DELTA))
                        - np.diff(pearson3_cdf(z, skewness - _SKEW_DELTA))) / (2 * _SKEW_DELTA)])
    mass = mass[cells]
    total = mass.sum()
    weights = np.empty((4, mass.size))
    weights[0] = mass / total
    weights[1:] = (d_mass - weights[0] * d_mass.sum(axis=1)[:, None]) / total
    return step, first + int(inside[0]), weights


#: Step in γ of the central difference d/dγ of the cell probabilities.
_SKEW_DELTA = 1e-6
#: Below this |γ| (a = 4/γ² above 4.4e5) the distribution function is the Edgeworth series
#: (within 2e-10 of the incomplete gamma function here): SciPy's incomplete gamma function
#: jumps by up to 3e-6 at |x − a| = 4.5√a for a above ~1e7, where it changes method.
_EDGEWORTH_SKEW = 3e-3


def pearson3_cdf(z, skewness):
    """P(Z ≤ z) of the Pearson III distribution of mean 0, variance 1 and skewness γ.

    With a = 4/γ², x = a·(1 + γz/2) is gamma-distributed of shape a: the regularised lower
    (γ > 0) or upper (γ < 0) incomplete gamma function of x, 0 or 1 beyond the support. Below
    |γ| = ``_EDGEWORTH_SKEW`` the Edgeworth series to second order (skewness γ, excess
    kurtosis 6/a = 1.5γ²), the Gaussian's at γ = 0.
    """
    z = np.asarray(z, dtype=float)
    if abs(skewness) < _EDGEWORTH_SKEW:
        z2 = z * z
        density = np.exp(-0.5 * z2) / math.sqrt(2.0 * math.pi)
        return special.ndtr(z) - density * (
            skewness / 6.0 * (z2 - 1.0) + skewness**2 * (0.0625 * z * (z2 - 3.0)
                                                         + z * (z2 * (z2 - 10.0) + 15.0) / 72.0))
    a = 4.0 / skewness**2
    x = np.maximum(a + 2.0 * z / skewness, 0.0)  # a·(1 + γz/2)
    return special.gammainc(a, x) if skewness > 0 else special.gammaincc(a, x)


def pearson3_density(z, skewness):
    """The density of :func:`pearson3_cdf` at z: exp(L(z)) (``pearson3_log_density``) times
    √a·aᵃ⁻¹·e⁻ᵃ/Γ(a), 0 outside the support; the Stirling series of Γ keeps the constant exact
    for large a (small γ), where it tends to 1/√(2π). Below |γ| = ``_EDGEWORTH_SKEW`` it is the
    exact density, not the derivative of the Edgeworth series there (they differ by ~γ³)."""
    z = np.asarray(z, dtype=float)
    inside = 0.5 * skewness * z > -1.0
    density = np.zeros(z.shape)
    if not inside.any():
        return density
    if skewness == 0.0:
        log_norm = -0.5 * math.log(2.0 * math.pi)
    else:
        a = 4.0 / skewness**2
        if a < 10.0:
            log_norm = (a - 0.5) * math.log(a) - a - math.lgamma(a)
        else:  # ln Γ(a) = (a − ½) ln a − a + ½ ln 2π + 1/(12a) − 1/(360a³) + 1/(1260a⁵) − 1/(1680a⁷)
            inverse = 1.0 / a
            log_norm = -0.5 * math.log(2.0 * math.pi) - inverse * (
                1.0 / 12.0 - inverse**2 * (1.0 / 360.0 - inverse**2 * (1.0 / 1260.0 - inverse**2 / 1680.0)))
    density[inside] = np.exp(log_norm + pearson3_log_density(z[inside], skewness))
    return density


def skewed_intensity(kernel, radius_nm, sigma_nm, skewness):
    """(4, n_q): ⟨I(q)⟩ per unit concentration (cm⁻¹ per mol/L) of one Pearson III population
    (S2.1) on the q of ``kernel`` (a :class:`~ncsynth.analysis.scattering.RadiusGridKernel`),
    and its derivatives d/dR, d/dσ (per nm) and d/dγ."""
    step, first, weights = skewed_radius_weights(radius_nm, sigma_nm, skewness, kernel.q_max_nm)
    return kernel.scale * (weights @ kernel._rows(step, first, weights.shape[1]))


def skewed_model(kernel):
    """``model(theta)`` of :class:`~ncsynth.analysis.fit_projection.VariableProjection` for
    theta = (ln R, ln σ, γ)."""
    def model(theta):
        radius, sigma = math.exp(theta[0]), math.exp(theta[1])
        return skewed_intensity(kernel, radius, sigma, theta[2]), (radius, sigma, 1.0)
    return model


def _search(q, y, s, start_radius_nm, sigma0_nm, skew, lower, upper):
    """The Levenberg–Marquardt search from (R, σ, γ) = (``start_radius_nm``, ``sigma0_nm``,
    ``skew``): (theta, χ², c, b, converged). A module function of plain arguments, so a cold
    start can run in another process and give the same result."""
    projection = VariableProjection(skewed_model(_context_for(q).kernel), y, 1.0 / s)
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    theta0 = np.clip([math.log(start_radius_nm), math.log(sigma0_nm), skew], lower + 1e-6, upper - 1e-6)
    return levenberg_marquardt(projection, theta0, lower, upper, max_iterations=MAX_ITERATIONS)


def fit_skewed(q_nm, intensity_cm, sigma_cm, start: SphereFit, guess: SkewedFit | None = None,
               q_range_nm=None, mapper=map) -> SkewedFit:
    """Fit one Pearson III population plus background (see module), started at the Gaussian ``start``.

    ``guess``: the previous frame's ``SkewedFit`` (one warm start from its R, σ and γ instead of
    two cold ones from the Gaussian's R and σ with γ = ±0.5; those run when the warm start ends
    more than ``WARM_DELTA_CHI2`` above the Gaussian's χ²). ``mapper`` runs the two cold
    searches (``map``; a process pool's ``map`` runs them at once, with the same results).
    Returns ``success=False`` with a reason when ``start`` failed or no search converges.
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    if not start.success or q.size <= N_PARAMETERS or np.any(s <= 0):
        return SkewedFit.failed(f"no Gaussian start or too few points ({start.reason})", q.size)
    sigma0 = max(start.sigma_nm, 0.02 * start.radius_nm)
    lower = [math.log(0.1), math.log(0.005 * start.radius_nm), -SKEW_BOUND]
    upper = [math.log(60.0), math.log(start.radius_nm), SKEW_BOUND]
    gaussian_chi2 = start.chi2_reduced * (q.size - 4)

    def searches(starts, run=map):
        n = len(starts)
        return list(run(_search, [q] * n, [y] * n, [s] * n, *zip(*starts), [lower] * n, [upper] * n))

    def reached(results):  # converged at or below the Gaussian's χ² (+ WARM_DELTA_CHI2)
        return [r for r in results if r[4] and r[1] <= gaussian_chi2 + WARM_DELTA_CHI2]

    results = searches([(guess.radius_nm, guess.sigma_nm, guess.skewness)]) \
        if guess is not None and guess.success else []
    if not reached(results):
        # a poor warm start: both cold ones
        results += searches([(start.radius_nm, sigma0, skew) for skew in COLD_SKEWNESS], mapper)
    if not reached(results):
        # from the Gaussian itself (γ = 0, inside the model): a warm start stuck at the skewness
        # bound 4560 above the Gaussian's χ² while both cold ones crawled along that bound
        # without converging was returned as the skewed fit (tests/test_skewed_fit.py)
        results += searches([(start.radius_nm, sigma0, 0.0)])
    converged = [r for r in results if r[4] and math.isfinite(r[1])]
    if not converged:
        return SkewedFit.failed(f"no convergence in {MAX_ITERATIONS} iterations", q.size)
    theta, chi2, c, b, _ = min(converged, key=lambda r: r[1])
    if chi2 > gaussian_chi2 + WARM_DELTA_CHI2:
        return SkewedFit.failed(f"no search reached the Gaussian's chi2 {gaussian_chi2:.4g} "
                                f"(best {chi2:.4g}), which the skewed model contains", q.size)
    return SkewedFit(math.exp(theta[0]), math.exp(theta[1]), float(theta[2]), float(c), float(b),
                     float(chi2), q.size, True)


def fit_skewed_and_gaussian(q_nm, intensity_cm, sigma_cm, start, q_range_nm=None):
    """Two populations, the larger (the first set) Pearson III and the smaller Gaussian (S2.3).

    ``start``: a successful :class:`~ncsynth.analysis.bimodal.BimodalFit` of the same frame.
    Returns (radius1_nm, radius2_nm, skewness1), the first radius being the first set's mean;
    NaNs when the search does not converge. The alternative model of a two-population frame:
    the first set keeps the tail of small crystals of its own nucleation, which a Gaussian
    cannot hold and the new set's Gaussian then takes up.
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    kernel = _context_for(q).kernel
    inv_sigma = 1.0 / s
    yw = y * inv_sigma

    def residual(theta):  # c₁, c₂ and b solved exactly (variable projection)
        r1, s1, r2, s2 = np.exp(theta[:4])
        columns = np.vstack([skewed_intensity(kernel, r1, s1, theta[4])[0],
                             kernel.evaluate(r2, s2)[0], np.ones_like(s)]) * inv_sigma
        coefficients, *_ = np.linalg.lstsq(columns.T, yw, rcond=None)
        return yw - coefficients @ columns

    log_r1 = math.log(start.radius1_nm)
    lower = [math.log(start.radius2_nm), math.log(0.005 * start.radius1_nm), math.log(0.1),
             math.log(1e-3), -SKEW_BOUND]
    upper = [math.log(60.0), log_r1, log_r1, math.log(60.0), SKEW_BOUND]
    results = []
    for skew in COLD_SKEWNESS:
        theta0 = np.clip([log_r1, math.log(max(start.sigma1_nm, 0.02 * start.radius1_nm)),
                          math.log(start.radius2_nm), math.log(max(start.sigma2_nm, 1e-3)), skew],
                         np.array(lower) + 1e-6, np.array(upper) - 1e-6)
        results.append(least_squares(residual, theta0, bounds=(lower, upper), method="trf",
                                     x_scale=[0.02, 0.2, 0.05, 0.2, 0.5], diff_step=1e-4,
                                     max_nfev=MAX_ITERATIONS))
    converged = [r for r in results if r.status > 0]
    if not converged:
        return math.nan, math.nan, math.nan
    best = min(converged, key=lambda r: r.cost)
    return math.exp(best.x[0]), math.exp(best.x[2]), float(best.x[4])

