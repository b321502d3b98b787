"""Growth exponent n of a bimodal ensemble (seed 000 §S.4.3–S.4.4, §S.5, Fig. S5.4b).

Growth law S4.12: dr/dt = A·S(t)/rⁿ.  Both sets of a bimodal ensemble see the same S(t), so
(S4.13–S4.15) the quantity r₁ⁿ⁺¹ − r₂ⁿ⁺¹ stays constant while they grow; n = 0 is reaction
control (S4.17: r₁ − r₂ constant), n = 1 diffusion control (S4.16), n > 2 superfocusing.

* ``fit_growth_exponent``: n and the constant from radius pairs (r₁(t), r₂(t)) with errors.
* ``expected_small_radius`` / ``expected_large_radius``: the curves of S4.15–S4.17 drawn next to
  the data (Fig. S5.4b).
* ``growth_rate``: a smoothed dr/dt from a sampled r(t).
* ``local_exponent`` / ``law_local_exponent``: n = −(r/f)·df/dr (S4.21) of a sampled or an
  analytic growth-rate curve f(r); ``law_chord_exponent``: S4.21 across the gap between the two
  sets, the reference to compare a pair fit with when the law is not a pure power.
* ``pair_rate_exponent``: n(t) = ln(ṙ₂/ṙ₁)/ln(r₁/r₂) from the measured rates of both sets.

How n is fitted (``fit_growth_exponent``).  With m = n + 1 the Box–Cox transform
h_m(r) = (r^m − 1)/m (h₀ = ln r) turns S4.15 into d_i(m) = h_m(r₁,i) − h_m(r₂,i) = C' for all
pairs, with C' = C/m and C = r₁ⁿ⁺¹ − r₂ⁿ⁺¹; h_m is smooth through m = 0 (n = −1), so the search
over n needs no special case.  Both radii are measured, so this is an errors-in-variables
problem; it is handled by the effective-variance method: each pair's d_i gets the variance
v_i = (r₁^(m−1)·σ₁)² + (r₂^(m−1)·σ₂)² − 2ρ·r₁^(m−1)σ₁·r₂^(m−1)σ₂ propagated from the radius
errors and their correlation ρ (exact to first order in σ/r), and χ²(m, C') = Σ (d_i − C')²/v_i.
C' is profiled out exactly (weighted mean), χ²(m) is
minimised over m, and the interval on n is where the profile χ² stays within 1 of its minimum
(profile likelihood: asymmetric when the data are, and honest where χ²(n) is not parabolic).
Without radius errors all radii get the same unknown error, fixed afterwards so that
χ²_red = 1 (the scatter about the best curve is the error estimate, as ``curve_fit`` does).  With
errors the interval is absolute while χ²_red ≤ 1; above, the pairs scatter more than their
errors allow (the errors are off, or one n does not describe the pairs: the effective exponent
of a law that is not a pure power drifts with r) and the Δχ² threshold is scaled by χ²_red, so
the interval never pretends a better fit than the data give; χ²_red is reported either way.  (A bootstrap over the pairs was tried and rejected: on
synthetic series it overstated the scatter of n by ~1.8×, probably because the few early pairs
that pin n are often missing from a resample; the profile interval's pulls have unit spread.)

Radii in nm, times in s; the constant C is in nm^(n+1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize_scalar

__all__ = ["ExponentFit", "fit_growth_exponent", "expected_small_radius", "expected_large_radius",
           "growth_rate", "local_exponent", "law_local_exponent", "law_chord_exponent",
           "pair_rate_exponent"]

#: Default search interval of the exponent n (m = n + 1 from −1 to 13).
EXPONENT_BOUNDS = (-2.0, 12.0)
#: Points in the sliding window of the local regressions of ``growth_rate``/``local_exponent``.
DEFAULT_WINDOW_POINTS = 7


@dataclass(frozen=True)
class ExponentFit:
    """Result of ``fit_growth_exponent``.

    ``n`` with the Δχ² = 1 interval [``n_lower``, ``n_upper``] and ``n_err`` its half-width;
    ``constant`` = r₁ⁿ⁺¹ − r₂ⁿ⁺¹ (nm^(n+1), S4.15) with ``constant_err`` (marginal, from the
    (n, C) curvature); ``errors_from_scatter`` is True when no radius errors were given and the
    errors were scaled to χ²_red = 1. ``model_spread``: a systematic error already included in
    ``n_err`` and the interval (0 unless added: the superfocusing analysis then also moves ``n``
    to the middle of its size models' exponents, while ``constant`` stays the fit's).
    Values are NaN when ``success`` is False; ``reason`` then says why.
    """

    n: float
    n_err: float
    n_lower: float
    n_upper: float
    constant: float
    constant_err: float
    chi2_reduced: float
    n_points: int
    errors_from_scatter: bool
    success: bool
    reason: str = ""
    model_spread: float = 0.0

    @classmethod
    def failed(cls, reason, n_points=0, errors_from_scatter=False):
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, nan, nan, int(n_points), errors_from_scatter, False, reason)


def _box_cox(r, m):
    """h_m(r) = (r^m − 1)/m, ln r at m = 0 (series near 0), and dh/dr = r^(m−1)."""
    log_r = np.log(r)
    if abs(m) < 1e-8:
        h = log_r + 0.5 * m * log_r**2
    else:
        h = np.expm1(m * log_r) / m
    return h, np.exp((m - 1.0) * log_r)


class _PairChi2:
    """χ²(m, C') of the effective-variance fit of S4.15 for fixed radius pairs and errors."""

    def __init__(self, r1, r2, e1, e2, rho):
        self.r1, self.r2, self.e1, self.e2, self.rho = r1, r2, e1, e2, rho

    def terms(self, m):
        h1, s1 = _box_cox(self.r1, m)
        h2, s2 = _box_cox(self.r2, m)
        a, b = s1 * self.e1, s2 * self.e2
        return h1 - h2, np.maximum(a**2 + b**2 - 2.0 * self.rho * a * b, 1e-6 * (a**2 + b**2))

    def profile(self, m):
        """(χ² minimised over C', that C', its conditional standard error)."""
        d, v = self.terms(m)
        w = 1.0 / v
        c = float(w @ d / w.sum())
        return float(w @ (d - c) ** 2), c, 1.0 / math.sqrt(w.sum())

    def full(self, m, c_prime):
        d, v = self.terms(m)
        return float(np.sum((d - c_prime) ** 2 / v))


def _best_exponent(chi2, bounds):
    """Minimise the profile χ² over m on a grid, then refine; returns (m, χ²) or None at a bound."""
    m_lo, m_hi = bounds[0] + 1.0, bounds[1] + 1.0
    grid = np.linspace(m_lo, m_hi, 57)
    values = np.array([chi2.profile(m)[0] for m in grid])
    if not np.all(np.isfinite(values)):
        return None
    k = int(np.argmin(values))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    result = minimize_scalar(lambda m: chi2.profile(m)[0], bounds=(a, b), method="bounded",
                             options={"xatol": 1e-7})
    m_best = float(result.x)
    if m_best - m_lo < 1e-4 or m_hi - m_best < 1e-4:
        return m_best, None
    return m_best, float(result.fun)


def _profile_interval(chi2, m_best, chi2_min, threshold, bounds):
    """Where the profile χ² crosses chi2_min + threshold on each side of m_best (m units)."""
    def excess(m):
        return chi2.profile(m)[0] - chi2_min - threshold

    ends = []
    for limit in (bounds[0] + 1.0, bounds[1] + 1.0):
        direction = math.copysign(1.0, limit - m_best)
        step = 1e-3 * max(1.0, abs(m_best))
        inner = m_best
        while True:
            outer = m_best + direction * step
            if direction * (outer - limit) >= 0:
                outer = limit
                if excess(limit) < 0:
                    return None  # the interval reaches the search bound
                break
            if excess(outer) >= 0:
                break
            inner, step = outer, 2.0 * step
        ends.append(brentq(excess, inner, outer, xtol=1e-9))
    return ends[0], ends[1]


def _constant_error(chi2, m, c_prime, scale):
    """Marginal standard error of C = m·C' from the Hessian of χ²(m, C') (finite differences)."""
    hm = 1e-4 * max(1.0, abs(m))
    hc = 1e-4 * max(abs(c_prime), 1e-12)
    f = chi2.full
    f0 = f(m, c_prime)
    h_mm = (f(m + hm, c_prime) - 2 * f0 + f(m - hm, c_prime)) / hm**2
    h_cc = (f(m, c_prime + hc) - 2 * f0 + f(m, c_prime - hc)) / hc**2
    h_mc = (f(m + hm, c_prime + hc) - f(m + hm, c_prime - hc)
            - f(m - hm, c_prime + hc) + f(m - hm, c_prime - hc)) / (4 * hm * hc)
    try:
        covariance = np.linalg.inv(0.5 * np.array([[h_mm, h_mc], [h_mc, h_cc]])) * scale
    except np.linalg.LinAlgError:
        return math.inf
    gradient = np.array([c_prime, m])  # C = m·C'
    variance = float(gradient @ covariance @ gradient)
    return math.sqrt(variance) if variance >= 0 else math.inf


def _clean_pairs(r1_nm, r2_nm, r1_err_nm, r2_err_nm, radius_correlation):
    r1 = np.asarray(r1_nm, dtype=float)
    r2 = np.asarray(r2_nm, dtype=float)
    if r1.ndim != 1 or r1.shape != r2.shape:
        raise ValueError(f"r1_nm and r2_nm must be 1-D of the same length, got shapes {r1.shape} and {r2.shape}")
    given = (r1_err_nm is not None, r2_err_nm is not None)
    if given[0] != given[1]:
        raise ValueError("give both r1_err_nm and r2_err_nm, or neither")
    if given[0]:
        e1 = np.broadcast_to(np.asarray(r1_err_nm, dtype=float), r1.shape)
        e2 = np.broadcast_to(np.asarray(r2_err_nm, dtype=float), r1.shape)
    else:
        e1 = e2 = np.ones_like(r1)
    rho = np.broadcast_to(np.asarray(0.0 if radius_correlation is None else radius_correlation,
                                     dtype=float), r1.shape)
    if np.any(np.abs(rho[np.isfinite(rho)]) > 1):
        raise ValueError("radius_correlation must lie in [-1, 1]")
    keep = np.isfinite(r1) & np.isfinite(r2) & np.isfinite(e1) & np.isfinite(e2) & np.isfinite(rho)
    for name, values in (("r1_nm", r1), ("r2_nm", r2)):
        if np.any(values[keep] <= 0):
            raise ValueError(f"{name} must be > 0, got min {values[keep].min()!r}")
    for name, values in (("r1_err_nm", e1), ("r2_err_nm", e2)):
        if np.any(values[keep] <= 0):
            raise ValueError(f"{name} must be > 0, got min {values[keep].min()!r}")
    return r1[keep], r2[keep], e1[keep], e2[keep], rho[keep], not given[0]


def fit_growth_exponent(r1_nm, r2_nm, r1_err_nm=None, r2_err_nm=None, *, radius_correlation=None,
                        n_bounds=EXPONENT_BOUNDS) -> ExponentFit:
    """Fit r₁ⁿ⁺¹ − r₂ⁿ⁺¹ = C (S4.15) to radius pairs of the large (r₁) and the small (r₂) set.

    ``r1_nm``, ``r2_nm``: mean radii (nm) of the two sets at the same times; pairs with a NaN
    (failed frames) are skipped.  ``r1_err_nm``, ``r2_err_nm``: their standard errors (nm;
    scalars or arrays), or both None to estimate one common error from the scatter.
    ``radius_correlation``: correlation of the errors of r₁ and r₂ of a pair (scalar or array;
    a two-population fit correlates them strongly, ~0.99, and S4.15 differences them), which
    enters the effective variance as −2ρ·h₁'σ₁·h₂'σ₂; None: uncorrelated.
    ``n_bounds``: search interval of n.  Method: see the module docstring.

    Raises ValueError for malformed input (shapes, radii or errors <= 0, bad bounds); too few
    pairs, a minimum at the search bound, or an interval running into it give success=False.
    """
    lo, hi = (float(v) for v in n_bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and -1.0 - 5.0 <= lo < hi):
        raise ValueError(f"n_bounds must be a finite (low, high) pair with -6 <= low < high, got {n_bounds!r}")
    r1, r2, e1, e2, rho, from_scatter = _clean_pairs(r1_nm, r2_nm, r1_err_nm, r2_err_nm,
                                                     radius_correlation)
    count = r1.size
    if count < 3:
        return ExponentFit.failed(f"only {count} usable radius pairs, need at least 3", count, from_scatter)
    chi2 = _PairChi2(r1, r2, e1, e2, rho)
    best = _best_exponent(chi2, (lo, hi))
    if best is None:
        return ExponentFit.failed("profile chi2 is not finite", count, from_scatter)
    m, chi2_min = best
    if chi2_min is None:
        return ExponentFit.failed(f"best n = {m - 1:.3g} lies at the search bound {n_bounds}", count, from_scatter)
    dof = count - 2
    chi2_reduced = chi2_min / dof if dof > 0 else math.nan
    # From the scatter: the common radius error scaled so that χ²_red = 1; else Birge (χ²_red > 1).
    scale = chi2_reduced if from_scatter else max(chi2_reduced, 1.0)
    if from_scatter and not (scale > 0):
        return ExponentFit.failed("no scatter left to estimate errors from (need > 2 pairs off the curve)",
                                  count, from_scatter)
    interval = _profile_interval(chi2, m, chi2_min, scale, (lo, hi))
    if interval is None:
        return ExponentFit.failed(f"the n interval around {m - 1:.3g} runs into the search bound {n_bounds}: "
                                  "the pairs do not constrain n", count, from_scatter)
    _, c_prime, _ = chi2.profile(m)
    return ExponentFit(
        n=m - 1.0, n_err=0.5 * (interval[1] - interval[0]), n_lower=interval[0] - 1.0,
        n_upper=interval[1] - 1.0, constant=m * c_prime,
        constant_err=_constant_error(chi2, m, c_prime, scale),
        chi2_reduced=1.0 if from_scatter else chi2_reduced, n_points=count,
        errors_from_scatter=from_scatter, success=True)


def _partner_radius(radius_nm, radius_0_nm, partner_0_nm, n):
    """Partner radius that keeps r^(n+1) − partner^(n+1) at its initial value (S4.15).

    NaN where no positive partner radius satisfies it (a small set that would have dissolved).
    """
    _check_exponent(n)
    r = np.asarray(radius_nm, dtype=float)
    r0 = float(radius_0_nm)
    p0 = float(partner_0_nm)
    if not (r0 > 0 and p0 > 0):
        raise ValueError(f"initial radii must be > 0 nm, got {radius_0_nm!r} and {partner_0_nm!r}")
    m = n + 1.0
    h, _ = _box_cox(np.maximum(r, np.finfo(float).tiny), m)
    h0, _ = _box_cox(np.array([r0]), m)
    hp0, _ = _box_cox(np.array([p0]), m)
    target = h - h0[0] + hp0[0]  # h_m(partner) = h_m(r) − h_m(r0) + h_m(p0)
    if abs(m) < 1e-8:
        partner = np.exp(target)
    else:
        base = 1.0 + m * target
        with np.errstate(invalid="ignore", divide="ignore"):
            partner = np.where(base > 0, np.abs(base) ** (1.0 / m), math.nan)
    return np.where(r > 0, partner, math.nan)


def expected_small_radius(r1_nm, r1_0_nm, r2_0_nm, n):
    """Radius (nm) of the small set when the large set has grown from ``r1_0_nm`` to ``r1_nm``.

    S4.15 solved for r₂: r₂ = (r₁ⁿ⁺¹ − r₁,₀ⁿ⁺¹ + r₂,₀ⁿ⁺¹)^(1/(n+1)); n = 1 and n = 0 are the
    inverses of S4.16 and S4.17.  ``n`` is any real exponent (n = −1 keeps r₁/r₂ constant).
    """
    return _partner_radius(r1_nm, r1_0_nm, r2_0_nm, n)


def expected_large_radius(r2_nm, r1_0_nm, r2_0_nm, n):
    """Radius (nm) of the large set when the small set has grown from ``r2_0_nm`` to ``r2_nm``.

    S4.15 solved for r₁: n = 1 gives S4.16, r₁ = √(r₂² + r₁,₀² − r₂,₀²); n = 0 gives S4.17,
    r₁ = r₂ + (r₁,₀ − r₂,₀); these are the curves drawn over the data in Fig. S5.4b.
    """
    return _partner_radius(r2_nm, r2_0_nm, r1_0_nm, n)


def _check_exponent(n):
    if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)) or not math.isfinite(n):
        raise ValueError(f"n must be a finite real number, got {n!r}")


