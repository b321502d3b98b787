"""n of S4.15 from radius pairs with the size models' spread (seed 000 §S.4.3–S.4.4, §S.5).

Steps 4–5 of :mod:`~ncsynth.analysis.superfocusing`: the two-Gaussian pairs of a window give n
(:func:`~ncsynth.analysis.growth.fit_growth_exponent`, with the radii's standard errors and
their correlation); the same frames fitted with the first set skewed and with both sets
skewed (Pearson III) give two more exponents; n is the middle of the three, half their range
a systematic error added in quadrature (:func:`with_model_spread`). Radii in nm.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ncsynth.analysis.bimodal import fit_skewed_pair
from ncsynth.analysis.growth import ExponentFit, fit_growth_exponent
from ncsynth.analysis.skewed import fit_skewed_and_gaussian

__all__ = ["growth_exponent", "with_model_spread"]


def growth_exponent(q_nm, intensity_cm, sigma_cm, fits, *, q_range_nm=None) -> ExponentFit:
    """Steps 4–5 on the frames of a window: n of S4.15 from the two-Gaussian ``fits`` (one
    successful :class:`BimodalFit` per frame, in time order) with their radius errors and
    correlation, moved to the middle of the three size models' exponents, half their range
    added as a systematic (see the module). ``q_nm`` (nm⁻¹), ``intensity_cm``, ``sigma_cm``
    (cm⁻¹): shape (frames, M), the patterns the ``fits`` were made from."""
    r1, r2, e1, e2, rho = (np.array([getattr(f, name) for f in fits], dtype=float) for name in (
        "radius1_nm", "radius2_nm", "radius1_err_nm", "radius2_err_nm", "radius_correlation"))
    skewed_first = np.full((len(fits), 2), np.nan)
    both_skewed = np.full((len(fits), 2), np.nan)
    for k, fit in enumerate(fits):  # cold starts: a warm one keeps a wrong skewness frame to frame
        skewed_first[k] = fit_skewed_and_gaussian(q_nm[k], intensity_cm[k], sigma_cm[k], fit,
                                                  q_range_nm=q_range_nm)[:2]
        both_skewed[k] = fit_skewed_pair(q_nm[k], intensity_cm[k], sigma_cm[k], fit,
                                         q_range_nm=q_range_nm)[:2]
    return with_model_spread(
        fit_growth_exponent(r1, r2, e1, e2, radius_correlation=rho),
        [fit_growth_exponent(*radii.T, e1, e2, radius_correlation=rho)
         for radii in (skewed_first, both_skewed)])


def with_model_spread(gaussian: ExponentFit, alternatives) -> ExponentFit:
    """``gaussian`` moved to the middle of its and the ``alternatives``' exponents, half their
    range added to its errors (step 5); alternatives that failed are left out."""
    if not gaussian.success:
        return gaussian
    values = [gaussian.n] + [fit.n for fit in alternatives if fit.success]
    middle, spread = 0.5 * (max(values) + min(values)), 0.5 * (max(values) - min(values))
    return replace(gaussian, n=middle, n_err=math.hypot(gaussian.n_err, spread),
                   n_lower=middle - math.hypot(gaussian.n - gaussian.n_lower, spread),
                   n_upper=middle + math.hypot(gaussian.n_upper - gaussian.n, spread),
                   model_spread=spread)
