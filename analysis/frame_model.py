"""The size model a frame's pattern prefers, for the kinetics (seed 000 §S.2.2–S.2.6, §S.3).

S2.3 assumes one Gaussian population. A flask that nucleates holds a tail of small crystals
(skewed), and one that nucleates again a second set: one model for every frame would count
them wrongly. Each frame gets, in order of preference:

* one skewed population (:mod:`~ncsynth.analysis.skewed`; it contains S2.3's Gaussian), or
  S2.3's Gaussian when the skewed fit failed;
* two Gaussian populations (:func:`~ncsynth.analysis.bimodal.fit_bimodal`) when the single
  population does not describe the pattern (χ² p-value below ``MISFIT_P_VALUE``) and the two
  beat it by the Bayesian information criterion, BIC = χ² + k·ln N, by ``MIN_DELTA_BIC``.

The result counts every crystal the model holds: the number concentration and the cadmium in
crystals, Σ c_k·4⟨V⟩_k/a³ (S2.5; the yield S2.6 is that over c_Cd,0). Units: mol/L.

:func:`size_model_systematic` and :class:`SizeModelError` give the Gaussian fit's size-model
error on each frame: a flask that nucleates holds a tail of small crystals that scatter little
(V²), so S2.3's Gaussian sits on the bulk and its R, σ and c miss the number-weighted moments by
far more than their statistical errors (simulated flasks: 0.5–3 % in R, 8–60 standard errors
RMS after 60 s, drifting with the tail). Freeing the shape (the skewed fit of the same frame, or
the two populations it prefers) moves them most of the way; what is left is a tail neither model
sees, e.g. the first 30–60 s of a second burst (tests/test_size_model_error.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2 as chi2_distribution

from ncsynth.analysis.bimodal import BimodalFit, fit_bimodal
from ncsynth.analysis.kinetics import MISFIT_P_VALUE, yield_fraction
from ncsynth.analysis.saxs import SphereFit
from ncsynth.analysis.skewed import N_PARAMETERS as SKEWED_PARAMETERS, SkewedFit

__all__ = ["FrameModel", "preferred_model", "delta_bic", "size_model_systematic", "resolved_fraction",
           "number_moments", "SizeModelError", "MIN_DELTA_BIC"]

#: BIC(one skewed population) − BIC(two Gaussian populations) needed to prefer two ("very strong").
MIN_DELTA_BIC = 10.0
_TWO_GAUSSIAN_PARAMETERS = 7
_GAUSSIAN_PARAMETERS = 4


@dataclass(frozen=True)
class FrameModel:
    """What the preferred model of one frame holds: ``populations`` (1 or 2; 0 without a fit),
    the number concentration and the cadmium in crystals (mol/L)."""

    populations: int
    concentration_molar: float
    cadmium_molar: float


def delta_bic(two: BimodalFit, skewed: SkewedFit) -> float:
    """BIC(one skewed population) − BIC(two Gaussian populations) of one frame (NaN if either failed)."""
    if not (two.success and skewed.success):
        return math.nan
    ln_n = math.log(two.n_points)
    chi2_two = two.chi2_reduced * (two.n_points - _TWO_GAUSSIAN_PARAMETERS)
    return (skewed.chi2 + SKEWED_PARAMETERS * ln_n) - (chi2_two + _TWO_GAUSSIAN_PARAMETERS * ln_n)


def size_model_systematic(gaussian: SphereFit, skewed: SkewedFit,
                          two: BimodalFit | None = None) -> tuple[float, float, float]:
    """Shifts (R nm, σ nm, c mol/L) of the Gaussian fit of a frame from the size models the
    frame was also fitted with: |Gaussian − skewed| of each, and when the frame prefers two
    populations (``two``, :func:`preferred_model`) the larger of that and |Gaussian − the two
    populations' number-weighted moments| (:func:`number_moments`). 0 for a quantity the models
    agree on, NaN when the Gaussian or the skewed fit failed (the shift is then unknown), 0 when
    the Gaussian's width is an upper limit (a pattern that does not resolve the width says
    nothing of the shape; the skewed fit wanders up the R-σ valley, 0.1-0.9 nm from the
    Gaussian's R in the first seconds, and R, c's errors hold the width already). One
    frame's shift scatters (the skewed R is poorly held along γ); :class:`SizeModelError`
    makes the error of it, with :func:`resolved_fraction`."""
    if not (gaussian.success and skewed.success):
        return math.nan, math.nan, math.nan
    if math.isfinite(gaussian.sigma_upper_nm):
        return 0.0, 0.0, 0.0
    fitted = (gaussian.radius_nm, gaussian.sigma_nm, gaussian.concentration_molar)
    shifts = [abs(g - m) for g, m in zip(fitted, (skewed.radius_nm, skewed.sigma_nm,
                                                  skewed.concentration_molar))]
    if two is not None:
        shifts = [max(shift, abs(g - m)) for shift, g, m in zip(shifts, fitted, number_moments(two))]
    return tuple(shifts)


def resolved_fraction(gaussian: SphereFit, skewed: SkewedFit) -> float:
    """The part of a frame's skewed shift (:func:`size_model_systematic`) that is bias rather
    than noise: √(1 − 1/Δχ²), 0 for Δχ² ≤ 1, with Δχ² = χ²(Gaussian) − χ²(skewed) the
    pattern's evidence for a skewness γ ≠ 0 (1 when either fit failed: the shift is NaN then).

    The Gaussian is the skewed model at γ = 0. To first order the shift is k·γ̂ and
    Δχ² = γ̂²/var(γ̂), so the shift's own noise has variance k²·var(γ̂) = shift²/Δχ² and
    shift²·(1 − 1/Δχ²) is the unbiased estimate of the squared bias k²γ² (the variance of the
    difference of two nested estimators, Hausman 1978). Where the pattern barely resolves the
    shape (5-60 s of a thermal flask, Δχ² of a few) the full shift was mostly γ̂'s noise: 1.8-3×
    the statistical error, ~2× the Gaussian's actual bias (tests/test_size_model_error.py)."""
    if not (gaussian.success and skewed.success):
        return 1.0
    evidence = gaussian.chi2_reduced * (gaussian.n_points - _GAUSSIAN_PARAMETERS) - skewed.chi2
    return math.sqrt(1.0 - 1.0 / evidence) if evidence > 1.0 else 0.0


