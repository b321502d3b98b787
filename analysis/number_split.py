"""The first set as the N₁ largest crystals of a fitted size distribution (seed 000 §S.5).

Growth keeps the order of the radii (dr/dt = j_G(r, t) is one ODE for every crystal, S4.12), so
the crystals present before piston B are, until they dissolve, the N₁ largest ones, N₁ being
their number just before B times syringe B's dilution; the rest is the new set. The simulated
flask's truth is split that way (:func:`ncsynth.flask_truth.split_largest`). When piston B
fires while the first set still nucleates, the new set overlaps it in size and no fit tells
two populations apart; the same split of each frame's fitted number distribution still gives
the two sets' mean radii r₁ and r₂ for S4.15.

* :func:`split_gaussians`: a sum of Gaussian populations (S2.3), e.g. a two-population fit.
* :func:`split_pearson3`: one Pearson III population (:mod:`~ncsynth.analysis.skewed`).
* :func:`split_fits`: both, for each frame's two-population and skewed fits.

Both return (r₁, r₂) in nm: the number-weighted mean of the ``n_large`` largest crystals and
of the rest; NaN when ``n_large`` is not between 0 and the distribution's number. Radii in nm,
numbers (concentrations) in any one unit, e.g. mol/L.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats
from scipy.optimize import brentq

__all__ = ["split_fits", "split_gaussians", "split_pearson3"]

#: Below this |skewness| the Pearson III is taken as its Gaussian limit.
GAUSSIAN_SKEWNESS = 1e-6
_SPAN_SIGMAS = 12.0


def _split(total, mean, n_large, upper_mean_above):
    """(r₁, r₂) from the number ``n_large`` above some radius and their mean there."""
    if not (0.0 < n_large < total) or not math.isfinite(total):
        return math.nan, math.nan
    above = upper_mean_above
    return float(above / n_large), float((total * mean - above) / (total - n_large))


def split_gaussians(components, n_large):
    """(r₁, r₂) of the ``n_large`` largest crystals of Σₖ cₖ·N(Rₖ, σₖ) and of the rest.

    ``components``: (c, R_nm, σ_nm) triples, c ≥ 0 (a component with c ≤ 0 or σ ≤ 0 is left
    out; a negative c is not a distribution: NaN). The cut radius x solves Σ cₖ·S((x − Rₖ)/σₖ)
    = N₁ (S the normal survival function); above it Σ cₖ·(Rₖ·S(zₖ) + σₖ·φ(zₖ)) crystals·nm.
    """
    parts = [(float(c), float(r), float(s)) for c, r, s in components]
    if any(not (math.isfinite(c) and math.isfinite(r) and math.isfinite(s)) or c < 0
           for c, r, s in parts):
        return math.nan, math.nan
    parts = [(c, r, s) for c, r, s in parts if c > 0 and s > 0]
    if not parts:
        return math.nan, math.nan
    c, r, s = (np.array(v) for v in zip(*parts))
    total = float(c.sum())
    if not 0.0 < n_large < total:
        return math.nan, math.nan
    cut = brentq(lambda x: float(c @ stats.norm.sf((x - r) / s)) - n_large,
                 float(np.min(r - _SPAN_SIGMAS * s)), float(np.max(r + _SPAN_SIGMAS * s)),
                 xtol=1e-12)
    z = (cut - r) / s
    above = float(c @ (r * stats.norm.sf(z) + s * stats.norm.pdf(z)))
    return _split(total, float(c @ r) / total, n_large, above)


def split_pearson3(concentration, radius_nm, sigma_nm, skewness, n_large):
    """(r₁, r₂) of the ``n_large`` largest crystals of ``concentration`` crystals distributed as
    a Pearson III of mean ``radius_nm``, standard deviation ``sigma_nm`` and ``skewness`` γ.

    With a = 4/γ² the radius is R + sign(γ)·σ·(X − a)/√a, X ~ Gamma(a): the largest crystals
    are the top (γ > 0) or the bottom (γ < 0) of X, and E[X; X > x] = a·Q(a + 1, x)
    (Q the regularised upper incomplete gamma function).
    """
    total, mean, sigma, gamma = (float(v) for v in (concentration, radius_nm, sigma_nm, skewness))
    if not all(math.isfinite(v) for v in (total, mean, sigma, gamma)) or not sigma > 0:
        return math.nan, math.nan
    if not 0.0 < n_large < total:
        return math.nan, math.nan
    if abs(gamma) < GAUSSIAN_SKEWNESS:
        return split_gaussians([(total, mean, sigma)], n_large)
    fraction, a = n_large / total, 4.0 / gamma**2
    scale = math.copysign(sigma / math.sqrt(a), gamma)
    if gamma > 0:  # the largest radii: X above its upper fraction-quantile
        x = special.gammainccinv(a, fraction)
        x_above = a * special.gammaincc(a + 1.0, x)              # E[X; X > x]
    else:          # the largest radii: X below its lower fraction-quantile
        x = special.gammaincinv(a, fraction)
        x_above = a * special.gammainc(a + 1.0, x)               # E[X; X < x]
    above = total * (fraction * (mean - scale * a) + scale * x_above)
    return _split(total, mean, n_large, above)


def split_fits(fits, skewed_fits, n_large):
    """(r₁, r₂) of the ``n_large`` largest crystals per frame, arrays of shape (frames, 2):
    of the two-population fits' sum (:class:`~ncsynth.analysis.bimodal.BimodalFit`, resolved
    or not) and of the Pearson III fits (:class:`~ncsynth.analysis.skewed.SkewedFit`); NaN
    where a fit failed or cannot be split."""
    nan = (math.nan, math.nan)
    gaussians = [split_gaussians([(f.concentration1_molar, f.radius1_nm, f.sigma1_nm),
                                  (f.concentration2_molar, f.radius2_nm, f.sigma2_nm)], n_large)
                 if f.success else nan for f in fits]
    pearson = [split_pearson3(s.concentration_molar, s.radius_nm, s.sigma_nm, s.skewness, n_large)
               if s.success else nan for s in skewed_fits]
    return np.array(gaussians, dtype=float).reshape(-1, 2), np.array(pearson, dtype=float).reshape(-1, 2)