def _local_slopes(x, y, window_points):
    """(value, slope) at each x of a least-squares parabola through its ``window_points`` nearest samples.

    The window is centred on the sample where it can be and shifted inwards at the ends; the
    parabola is written around the sample itself, so value and slope belong to that x even in a
    shifted window (a Savitzky–Golay filter of order 2 that works on uneven steps).
    """
    size = x.size
    half = window_points // 2
    values = np.empty(size)
    slopes = np.empty(size)
    for i in range(size):
        start = min(max(i - half, 0), size - window_points)
        xs = x[start:start + window_points] - x[i]
        _, slopes[i], values[i] = np.polyfit(xs, y[start:start + window_points], 2)
    return values, slopes


def _check_window(window_points, size):
    if isinstance(window_points, bool) or not isinstance(window_points, (int, np.integer)) or window_points < 3:
        raise ValueError(f"window_points must be an int >= 3, got {window_points!r}")
    if size < window_points:
        raise ValueError(f"need at least window_points={window_points} samples, got {size}")


def growth_rate(t_s, r_nm, window_points=DEFAULT_WINDOW_POINTS):
    """Smoothed growth rate dr/dt (nm/s) of a sampled r(t) (the j_G of S4.12).

    Each sample gets a parabola fitted by least squares through the ``window_points`` samples
    nearest in index (shifted inwards at the ends), and dr/dt is its slope at that sample: a
    Savitzky–Golay derivative filter of order 2 that works on uneven time steps.  The noise on
    dr/dt falls as window^(−3/2) inside the series (about 3× more at the ends); a change of the
    curvature of r(t) within the window biases it, so keep the window short against the time
    scale on which the rate changes.  Returns ``(r_smooth_nm, rate_nm_per_s)``
    at the sample times; NaN samples are dropped first, so both are as long as the finite ones.
    """
    t = np.asarray(t_s, dtype=float)
    r = np.asarray(r_nm, dtype=float)
    if t.ndim != 1 or t.shape != r.shape:
        raise ValueError(f"t_s and r_nm must be 1-D of the same length, got shapes {t.shape} and {r.shape}")
    keep = np.isfinite(t) & np.isfinite(r)
    t, r = t[keep], r[keep]
    if np.any(np.diff(t) <= 0):
        raise ValueError("t_s must be strictly increasing")
    _check_window(window_points, t.size)
    return _local_slopes(t, r, window_points)