def number_moments(two: BimodalFit) -> tuple[float, float, float]:
    """Number-weighted mean radius (nm), standard deviation (nm) and number concentration
    (mol/L) of both populations of ``two`` together."""
    c1, c2 = two.concentration1_molar, two.concentration2_molar
    total = c1 + c2
    mean = (c1 * two.radius1_nm + c2 * two.radius2_nm) / total
    second = (c1 * (two.sigma1_nm**2 + two.radius1_nm**2)
              + c2 * (two.sigma2_nm**2 + two.radius2_nm**2)) / total
    return mean, math.sqrt(max(second - mean**2, 0.0)), total


class SizeModelError:
    """The size-model (systematic) error of each frame's Gaussian fit, frame after frame.

    The bias of S2.3's Gaussian is the flask's shape (a tail of small crystals, a second set),
    which changes slowly from frame to frame, while one frame's estimate of it, the shift of
    :func:`size_model_systematic`, scatters: the skewed fit sits at its skewness bound in most
    frames and its R, poorly held along γ, now lands on the Gaussian's, now beyond. The error of
    a frame is the root mean square, over it and the ``FRAMES`` − 1 frames before (earlier
    frames only: live and replay alike), of the part of each shift that is bias
    (:func:`resolved_fraction`): each such shift² is an unbiased estimate of the squared bias,
    so their mean over frames that share one bias is too (the scale of the bias), and a frame
    whose alternative fit fell onto the Gaussian does not hide the bias of its neighbours. NaN
    when the frame's own shift is unknown. Thermal flask of tests/test_size_model_error.py
    (both flasks, noise seeds 5-7): pull spread 5-60 s 0.75-1.04 (radius), 0.77-1.00
    (concentration), radius pull RMS after 60 s 0.90-1.51; with the larger of each frame's full
    shift and the recent median, ~2x the bias before 60 s: 0.57-0.74, 0.62-0.76, 0.85-1.77.
    Default dry run (``ncsynth validate``), radius pull RMS after 60 s: 3.45 with each frame's
    own skewed shift alone."""

    FRAMES = 5

    def __init__(self):
        self._recent: list[np.ndarray] = []

    def add(self, shifts, resolved: float = 1.0) -> tuple[float, float, float]:
        """The error (R nm, σ nm, c mol/L) of the frame whose shifts are ``shifts``, of which
        the part ``resolved`` (:func:`resolved_fraction`) is bias."""
        shifts = np.array([float(x) for x in shifts])
        if not np.all(np.isfinite(shifts)):
            return math.nan, math.nan, math.nan
        self._recent = (self._recent + [float(resolved) * shifts])[-self.FRAMES:]
        return tuple(float(x) for x in np.sqrt(np.mean(np.square(self._recent), axis=0)))


def preferred_model(q_nm, intensity_cm, sigma_cm, gaussian: SphereFit, skewed: SkewedFit,
                    guess: BimodalFit | None = None):
    """(:class:`FrameModel`, the two-population fit or None) of one frame (see the module).

    ``gaussian`` and ``skewed``: the frame's single-population fits; ``guess``: the previous
    frame's two-population fit (warm start).
    """
    if skewed.success:
        single = FrameModel(1, skewed.concentration_molar, float(yield_fraction(
            skewed.radius_nm, skewed.sigma_nm, skewed.concentration_molar, 1.0,
            skewness=skewed.skewness)))
        dof, chi2 = skewed.n_points - SKEWED_PARAMETERS, skewed.chi2
    elif gaussian.success:
        single = FrameModel(1, gaussian.concentration_molar, float(yield_fraction(
            gaussian.radius_nm, gaussian.sigma_nm, gaussian.concentration_molar, 1.0)))
        return single, None
    else:
        return FrameModel(0, math.nan, math.nan), None
    if not chi2_distribution.sf(chi2, dof) < MISFIT_P_VALUE:
        return single, None
    two = fit_bimodal(q_nm, intensity_cm, sigma_cm, guess=guess if guess is not None else gaussian)
    if guess is not None and not _both_present(two):
        # a warm start that ended with a population of c <= 0 (two equal radii of opposite
        # concentrations, which the next frame would start from again): from the Gaussian
        two = fit_bimodal(q_nm, intensity_cm, sigma_cm, guess=gaussian)
    if not (_both_present(two) and delta_bic(two, skewed) >= MIN_DELTA_BIC):
        return single, two if two.success else None
    cadmium = sum(float(yield_fraction(r, s, c, 1.0)) for r, s, c in (
        (two.radius1_nm, two.sigma1_nm, two.concentration1_molar),
        (two.radius2_nm, two.sigma2_nm, two.concentration2_molar)))
    return FrameModel(2, two.concentration1_molar + two.concentration2_molar, cadmium), two


def _both_present(two: BimodalFit) -> bool:
    return two.success and two.concentration1_molar > 0 and two.concentration2_molar > 0
