"""Weighted least-squares fit of a SAXS pattern to TWO sphere populations (seed 000 §S.4.3, §S.5).

After a second injection a new, smaller population nucleates while the first keeps growing
(§S.5.1, §S.5.5); the radii of both sets over time give the growth exponent (S4.15,
``ncsynth.analysis.growth``).  Model: two Gaussian-polydisperse sphere populations (S2.1 + S2.3,
corrected prefactor, ``ncsynth.analysis.scattering``) plus one constant background::

    I(q) = c₁·⟨I(q; R₁, σ₁)⟩ + c₂·⟨I(q; R₂, σ₂)⟩ + b

weighted with 1/σ², as the one-population fit of ``ncsynth.analysis.saxs`` (whose per-q form-factor
tables, point selection, cold-start scan table and bounds are reused here).

* Variable projection: for every (R₁, σ₁, R₂, σ₂) the three linear parameters c₁, c₂, b are
  solved exactly by weighted linear least squares (SVD, so a rank-deficient pair of populations
  does not blow up), and scipy's trust-region least squares searches over
  (ln R₁, ln σ₁, ln R₂, ln σ₂) with the Kaufman Jacobian of the projected residual.
* Starts: a warm start from a previous ``BimodalFit`` (or a ``SphereFit`` of the previous frame
  for population 1 only); otherwise population 1 starts from the one-population fit and
  population 2 from the best few (R, σ) of the scan table, each scored with population 1 held,
  all three linear parameters solved, and c₂ > 0.  Population 1 is always the larger radius.
* Standard errors from the full 7-parameter covariance (JᵀWJ)⁻¹, not scaled by χ²_red (same
  convention as ``fit_pattern``).  A faint second population (c₂ ≪ c₁) is reported as fitted, with
  its (large) errors; c₂ is not clipped at 0.
* ``separable`` is False (with ``separable_reason``) when the two sets cannot be told apart: their
  radii are closer than the sum of their widths (|R₁ − R₂| < σ₁ + σ₂, i.e. ~2·mean σ), the
  covariance is singular, or a parameter of one population is correlated with one of the other
  beyond 0.98; a concentration ≤ 0 means only one population was found (among equally converged
  starts the search prefers solutions with c₁, c₂ > 0).  The one-population fit
  (``single``) and the χ² it loses (``delta_chi2``) always come with the result for comparison.

Frames that cannot be fitted (too few points, σ ≤ 0, no particle signal, no convergence) give
``BimodalFit(success=False, reason=...)``; only malformed arguments raise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ncsynth.analysis.saxs import (_LOG_LOWER, _LOG_UPPER, MIN_POINTS, WARM_RETRY_CHI2_REDUCED,
                                   SphereFit, _context_for, _select_points, fit_pattern)
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.analysis.skewed import SKEW_BOUND, skewed_model

__all__ = ["BimodalFit", "fit_bimodal", "fit_skewed_pair"]

#: Linear (c₁, c₂, b) plus nonlinear (R₁, σ₁, R₂, σ₂) parameters.
N_PARAMETERS = 7
#: Cross-population correlation beyond which the two sets are not separable.
MAX_CROSS_CORRELATION = 0.98
#: Inverse condition number of the normalised normal matrix below which it counts as singular.
MIN_INVERSE_CONDITION = 1e-12
#: Scan-table candidates for population 2 tried from a cold start.
COLD_CANDIDATES = 3
#: Candidates for population 2 closer than this in ln R to population 1 are not tried.
MIN_LOG_RADIUS_GAP = 0.15
MAX_FUNCTION_EVALUATIONS = 300

_LOWER = np.tile(_LOG_LOWER, 2)
_UPPER = np.tile(_LOG_UPPER, 2)


@dataclass(frozen=True)
class BimodalFit:
    """Result of ``fit_bimodal``: population 1 (larger radius) and 2, one background.

    Units as in ``SphereFit``: radii and widths in nm, concentrations in mol/L, background in
    cm⁻¹.  ``single`` is the one-population ``SphereFit`` of the same points and ``delta_chi2`` =
    χ²(single) − χ²(two populations); ``radius_correlation`` is the correlation of the errors of
    R₁ and R₂ (S4.15 differences them: it matters for the growth exponent).  Values are NaN when ``success`` is False; ``reason`` says why.
    """

    radius1_nm: float
    sigma1_nm: float
    concentration1_molar: float
    radius2_nm: float
    sigma2_nm: float
    concentration2_molar: float
    background_cm: float
    radius1_err_nm: float
    sigma1_err_nm: float
    concentration1_err_molar: float
    radius2_err_nm: float
    sigma2_err_nm: float
    concentration2_err_molar: float
    background_err_cm: float
    chi2_reduced: float
    n_points: int
    success: bool
    reason: str = ""
    separable: bool = False
    separable_reason: str = ""
    max_cross_correlation: float = math.nan
    single: SphereFit | None = None
    delta_chi2: float = math.nan
    radius_correlation: float = math.nan

    def model(self, q_nm):
        """Fitted I(q) in cm⁻¹: both populations (S2.1 + S2.3) plus background, at ``q_nm`` (nm⁻¹)."""
        if not self.success:
            raise ValueError(f"no model for a failed fit ({self.reason})")
        return (sphere_intensity(q_nm, self.radius1_nm, self.sigma1_nm, self.concentration1_molar)
                + sphere_intensity(q_nm, self.radius2_nm, self.sigma2_nm, self.concentration2_molar)
                + self.background_cm)

    @classmethod
    def failed(cls, reason, n_points=0, single=None):
        nan = math.nan
        return cls(*(nan,) * 15, n_points=int(n_points), success=False, reason=reason, single=single)


def gaussian_population(kernel):
    """Population model of S2.3 for :class:`_PopulationsProjection`: theta = (ln R, ln σ) gives
    the rows (⟨I⟩ per unit concentration, d/dR, d/dσ) and the chain factors (R, σ)."""
    def model(theta):
        radius, sigma = math.exp(theta[0]), math.exp(theta[1])
        return kernel.evaluate(radius, sigma), (radius, sigma)
    return model


class _PopulationsProjection:
    """Variable projection over populations: ``models[k](theta_k)`` gives population k's rows
    (its ⟨I⟩ per unit concentration, then the derivatives) and chain factors (d/dtheta_k =
    factor × row derivative); ``sizes[k]`` = len(theta_k). The concentrations and one background
    are solved exactly (SVD, so a rank-deficient pair does not blow up)."""

    def __init__(self, models, sizes, y, inv_sigma):
        self.models, self.splits = tuple(models), np.cumsum(sizes)[:-1]
        self.inv_sigma = inv_sigma
        self.yw = y * inv_sigma
        self._theta = None

    def evaluate(self, theta):
        """Cache (coefficients, weighted residual, Kaufman Jacobian (n, len(theta))) at theta."""
        if self._theta is not None and np.array_equal(theta, self._theta):
            return self._state
        outputs = [model(part) for model, part in zip(self.models, np.split(theta, self.splits))]
        columns = np.vstack([rows[0] for rows, _ in outputs] + [np.ones_like(self.inv_sigma)]) * self.inv_sigma
        u, singular, vt = np.linalg.svd(columns.T, full_matrices=False)
        rank = int(np.count_nonzero(singular > singular[0] * 1e-12))
        u, singular, vt = u[:, :rank], singular[:rank], vt[:rank]
        projected = u.T @ self.yw
        coefficients = vt.T @ (projected / singular)
        residual = self.yw - u @ projected
        # d(model)/d theta: c_k · factor · d⟨I_k⟩/d parameter, weighted; Kaufman: project out span(A).
        derivative = np.vstack([coefficients[k] * np.asarray(factors)[:, None] * rows[1:]
                                for k, (rows, factors) in enumerate(outputs)]) * self.inv_sigma
        derivative -= (derivative @ u) @ u.T
        self._theta = np.array(theta, copy=True)
        self._state = coefficients, residual, -derivative.T
        return self._state

    def residual(self, theta):
        return self.evaluate(theta)[1]

    def jacobian(self, theta):
        return self.evaluate(theta)[2]

    def cost(self, theta):
        residual = self.residual(theta)
        return float(residual @ residual)


def _search(projection, theta):
    """Trust-region least squares over theta within the bounds; (theta, χ², coefficients, converged)."""
    start = np.clip(theta, _LOWER + 1e-9, _UPPER - 1e-9)
    result = least_squares(projection.residual, start, jac=projection.jacobian,
                           bounds=(_LOWER, _UPPER), method="trf", x_scale="jac",
                           xtol=1e-10, ftol=1e-12, gtol=1e-10, max_nfev=MAX_FUNCTION_EVALUATIONS)
    coefficients = projection.evaluate(result.x)[0]
    return result.x, projection.cost(result.x), coefficients, result.status > 0


def _second_population_starts(context, projection, theta1, count=COLD_CANDIDATES):
    """Best (ln R₂, ln σ₂) of the scan table below R₁, with population 1 held at theta1 and c₂ > 0."""
    radius1, sigma1 = np.exp(theta1)
    base = np.vstack([context.kernel.evaluate(radius1, sigma1)[0], np.ones_like(projection.inv_sigma)])
    q0, _ = np.linalg.qr((base * projection.inv_sigma).T)
    rest = projection.yw - q0 @ (q0.T @ projection.yw)
    table_w = context.scan_table * projection.inv_sigma
    perpendicular = table_w - (table_w @ q0) @ q0.T
    norms = np.sqrt(np.einsum("ij,ij->i", perpendicular, perpendicular))
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = (perpendicular @ rest) / norms  # χ² drops by gain²; c₂ has the sign of gain
    gain[~np.isfinite(gain) | (gain <= 0)] = 0.0
    radii = context.scan_params[:, 0]
    gain[np.log(radius1 / radii) < MIN_LOG_RADIUS_GAP] = 0.0  # the new set is the smaller one
    starts, used = [], []
    for index in np.argsort(-gain):
        if gain[index] <= 0 or len(starts) == count:
            break
        if all(abs(math.log(radii[index] / other)) > MIN_LOG_RADIUS_GAP for other in used):
            starts.append(np.log(context.scan_params[index]))
            used.append(radii[index])
    return starts


def _guess_thetas(guess):
    """(theta of population 1 or None, full 4-theta or None) from a guess."""
    if guess is None:
        return None, None
    if isinstance(guess, BimodalFit):
        if not guess.success:
            return None, None
        pairs = [(guess.radius1_nm, guess.sigma1_nm), (guess.radius2_nm, guess.sigma2_nm)]
    elif isinstance(guess, SphereFit):
        if not guess.success:
            return None, None
        pairs = [(guess.radius_nm, guess.sigma_nm)]
    elif (isinstance(guess, (tuple, list)) and len(guess) == 2
          and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in guess)):
        pairs = [tuple(p) for p in guess]
    else:
        raise TypeError("guess must be a BimodalFit, a SphereFit, ((radius1_nm, sigma1_nm), "
                        f"(radius2_nm, sigma2_nm)) or None, got {guess!r}")
    thetas = []
    for radius, sigma in pairs:
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v) for v in (radius, sigma)) \
                or not (radius > 0 and sigma >= 0):
            raise ValueError(f"guess needs radius_nm > 0 and sigma_nm >= 0, got {radius!r}, {sigma!r}")
        thetas.append(np.clip(np.log([radius, max(sigma, math.exp(_LOG_LOWER[1]))]), _LOG_LOWER, _LOG_UPPER))
    return thetas[0], (np.concatenate(thetas) if len(thetas) == 2 else None)


def fit_bimodal(q_nm, intensity_cm, sigma_cm, guess=None, q_range_nm=None) -> BimodalFit:
    """Fit two Gaussian-polydisperse sphere populations plus a background (S2.1, S2.3), 1/σ² weights.

    ``q_nm``: scattering vector (nm⁻¹); ``intensity_cm``, ``sigma_cm``: absolute intensity and its
    standard deviation (cm⁻¹); ``guess``: the previous frame's ``BimodalFit`` (warm start of both
    populations), a ``SphereFit`` (population 1 only; population 2 from a scan), a pair of
    (radius_nm, sigma_nm) pairs, or None for a cold start; ``q_range_nm``: optional (min, max).

    Points with non-finite q, I or σ are left out; ``n_points`` counts the rest.  Raises
    ValueError/TypeError only for malformed arguments.
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    theta1_guess, theta_guess = _guess_thetas(guess)
    n = q.size
    needed = MIN_POINTS + N_PARAMETERS - 4
    if n < needed:
        return BimodalFit.failed(f"only {n} usable points, need at least {needed}", n)
    if np.any(s <= 0):
        return BimodalFit.failed(f"sigma_cm <= 0 at {np.count_nonzero(s <= 0)} points", n)

    single_guess = guess.single if isinstance(guess, BimodalFit) and guess.single is not None else None
    if single_guess is None and theta1_guess is not None:
        single_guess = tuple(np.exp(theta1_guess))
    single = fit_pattern(q, y, s, guess=single_guess)
    if not single.success:
        return BimodalFit.failed(f"one-population fit failed: {single.reason}", n, single)

    context = _context_for(q)
    gaussian = gaussian_population(context.kernel)
    projection = _PopulationsProjection((gaussian, gaussian), (2, 2), y, 1.0 / s)
    dof = n - N_PARAMETERS
    best = None
    if theta_guess is not None:
        best = _search(projection, theta_guess)
    if best is None or not best[3] or best[1] / dof > WARM_RETRY_CHI2_REDUCED:
        theta1 = np.log([single.radius_nm, single.sigma_nm])
        if theta1_guess is not None and theta_guess is None:
            theta1 = theta1_guess
        starts = [np.concatenate([theta1, theta2]) for theta2 in _second_population_starts(context, projection, theta1)]
        candidates = [best] + [_search(projection, start) for start in starts]
        candidates = [c for c in candidates if c is not None and math.isfinite(c[1])]
        # Prefer solutions with both concentrations positive; among them the lowest χ².
        best = min(candidates, key=lambda c: (not np.all(c[2][:2] > 0), c[1])) if candidates else None
    if best is None:
        return BimodalFit.failed("no second population improves on the one-population fit "
                                 "(no scan candidate with c2 > 0)", n, single)
    theta, cost, coefficients, converged = best
    if not converged:
        return BimodalFit.failed(f"no convergence in {MAX_FUNCTION_EVALUATIONS} evaluations", n, single)
    return _result(context.kernel, projection.inv_sigma, theta, cost, coefficients, n, single)