def local_exponent(r_nm, rate, window_points=DEFAULT_WINDOW_POINTS):
    """Local growth exponent n(r) = −(r/f)·df/dr = −d ln f/d ln r (S4.21) of a sampled f(r).

    ``r_nm``: radii (nm), ``rate``: growth rates f at those radii (any unit, > 0), e.g. the
    output of ``growth_rate``.  The slope of ln f against ln r comes from the same sliding
    least-squares parabola as ``growth_rate`` (``window_points`` samples).  Note that a rate measured
    on one population also carries the time dependence of S(t) (S4.12): n(r) is the exponent of
    the radius dependence only where S is steady over the window.
    """
    r = np.asarray(r_nm, dtype=float)
    f = np.asarray(rate, dtype=float)
    if r.ndim != 1 or r.shape != f.shape:
        raise ValueError(f"r_nm and rate must be 1-D of the same length, got shapes {r.shape} and {f.shape}")
    if not (np.all(np.isfinite(r)) and np.all(r > 0)):
        raise ValueError("r_nm must be finite and > 0")
    if not (np.all(np.isfinite(f)) and np.all(f > 0)):
        raise ValueError("rate must be finite and > 0 (a growing population)")
    order = np.argsort(r)
    _check_window(window_points, r.size)
    _, slopes = _local_slopes(np.log(r[order]), np.log(f[order]), window_points)
    result = np.empty_like(r)
    result[order] = -slopes
    return result


