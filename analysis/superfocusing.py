"""From the frames after a second injection to the growth exponent n (seed 000 §S.4.3–S.4.4, §S.5).

The chain of §S.5.1: every reduced pattern after piston B is fitted with two Gaussian
sphere populations (:func:`~ncsynth.analysis.bimodal.fit_bimodal`, warm-started frame to
frame), giving the radius r₁ of the large (first) set and r₂ of the small (new) set. A pair
counts when both radii are resolved: the sets do not overlap (|r₁ − r₂| ≥ σ₁ + σ₂) and each
radius has a finite error below ``MAX_RELATIVE_RADIUS_ERROR``. (The fit's ``separable`` flag
also rejects strongly correlated concentrations, c₁ against c₂, which do not matter for the
radii.) While
the new set still nucleates, fresh nuclei pull its mean radius down and S4.15 does not
hold; so only frames after its number concentration has levelled off (reached
``settled_fraction`` of its final value for good, judged on a 7-frame running median) and
where both sets are resolved enter the fit of
r₁ⁿ⁺¹ − r₂ⁿ⁺¹ = C (S4.15, :func:`~ncsynth.analysis.growth.fit_growth_exponent`), with the
radii's standard errors. Times in s after piston A, radii in nm, concentrations in mol/L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncsynth.analysis.bimodal import BimodalFit, fit_bimodal
from ncsynth.analysis.growth import ExponentFit, fit_growth_exponent

__all__ = ["SecondInjectionAnalysis", "analyze_second_injection"]

#: Fraction of the plateau number concentration of the new set after which it counts as formed
#: (the plateau is the median over the later half of the resolved frames; single-frame
#: concentrations scatter by ~10 %, so the threshold sits a few sigma of the 7-frame median below).
SETTLED_FRACTION = 0.9
#: A radius with a larger relative standard error does not enter the exponent fit.
MAX_RELATIVE_RADIUS_ERROR = 0.05


@dataclass(frozen=True)
class SecondInjectionAnalysis:
    """Per-frame two-population fits after the second injection and the exponent from them.

    Arrays run over the frames after the injection (``time_s``, s after piston A); ``used``
    marks the pairs that entered ``exponent``.
    """

    time_s: np.ndarray
    fits: tuple[BimodalFit, ...]
    large_radius_nm: np.ndarray
    large_radius_err_nm: np.ndarray
    small_radius_nm: np.ndarray
    small_radius_err_nm: np.ndarray
    small_concentration_molar: np.ndarray
    used: np.ndarray
    exponent: ExponentFit

    def summary(self) -> dict:
        """JSON-friendly figures: n with its interval and how many pairs gave it."""
        fit = self.exponent
        return {"growth_exponent": fit.n, "growth_exponent_err": fit.n_err,
                "growth_exponent_interval": [fit.n_lower, fit.n_upper],
                "growth_exponent_pairs": int(self.used.sum()),
                "growth_exponent_reason": fit.reason,
                "bimodal_frames": len(self.fits),
                "resolved_frames": int(np.isfinite(self.small_radius_nm).sum())}


def analyze_second_injection(time_s, q_nm, intensity_cm, sigma_cm, second_injection_s: float, *,
                             settled_fraction: float = SETTLED_FRACTION,
                             q_range_nm=None) -> SecondInjectionAnalysis:
    """Fit both populations in every frame after ``second_injection_s`` and n from S4.15.

    ``time_s``: frame times (s after piston A), shape (N,); ``q_nm`` (nm⁻¹): shape (M,) or
    (N, M); ``intensity_cm``, ``sigma_cm`` (cm⁻¹): shape (N, M). Frames are fitted in time
    order, each warm-started from the previous successful fit.
    """
    time_s = np.asarray(time_s, dtype=float)
    intensity = np.atleast_2d(np.asarray(intensity_cm, dtype=float))
    sigma = np.atleast_2d(np.asarray(sigma_cm, dtype=float))
    q = np.asarray(q_nm, dtype=float)
    q = np.broadcast_to(q, intensity.shape) if q.ndim == 1 else q
    if not (time_s.ndim == 1 and intensity.shape == sigma.shape == q.shape
            and intensity.shape[0] == time_s.size):
        raise ValueError(f"time_s (N,), q_nm (M,) or (N, M), intensity_cm and sigma_cm (N, M) "
                         f"must agree; got {time_s.shape}, {q.shape}, {intensity.shape}, "
                         f"{sigma.shape}")
    if not 0 < settled_fraction <= 1:
        raise ValueError(f"settled_fraction must be in (0, 1], got {settled_fraction!r}")
    after = np.flatnonzero(time_s > second_injection_s)
    after = after[np.argsort(time_s[after], kind="stable")]
    fits, guess = [], None
    for i in after:
        fit = fit_bimodal(q[i], intensity[i], sigma[i], guess=guess, q_range_nm=q_range_nm)
        fits.append(fit)
        if fit.success:
            guess = fit

    def column(name):
        return np.array([getattr(f, name) if _resolved(f) else np.nan for f in fits])

    r1, e1 = column("radius1_nm"), column("radius1_err_nm")
    r2, e2 = column("radius2_nm"), column("radius2_err_nm")
    c2 = column("concentration2_molar")
    used = np.isfinite(r1) & np.isfinite(r2) & (e1 > 0) & (e2 > 0)
    if used.any():
        # formed: from the last resolved frame still below the plateau on (a spurious early
        # "second set" before the real one nucleated must not enter the fit)
        # (c2 judged by a running median over 7 resolved frames: single noisy frames do not
        # move the start)
        resolved = np.flatnonzero(used)
        final = np.median(c2[resolved[resolved.size // 2:]])  # the plateau: the later half
        smooth = np.array([np.median(c2[resolved[max(0, k - 3):k + 4]])
                           for k in range(resolved.size)])
        forming = resolved[smooth < settled_fraction * final]
        if forming.size:
            used[:forming[-1] + 1] = False
    if used.sum() >= 3:
        exponent = fit_growth_exponent(r1[used], r2[used], e1[used], e2[used])
    else:
        exponent = ExponentFit.failed(f"only {int(used.sum())} separable frames after the new set "
                                      f"formed, need at least 3", int(used.sum()))
    return SecondInjectionAnalysis(time_s[after], tuple(fits), r1, e1, r2, e2, c2, used, exponent)


def _resolved(fit: BimodalFit) -> bool:
    """Both radii of ``fit`` determined and the two sets apart (see the module docstring)."""
    if not fit.success:
        return False
    apart = fit.radius1_nm - fit.radius2_nm >= fit.sigma1_nm + fit.sigma2_nm
    precise = all(np.isfinite(e) and 0 < e <= MAX_RELATIVE_RADIUS_ERROR * r
                  for r, e in ((fit.radius1_nm, fit.radius1_err_nm),
                               (fit.radius2_nm, fit.radius2_err_nm)))
    return bool(apart and precise)
