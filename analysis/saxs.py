"""Weighted least-squares fit of one SAXS pattern to polydisperse spheres (seed 000 §S.2.2).

Model: eq. S2.1 with the Gaussian average S2.3 (corrected prefactor, see
``ncsynth.analysis.scattering``) plus a constant background, weighted with 1/σ² as in §S.2.2.

How it is fast (about half a millisecond for a warm-started 500-point pattern):

* the concentration c and the background b enter linearly, so for every (R0, σ) they are solved
  exactly by weighted linear least squares (variable projection) and the Levenberg–Marquardt
  search runs over (ln R0, ln σ) only, with the Kaufman Jacobian of the projected residual
  (``ncsynth.analysis.fit_projection``: three matrix products over the points per evaluation,
  the 2 × 2 algebra in plain floats);
* V²F²(q r) is tabulated once per q array on fixed radius grids (``RadiusGridKernel``, cached on
  the q values), so a model evaluation with its analytic derivatives is one small matrix product;
* a cold start ranks a scan table of (R0, σ) by projected χ² (three table products) and searches
  from the best entry, the next one only when that search ends above χ²_red 2.

Standard errors come from the full 4-parameter covariance (JᵀWJ)⁻¹ at the optimum and are NOT
scaled by the reduced χ²: the σ given with the pattern are absolute counting errors (§S.2.2),
tests/test_saxs_fit.py checks that the scatter of fitted values over noisy patterns matches these
errors, and a χ²_red far from 1 (reported) says that the model or the σ are off rather than
being silently folded into the errors. A faint pattern does not resolve the width (σ is then
an upper limit): R and σ² trade along a valley, and the search in ln σ, held at σ ≥ 0, stops
at the bound or anywhere in the valley. Where the width is an upper limit, R, c and b are
those of the fit in which σ² may take either sign (``_variance_free_fit``), with its errors:
unbiased, and scattering as their errors say (holding σ at its bound biased R when the true
width is near the limit; the valley's full covariance gave errors 5-10x the scatter; issue 13).

Frames that cannot be fitted (too few finite points, σ ≤ 0, no particle signal above a flat
background, no convergence) give ``SphereFit(success=False, reason=...)`` instead of raising.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ncsynth.analysis.fit_projection import VariableProjection, levenberg_marquardt
from ncsynth.analysis.scattering import RadiusGridKernel, recent, sphere_intensity

__all__ = ["SphereFit", "fit_pattern", "sphere_intensity"]

#: Fewest usable points for a fit of 4 parameters.
MIN_POINTS = 10
#: χ² improvement over a flat background below which a frame is "no particles yet" (≈5σ, 3 dof).
MIN_SIGNAL_DELTA_CHI2 = 25.0
#: A search that ends above this reduced χ² (or does not converge) is not the answer: a warm
#: start is retried from the cold starts, a cold start from the next one.
WARM_RETRY_CHI2_REDUCED = 2.0
RADIUS_MIN_NM = 0.1
RADIUS_MAX_NM = 60.0
SIGMA_MIN_NM = 1e-4
MAX_ITERATIONS = 60
#: One-sided 95 % normal quantile of the width's upper limit.
UPPER_LIMIT_Z = 1.645

_LOG_LOWER = np.log([RADIUS_MIN_NM, SIGMA_MIN_NM])
_LOG_UPPER = np.log([RADIUS_MAX_NM, RADIUS_MAX_NM])
_SCAN_RELATIVE_WIDTHS = (0.03, 0.1, 0.2, 0.35)
_SCAN_RADII_PER_DECADE = 28


@dataclass(frozen=True)
class SphereFit:
    """Result of ``fit_pattern``: Gaussian-polydisperse spheres plus constant background.

    Values are NaN when ``success`` is False; ``reason`` then says why. ``sigma_upper_nm``: when
    the pattern does not resolve the width (σ at its lower bound, or its error larger than σ,
    as in the first seconds of a synthesis), σ is only an upper limit: this one-sided 95 %
    limit, from the error of σ² (what the pattern sees); NaN when σ is measured. With an upper
    limit σ is reported at its lower bound (``sigma_err_nm`` NaN) and R, c, b free of the width
    (see the module docstring).
    """

    radius_nm: float
    sigma_nm: float
    concentration_molar: float
    background_cm: float
    radius_err_nm: float
    sigma_err_nm: float
    concentration_err_molar: float
    background_err_cm: float
    chi2_reduced: float
    n_points: int
    success: bool
    reason: str = ""
    sigma_upper_nm: float = math.nan

    def model(self, q_nm):
        """Fitted I(q) in cm⁻¹ (S2.1 + S2.3 + background) at ``q_nm`` (nm⁻¹)."""
        if not self.success:
            raise ValueError(f"no model for a failed fit ({self.reason})")
        return sphere_intensity(q_nm, self.radius_nm, self.sigma_nm,
                                self.concentration_molar, self.background_cm)

    @classmethod
    def failed(cls, reason, n_points=0):
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, nan, nan, nan, nan, int(n_points), False, reason)


class _Context:
    """Per-q-array state: the form-factor tables and the cold-start scan table."""

    def __init__(self, q_nm):
        self.kernel = RadiusGridKernel(q_nm)
        q_min = float(np.min(q_nm))
        scan_max = min(25.0, 5.0 / q_min)
        decades = math.log10(scan_max / 0.25)
        radii = np.geomspace(0.25, scan_max, max(8, round(_SCAN_RADII_PER_DECADE * decades)))
        self.scan_params = np.array([(r, r * w) for r in radii for w in _SCAN_RELATIVE_WIDTHS])

    @cached_property
    def scan_table(self):
        return np.array([self.kernel.evaluate(r, s)[0] for r, s in self.scan_params])

    @cached_property
    def scan_table_squared(self):
        return self.scan_table**2


_CONTEXTS: OrderedDict = OrderedDict()
_CONTEXT_CACHE_SIZE = 4


def _context_for(q):
    return recent(_CONTEXTS, q.tobytes(), lambda: _Context(q), _CONTEXT_CACHE_SIZE)


def gaussian_model(kernel):
    """``model(theta)`` of :class:`~ncsynth.analysis.fit_projection.VariableProjection` for
    theta = (ln R0, ln σ) of S2.3 on ``kernel``."""
    def model(theta):
        radius, sigma = math.exp(theta[0]), math.exp(theta[1])
        return kernel.evaluate(radius, sigma), (radius, sigma)
    return model


def _search(projection, theta, lower=_LOG_LOWER, upper=_LOG_UPPER):
    """(theta, χ², c, b, converged) of the Levenberg–Marquardt search over (ln R0, ln σ)."""
    return levenberg_marquardt(projection, theta, lower, upper, MAX_ITERATIONS)


def _cold_starts(context, projection, count=2):
    """Best (ln R0, ln σ) of the scan table by projected χ² (c > 0), at distinct radii.

    For a weighted scan column a and the unit background column e1, the χ² with c and b solved
    is |yw|² − (e1·yw)² − p2², p2 = (a·yw − (a·e1)(e1·yw))/|a⊥| (c = p2/|a⊥| > 0), with
    |a⊥|² = |a|² − (a·e1)²: three matrix-vector products with the table (a (scan × 2) matrix
    product packs the table and took twice as long), no (scan × q) temporaries.
    """
    inv_sigma, e1, yw = projection.inv_sigma, projection.e1, projection.yw
    along_y = context.scan_table @ (inv_sigma * yw)
    along_e = context.scan_table @ (inv_sigma * e1)
    squares = context.scan_table_squared @ (inv_sigma * inv_sigma)
    perp_squared = squares - along_e**2
    with np.errstate(invalid="ignore", divide="ignore"):
        p2 = (along_y - along_e * projection.p1) / np.sqrt(perp_squared)
    cost = -(p2**2)  # minimising χ² means maximising p2²
    # c must be positive; a column (nearly) flat like the background fits nothing
    cost[~(p2 > 0) | ~np.isfinite(p2) | ~(perp_squared > 1e-9 * squares)] = math.inf
    order = np.argsort(cost)
    starts, radii_used = [], []
    for index in order:
        if not math.isfinite(cost[index]) or len(starts) == count:
            break
        radius = context.scan_params[index, 0]
        if all(abs(math.log(radius / other)) > 0.15 for other in radii_used):
            starts.append(np.log(context.scan_params[index]))
            radii_used.append(radius)
    return starts


def _guess_theta(guess):
    if guess is None:
        return None
    if isinstance(guess, SphereFit):
        if not guess.success:
            return None
        radius, sigma = guess.radius_nm, guess.sigma_nm
    elif isinstance(guess, (tuple, list)) and len(guess) == 2:
        radius, sigma = guess
    else:
        raise TypeError(f"guess must be a SphereFit, a (radius_nm, sigma_nm) pair or None, got {guess!r}")
    if not (math.isfinite(radius) and math.isfinite(sigma) and radius > 0 and sigma >= 0):
        raise ValueError(f"guess needs radius_nm > 0 and sigma_nm >= 0, got {radius!r}, {sigma!r}")
    # no narrower than the cold starts begin: the search in ln σ cannot leave σ → 0, where I(q)
    # moves as σ² (a guess at σ's bound, as a frame that resolves no width passes on, kept R at
    # the guess with χ² 35 above the minimum: a dry run's 17th frame, tests/test_saxs_fit.py)
    sigma = max(sigma, _SCAN_RELATIVE_WIDTHS[0] * radius)
    return np.clip(np.log([radius, sigma]), _LOG_LOWER, _LOG_UPPER)


def _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm):
    """(q, I, σ) float arrays of the usable points; the arguments themselves (read, never
    written) when every point is kept."""
    arrays = [np.asarray(a, dtype=float) for a in (q_nm, intensity_cm, sigma_cm)]
    names = ("q_nm", "intensity_cm", "sigma_cm")
    for name, array in zip(names, arrays):
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not arrays[0].shape == arrays[1].shape == arrays[2].shape:
        raise ValueError("q_nm, intensity_cm and sigma_cm must have the same length, got "
                         f"{arrays[0].size}, {arrays[1].size} and {arrays[2].size}")
    q, y, s = arrays
    keep = np.isfinite(q) & np.isfinite(y) & np.isfinite(s) & (q > 0)
    if q_range_nm is None and keep.all():
        return q, y, s
    if q_range_nm is not None:
        try:
            q_lo, q_hi = (float(v) for v in q_range_nm)
        except (TypeError, ValueError):
            raise ValueError(f"q_range_nm must be a (min, max) pair in nm^-1, got {q_range_nm!r}") from None
        if not q_lo < q_hi:
            raise ValueError(f"q_range_nm must have min < max, got {q_range_nm!r}")
        keep &= (q >= q_lo) & (q <= q_hi)
    return q[keep], y[keep], s[keep]


def fit_pattern(q_nm, intensity_cm, sigma_cm, guess=None, q_range_nm=None) -> SphereFit:
    """Fit I(q) = c·N_A·⟨P_sphere(q)⟩_R + background (S2.1, S2.3), weighted with 1/σ².

    ``q_nm``: scattering vector (nm⁻¹); ``intensity_cm``, ``sigma_cm``: absolute intensity and
    its standard deviation (cm⁻¹); ``guess``: a previous ``SphereFit`` (or a (radius_nm,
    sigma_nm) pair) to warm-start from, None for a cold start from a scan of the (R0, σ) plane;
    ``q_range_nm``: optional (min, max) of the q values used.

    Points with non-finite q, I or σ (masked bins) are left out; ``n_points`` counts the rest.
    Raises ValueError only for malformed arguments (shapes, q_range_nm, guess).
    """
    q, y, s = _select_points(q_nm, intensity_cm, sigma_cm, q_range_nm)
    theta_guess = _guess_theta(guess)
    n = q.size
    if n < MIN_POINTS:
        return SphereFit.failed(f"only {n} usable points, need at least {MIN_POINTS}", n)
    if np.any(s <= 0):
        return SphereFit.failed(f"sigma_cm <= 0 at {np.count_nonzero(s <= 0)} points", n)

    context = _context_for(q)
    projection = VariableProjection(gaussian_model(context.kernel), y, 1.0 / s)
    flat_chi2 = float(projection.yw @ projection.yw - projection.p1**2)
    dof = n - 4

    def good(state):
        return state[4] and state[1] / dof <= WARM_RETRY_CHI2_REDUCED

    states = [] if theta_guess is None else [_search(projection, theta_guess)]
    if not (states and good(states[0])):
        for theta in _cold_starts(context, projection):  # best first; the next only if needed
            states.append(_search(projection, theta))
            if good(states[-1]):
                break
    best = _best_of(*states)
    if best is None or not math.isfinite(best[1]):
        return SphereFit.failed("no particle signal: no size fits with a positive concentration", n)
    theta, cost, c, b, converged = best
    if not (c > 0) or flat_chi2 - cost < MIN_SIGNAL_DELTA_CHI2:
        return SphereFit.failed(
            f"no particle signal above a flat background (chi2 gain {flat_chi2 - cost:.3g} "
            f"< {MIN_SIGNAL_DELTA_CHI2:g})", n)
    if not converged:
        return SphereFit.failed(f"no convergence in {MAX_ITERATIONS} iterations", n)
    radius, sigma = np.exp(theta)
    if theta[0] >= _LOG_UPPER[0]:
        return SphereFit.failed(f"radius ran to the bound {radius:.3g} nm", n)
    valley_end = theta[0] <= _LOG_LOWER[0]  # down the R–σ² valley to R's bound: σ not resolved
    errors = None if valley_end else _standard_errors(context.kernel, projection.inv_sigma,
                                                      radius, sigma, c)
    at_bound = theta[1] <= _LOG_LOWER[1] + 1e-6
    if not (valley_end or at_bound or not errors[1] < sigma):
        return SphereFit(float(radius), float(sigma), float(c), float(b), *errors,
                         chi2_reduced=float(cost / dof), n_points=n, success=True)
    # the width is an upper limit: R, c, b free of it (see the module docstring)
    starts = [theta[0]] if not valley_end else \
        [start[0] for start in [theta_guess][:theta_guess is not None] + _cold_starts(context, projection)[:1]]
    fits = [fit for fit in (_zero_width_fit(projection, start) for start in starts) if fit is not None]
    if not fits:
        if valley_end:
            return SphereFit.failed(f"radius ran to the bound {radius:.3g} nm", n)
        # σ² is what the pattern sees (⟨V²F²⟩ moves with σ², not σ): one-sided 95 % limit
        upper = math.sqrt(sigma**2 + UPPER_LIMIT_Z * 2.0 * sigma * errors[1])
        return SphereFit(float(radius), float(sigma), float(c), float(b), *errors,
                         chi2_reduced=float(cost / dof), n_points=n, success=True,
                         sigma_upper_nm=float(upper))
    zero_width = min(fits, key=lambda fit: fit[1])
    cost = zero_width[1]
    if flat_chi2 - cost < MIN_SIGNAL_DELTA_CHI2:
        return SphereFit.failed(
            f"no particle signal above a flat background (chi2 gain {flat_chi2 - cost:.3g} "
            f"< {MIN_SIGNAL_DELTA_CHI2:g})", n)
    radius, c, b, errors, variance, variance_err = _variance_free_fit(
        context.kernel, y, projection.inv_sigma, zero_width)
    # one-sided 95 % limit of σ² (what the pattern sees: ⟨V²F²⟩ moves with σ², not σ)
    upper = math.sqrt(max(variance, 0.0) + UPPER_LIMIT_Z * variance_err)
    return SphereFit(float(radius), SIGMA_MIN_NM, float(c), float(b), *errors,
                     chi2_reduced=float(cost / dof), n_points=n, success=True,
                     sigma_upper_nm=float(upper))


def _zero_width_fit(projection, log_radius):
    """((R, σ), χ², c, b) of the fit with σ held at its lower bound, R searched from
    ``log_radius``; None if that search fails (see the module docstring)."""
    upper = np.array([_LOG_UPPER[0], _LOG_LOWER[1]])
    theta, cost, c, b, converged = _search(projection, (log_radius, _LOG_LOWER[1]), upper=upper)
    if not (converged and c > 0 and _LOG_LOWER[0] < theta[0] < _LOG_UPPER[0]):
        return None
    return np.exp(theta), cost, c, b


def _variance_free_fit(kernel, y, inv_sigma, zero_width):
    """(R, c, b, (err R, NaN, err c, err b), s, err s) of the fit in which the variance s = σ²
    of the sizes (nm²) is free to take either sign, one Gauss–Newton step from the zero-width
    fit ``zero_width`` (``_zero_width_fit``). I(q) moves linearly with s near s = 0 (the
    Gaussian average of V²F² is V²F² + s/2·∂²(V²F²)/∂R², S2.3), so that step is the least-squares
    fit of the linear model, and its covariance holds the width the pattern does not resolve.
    An estimate held at s ≥ 0 is pushed up the R–σ² valley by half of the noise, and its errors
    (σ held, or those of σ's valley) were ~1.5-5x the scatter (issue 13); this one scatters as
    its errors say. Where the step would leave R > 0, c > 0 (the faintest patterns, far from
    linear) the zero-width values stay, with σ-held errors."""
    (radius, sigma), _, c, b = zero_width
    rows = kernel.evaluate(radius, sigma)
    jac = np.stack([c * rows[1], c * rows[2] / (2.0 * sigma), rows[0], np.ones_like(y)]) * inv_sigma
    residual = (y - c * rows[0] - b) * inv_sigma
    norms = np.sqrt(np.einsum("ij,ij->i", jac, jac))
    scaled = jac / norms[:, None]
    try:
        covariance = np.linalg.inv(scaled @ scaled.T) / np.outer(norms, norms)
    except np.linalg.LinAlgError:
        return radius, c, b, (math.inf, math.nan, math.inf, math.inf), math.nan, math.inf
    step = covariance @ (jac @ residual)
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    if not (RADIUS_MIN_NM < radius + step[0] and c + step[2] > 0):
        held = _standard_errors(kernel, inv_sigma, radius, sigma, c, sigma_fixed=True)
        return radius, c, b, held, 0.0, float(errors[1])
    return (radius + step[0], c + step[2], b + step[3],
            (float(errors[0]), math.nan, float(errors[2]), float(errors[3])),
            float(step[1]), float(errors[1]))


def _best_of(*states):
    finite = [state for state in states if state is not None and math.isfinite(state[1])]
    return min(finite, key=lambda state: state[1]) if finite else None


def _standard_errors(kernel, inv_sigma, radius, sigma, concentration, sigma_fixed=False):
    """Standard errors of (R0, σ, c, b) from (JᵀWJ)⁻¹ of the full 4-parameter model; with
    ``sigma_fixed`` of (R0, c, b) from the 3-parameter model, σ's error then NaN."""
    model = kernel.evaluate(radius, sigma)
    jac = np.empty((4, inv_sigma.size))
    np.multiply(model[1:], concentration, out=jac[:2])
    jac[2] = model[0]
    jac[3] = 1.0
    jac *= inv_sigma
    if sigma_fixed:
        errors = _standard_errors_of(jac[[0, 2, 3]])
        return errors[0], math.nan, errors[1], errors[2]
    return _standard_errors_of(jac)


def _standard_errors_of(jac):
    """Square roots of the diagonal of (JᵀWJ)⁻¹ for the weighted Jacobian rows ``jac``."""
    count = jac.shape[0]
    norms = np.sqrt(np.einsum("ij,ij->i", jac, jac))
    if not all(norm > 0 for norm in norms.tolist()):
        return (math.inf,) * count  # a parameter the pattern does not constrain at all
    scaled = jac / norms[:, None]
    try:
        variances = (np.linalg.inv(scaled @ scaled.T).diagonal() / (norms * norms)).tolist()
    except np.linalg.LinAlgError:
        return (math.inf,) * count
    return tuple(math.sqrt(v) if v >= 0 else math.inf for v in variances)