def law_local_exponent(rate_function, r_nm, relative_step=1e-4):
    """Local exponent n(r) = −d ln f/d ln r (S4.21) of an analytic growth law f(r).

    ``rate_function``: vectorised callable radius_nm -> growth rate (> 0 where evaluated), e.g. the
    simulator's S4.8 with S6.16 at a given S and T.  Central difference in ln r with the given
    relative step.  For f = A/rⁿ this returns n exactly.
    """
    r = _positive_radii("r_nm", r_nm)
    return law_chord_exponent(rate_function, r * (1.0 - relative_step), r * (1.0 + relative_step))


def law_chord_exponent(rate_function, r_small_nm, r_large_nm):
    """Exponent of the power law through f at two radii: n = −ln(f(r₁)/f(r₂))/ln(r₁/r₂).

    S4.21 taken across a finite step: the mean of the local exponent over ln r between the two
    radii.  For two sets at the same time it is what the pair fit of S4.15 measures, since
    (r₁/r₂)ⁿ = ṙ₂/ṙ₁ there and S(t) cancels; so it is the like-with-like reference for comparing
    ``fit_growth_exponent`` with a known law that is not a pure power (e.g. the simulator's).
    """
    if not callable(rate_function):
        raise TypeError(f"rate_function must be callable, got {rate_function!r}")
    small = _positive_radii("r_small_nm", r_small_nm)
    large = _positive_radii("r_large_nm", r_large_nm)
    if np.any(small == large):
        raise ValueError("r_small_nm and r_large_nm must differ")
    f_small = np.asarray(rate_function(small), dtype=float)
    f_large = np.asarray(rate_function(large), dtype=float)
    if not (np.all(f_small > 0) and np.all(f_large > 0)):
        raise ValueError("rate_function must be > 0 at the radii given (growth, not dissolution)")
    return -(np.log(f_large) - np.log(f_small)) / (np.log(large) - np.log(small))


