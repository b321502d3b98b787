"""One skewed population of spheres: the alternative to two populations (seed 000 §S.2.2, §S.5).

Nucleation leaves a tail of small crystals and ripening one of dissolving crystals: the flask's
size distribution is often skewed (skewness ~ −2 in the simulated flask), and a skewed single
population can look like two Gaussian ones. Model (S2.1 with S2.3's Gaussian replaced by a
Pearson type III distribution, a gamma distribution shifted and scaled to mean R, standard
deviation σ and skewness γ; γ = 0 is the Gaussian of S2.3, γ < 0 a tail towards small radii,
γ > 0 the Schulz-like tail towards large ones)::

    I(q) = c·N_A·⟨P_sphere(q)⟩_{R, σ, γ} + b

weighted with 1/σ², integrated on the radius grids of :mod:`~ncsynth.analysis.scattering`
(trapezoid, step ≤ σ/8 and under the Nyquist step of V²F²), c and b solved exactly for each
(ln R, ln σ, γ) (variable projection), trust-region least squares over those three.
``fit_skewed`` warm-starts from a Gaussian :class:`~ncsynth.analysis.saxs.SphereFit`.
Units: nm, mol/L, cm⁻¹.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import gammaln

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
MAX_EVALUATIONS = 100
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


def pearson3_pdf(r, mean, std, skewness):
    """Pearson III density (a gamma distribution of shape 4/γ² shifted and scaled to ``mean``,
    ``std`` and skewness γ; the normal density for |γ| < 1e-4), as ``scipy.stats.pearson3``."""
    z = (np.asarray(r, dtype=float) - mean) / std
    if abs(skewness) < 1e-4:
        return np.exp(-0.5 * z * z) / (std * math.sqrt(2.0 * math.pi))
    shape = 4.0 / skewness**2
    x = shape + math.copysign(1.0, skewness) * z * math.sqrt(shape)   # gamma variate, >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pdf = (shape - 1.0) * np.log(x) - x - gammaln(shape)
    return np.where(x > 0, np.exp(log_pdf), 0.0) * math.sqrt(shape) / std


def skewed_radius_weights(radius_nm, sigma_nm, skewness, q_max_nm):
    """``(step_nm, first_index, weights)`` of the Pearson III distribution on the grid r = k·step.

    Normalised trapezoid weights over [R − 8σ, R + 8σ] ∩ r > 0, so ⟨f⟩ = Σ wᵢ f(rᵢ).
    """
    max_step = min(sigma_nm / 8.0, 2.0 * math.pi / (2.0 * q_max_nm + 8.0 / sigma_nm))
    level = max(0, math.floor(math.log2(max_step / BASE_STEP_NM)))
    step = BASE_STEP_NM * 2.0**level
    first = max(math.ceil((radius_nm - _SPAN_SIGMAS * sigma_nm) / step), 1)
    last = max(math.floor((radius_nm + _SPAN_SIGMAS * sigma_nm) / step), first + 1)
    density = pearson3_pdf(np.arange(first, last + 1) * step, radius_nm, sigma_nm, skewness)
    total = density.sum()
    return step, first, density / total if total > 0 else density


def skewed_intensity(kernel, radius_nm, sigma_nm, skewness):
    """⟨I(q)⟩ per unit concentration (cm⁻¹ per mol/L) of one Pearson III population (S2.1) on
    the q of ``kernel`` (a :class:`~ncsynth.analysis.scattering.RadiusGridKernel`)."""
    step, first, weights = skewed_radius_weights(radius_nm, sigma_nm, skewness, kernel.q_max_nm)
    return kernel.scale * (weights @ kernel._rows(step, first, weights.size))


class _Projection:
    """Variable projection: ``populations(theta)`` gives each population's model per unit
    concentration; their concentrations and the background are solved exactly."""

    def __init__(self, populations, y, inv_sigma):
        self.populations, self.inv_sigma, self.yw = populations, inv_sigma, y * inv_sigma

    def solve(self, theta):
        columns = np.vstack([*self.populations(theta), np.ones_like(self.inv_sigma)]) * self.inv_sigma
        coefficients, *_ = np.linalg.lstsq(columns.T, self.yw, rcond=None)
        return coefficients, self.yw - coefficients @ columns

    def residual(self, theta):
        return self.solve(theta)[1]


def _one_population(kernel, y, s) -> _Projection:
    return _Projection(lambda theta: [skewed_intensity(kernel, math.exp(theta[0]),
                                                       math.exp(theta[1]), theta[2])], y, 1.0 / s)


def _search(q, y, s, start_radius_nm, sigma0_nm, skew, lower, upper):
    """The trust-region search from (R, σ, γ) = (``start_radius_nm``, ``sigma0_nm``, ``skew``);
    a module function of plain arguments, so a cold start can run in another process and give
    the same result."""
    projection = _one_population(_context_for(q).kernel, y, s)
    theta0 = np.clip([math.log(start_radius_nm), math.log(sigma0_nm), skew],
                     np.array(lower) + 1e-6, np.array(upper) - 1e-6)
    return least_squares(projection.residual, theta0, bounds=(lower, upper), method="trf",
                         x_scale=[0.05, 0.2, 0.5], diff_step=1e-4, max_nfev=MAX_EVALUATIONS)


def fit_skewed(q_nm, intensity_cm, sigma_cm, start: SphereFit, guess: SkewedFit | None = None,
               q_range_nm=None, mapper=map) -> SkewedFit:
    """Fit one Pearson III population plus background (see module), started at the Gaussian ``start``.

    ``guess``: the previous frame's ``SkewedFit`` (one warm start from its skewness instead of
    two cold ones, γ = ±0.5). ``mapper`` runs the two cold searches (``map``; a process
    pool's ``map`` runs them at once, with the same results). Returns ``success=False`` with a
    reason when ``start`` failed or the search does not converge.
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    if not start.success or q.size <= N_PARAMETERS or np.any(s <= 0):
        return SkewedFit.failed(f"no Gaussian start or too few points ({start.reason})", q.size)
    sigma0 = max(start.sigma_nm, 0.02 * start.radius_nm)
    lower = [math.log(0.1), math.log(0.005 * start.radius_nm), -SKEW_BOUND]
    upper = [math.log(60.0), math.log(start.radius_nm), SKEW_BOUND]
    gaussian_cost = 0.5 * start.chi2_reduced * (q.size - 4)

    def searches(skews, run=map):
        n = len(skews)
        return list(run(_search, [q] * n, [y] * n, [s] * n, [start.radius_nm] * n,
                        [sigma0] * n, skews, [lower] * n, [upper] * n))

    results = searches([guess.skewness]) if guess is not None and guess.success else []
    if not (results and results[0].status > 0 and results[0].cost <= gaussian_cost):
        results += searches(list(COLD_SKEWNESS), mapper)  # a poor warm start: both cold ones
    converged = [r for r in results if r.status > 0]
    if not converged:
        return SkewedFit.failed(f"no convergence in {MAX_EVALUATIONS} evaluations", q.size)
    best = min(converged, key=lambda r: r.cost)
    (c, b), residual = _one_population(_context_for(q).kernel, y, s).solve(best.x)
    return SkewedFit(math.exp(best.x[0]), math.exp(best.x[1]), float(best.x[2]), float(c), float(b),
                     float(residual @ residual), q.size, True)


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

    def populations(theta):
        r1, s1, r2, s2 = np.exp(theta[:4])
        return [skewed_intensity(kernel, r1, s1, theta[4]), kernel.evaluate(r2, s2)[0]]

    projection = _Projection(populations, y, 1.0 / s)
    log_r1 = math.log(start.radius1_nm)
    lower = [math.log(start.radius2_nm), math.log(0.005 * start.radius1_nm), math.log(0.1),
             math.log(1e-3), -SKEW_BOUND]
    upper = [math.log(60.0), log_r1, log_r1, math.log(60.0), SKEW_BOUND]
    results = []
    for skew in COLD_SKEWNESS:
        theta0 = np.clip([log_r1, math.log(max(start.sigma1_nm, 0.02 * start.radius1_nm)),
                          math.log(start.radius2_nm), math.log(max(start.sigma2_nm, 1e-3)), skew],
                         np.array(lower) + 1e-6, np.array(upper) - 1e-6)
        results.append(least_squares(projection.residual, theta0, bounds=(lower, upper), method="trf",
                                     x_scale=[0.02, 0.2, 0.05, 0.2, 0.5], diff_step=1e-4,
                                     max_nfev=MAX_EVALUATIONS))
    converged = [r for r in results if r.status > 0]
    if not converged:
        return math.nan, math.nan, math.nan
    best = min(converged, key=lambda r: r.cost)
    return math.exp(best.x[0]), math.exp(best.x[2]), float(best.x[4])