def fit_skewed_pair(q_nm, intensity_cm, sigma_cm, start: BimodalFit, q_range_nm=None):
    """Both sets as Pearson III populations (:mod:`~ncsynth.analysis.skewed`), the alternative
    to two Gaussians for the mean radii of a bimodal frame (§S.5).

    A set that is still nucleating, or ripening, has a tail of small crystals that scatter
    little (V²): a Gaussian then sits on the bulk and its mean runs above the set's number
    mean, by up to several standard errors in a simulated flask, while χ² cannot tell the two
    models apart. ``start``: the frame's successful :class:`BimodalFit` (radii, widths, the
    search's bounds: set 1 above set 2's Gaussian radius, set 2 below set 1's). Four cold starts
    (skewness ±0.5 each; a warm start from the previous frame kept a wrong skewness). Returns ``(radius1_nm, radius2_nm, theta)`` with theta = (ln R₁, ln σ₁, ln R₂, ln σ₂, γ₁,
    γ₂), or NaNs and None when no search converges.
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    skewed = skewed_model(_context_for(q).kernel)
    projection = _PopulationsProjection((skewed, skewed), (3, 3), y, 1.0 / s)
    log_r1, log_r2 = math.log(start.radius1_nm), math.log(start.radius2_nm)
    lower = np.array([log_r2, math.log(0.005 * start.radius1_nm), -SKEW_BOUND,
                      math.log(0.1), math.log(1e-3), -SKEW_BOUND])
    upper = np.array([_LOG_UPPER[0], log_r1, SKEW_BOUND, log_r1, _LOG_UPPER[0], SKEW_BOUND])
    widths = [math.log(max(start.sigma1_nm, 0.02 * start.radius1_nm)),
              math.log(max(start.sigma2_nm, 0.02 * start.radius2_nm))]
    starts = [np.array([log_r1, widths[0], g1, log_r2, widths[1], g2])
              for g1 in (-0.5, 0.5) for g2 in (-0.5, 0.5)]
    results = [least_squares(projection.residual, np.clip(theta, lower + 1e-6, upper - 1e-6),
                             jac=projection.jacobian, bounds=(lower, upper), method="trf",
                             x_scale="jac", max_nfev=MAX_FUNCTION_EVALUATIONS) for theta in starts]
    converged = [r for r in results if r.status > 0]
    if not converged:
        return math.nan, math.nan, None
    best = min(converged, key=lambda r: r.cost)
    return math.exp(best.x[0]), math.exp(best.x[3]), best.x


def _result(kernel, inv_sigma, theta, cost, coefficients, n, single):
    """Order the populations by radius, attach errors and the separability verdict."""
    r1, s1, r2, s2 = np.exp(theta)
    c1, c2, background = (float(v) for v in coefficients)
    if r2 > r1:
        r1, s1, c1, r2, s2, c2 = r2, s2, c2, r1, s1, c1
    if not _LOG_LOWER[0] + 1e-6 < math.log(r1) < _LOG_UPPER[0] - 1e-6:
        return BimodalFit.failed(f"the larger population's radius ran to the bound ({r1:.3g} nm)", n, single)
    errors, correlation, singular = _covariance(kernel, inv_sigma, (r1, s1, c1), (r2, s2, c2))
    cross = float(np.max(np.abs(correlation[:3, 3:6]))) if correlation is not None else math.nan
    radius_correlation = float(correlation[0, 3]) if correlation is not None else math.nan
    reason = _separability(r1, s1, c1, r2, s2, c2, singular, cross)
    single_chi2 = single.chi2_reduced * (n - 4)
    return BimodalFit(
        float(r1), float(s1), c1, float(r2), float(s2), c2, background,
        errors[0], errors[1], errors[2], errors[3], errors[4], errors[5], errors[6],
        chi2_reduced=float(cost / (n - N_PARAMETERS)), n_points=n, success=True,
        separable=not reason, separable_reason=reason, max_cross_correlation=cross,
        single=single, delta_chi2=float(single_chi2 - cost), radius_correlation=radius_correlation)


def _separability(r1, s1, c1, r2, s2, c2, singular, cross):
    """Empty string when the populations are separable, else why not."""
    if not (c1 > 0 and c2 > 0):
        return f"only one population: concentrations c1 = {c1:.3g}, c2 = {c2:.3g} mol/L, one <= 0"
    if r2 <= math.exp(_LOG_LOWER[0]) * (1 + 1e-6):
        return f"the second population is not resolved: its radius ran to the bound {r2:.3g} nm"
    if abs(r1 - r2) < s1 + s2:
        return (f"the populations overlap: |R1 - R2| = {abs(r1 - r2):.3g} nm < sigma1 + sigma2 = "
                f"{s1 + s2:.3g} nm")
    if singular:
        return "the covariance is singular: the pattern does not determine both populations"
    if cross > MAX_CROSS_CORRELATION:
        return f"parameters of the two populations are correlated at {cross:.3f} > {MAX_CROSS_CORRELATION}"
    return ""


def _covariance(kernel, inv_sigma, population1, population2):
    """Standard errors of (R₁, σ₁, c₁, R₂, σ₂, c₂, b), the correlation matrix, and a singular flag.

    From (JᵀWJ)⁻¹ of the full 7-parameter model, columns normalised before inversion.
    """
    rows = []
    for radius, sigma, concentration in (population1, population2):
        model = kernel.evaluate(radius, sigma)
        rows += [concentration * model[1], concentration * model[2], model[0]]
    rows.append(np.ones_like(inv_sigma))
    jac = np.array(rows) * inv_sigma
    norms = np.sqrt(np.einsum("ij,ij->i", jac, jac))
    if not np.all(norms > 0):
        return (math.inf,) * N_PARAMETERS, None, True
    scaled = jac / norms[:, None]
    normal = scaled @ scaled.T
    eigenvalues = np.linalg.eigvalsh(normal)
    if not eigenvalues[0] > MIN_INVERSE_CONDITION * eigenvalues[-1]:
        return (math.inf,) * N_PARAMETERS, None, True
    inverse = np.linalg.inv(normal)
    diagonal = np.sqrt(np.diag(inverse))
    correlation = inverse / np.outer(diagonal, diagonal)
    errors = tuple(float(v) for v in diagonal / norms)
    return errors, correlation, False