def pair_rate_exponent(t_s, r1_nm, r2_nm, window_points=DEFAULT_WINDOW_POINTS):
    """Exponent at each time from the growth rates of both sets: n(t) = ln(ṙ₂/ṙ₁)/ln(r₁/r₂).

    Both sets see the same S(t) (S4.12), so the ratio of their rates depends on the radius law
    only: a time-resolved companion of ``fit_growth_exponent`` (noisier, since it differentiates).
    Rates from ``growth_rate`` with ``window_points``.  Returns ``(r1_smooth_nm, r2_smooth_nm, n)``.
    """
    r1_smooth, rate1 = growth_rate(t_s, r1_nm, window_points)
    r2_smooth, rate2 = growth_rate(t_s, r2_nm, window_points)
    if r1_smooth.size != r2_smooth.size:
        raise ValueError("r1_nm and r2_nm must have NaNs at the same times")
    with np.errstate(invalid="ignore", divide="ignore"):
        return r1_smooth, r2_smooth, np.log(rate2 / rate1) / np.log(r1_smooth / r2_smooth)


def _positive_radii(name, values):
    r = np.asarray(values, dtype=float)
    if not (np.all(np.isfinite(r)) and np.all(r > 0)):
        raise ValueError(f"{name} must be finite and > 0")
    return r
