"""How long nucleation lasts, from the data themselves (seed 000 §S.3.1–S.3.3, §S.5.2).

The paper takes the moments at which the nanocrystal concentration and the yield (S2.6) reach
98 % of their final values and calls their ratio the fraction of the synthesis spent
nucleating. It finds them by interpolating with S3.3 (concentration) and S3.2 (yield); the
flask's concentration build-up is S-shaped and S3.3 need not describe it (DESIGN.md: reduced
χ² ~700 on a dry run), so here the primary numbers come from the data:

* **definition** (:func:`time_to_fraction_of_final`): the final value is the curve's value at
  the last frame; t_f is the last time the curve rises through ``fraction`` × final (the curve
  may decline slightly after its maximum, e.g. by ripening; the last upward crossing is
  immune to an early outlier). The simulator's truth uses this very function on its record.
* **estimate** (:func:`completion_times`): each series is smoothed by a weighted local
  quadratic regression over ``SMOOTH_POINTS`` neighbouring frames (frames are spaced
  geometrically, so this is a fixed window in ln t), and the definition is applied to the smooth.
* **errors**: wild bootstrap — residuals from the smooth (leverage corrected) flipped in sign at
  random, the same flips for concentration and yield of a frame (their errors are correlated),
  re-smoothed; errors are half the 16–84 % spread of the resampled times, and of their ratio.
  The size-distribution model adds a systematic error (:func:`with_model_spread`): the
  concentration SAXS gives depends on the shape assumed for a population with a tail of small
  crystals, or for a second set of them.

A series whose 98 % time falls among its last frames has not settled (the run ended before
its plateau): flagged, ``success`` False. :func:`summarize_kinetics` gives a run's
``KineticsSummary``: these times with the paper's laws S3.3 and S3.2 fitted beside them
(:mod:`ncsynth.analysis.kinetics`, each with its reduced χ²). Times in s, concentrations in mol/L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ncsynth.analysis.kinetics import (CDSE_LATTICE_NM, CurveFit, fit_buildup, fit_second_order,
                                       time_to_fraction, yield_fraction, yield_fraction_err)

__all__ = ["FRACTION", "CompletionTimes", "KineticsSummary", "time_to_fraction_of_final",
           "local_polynomial_smooth", "completion_times", "with_model_spread", "summarize_kinetics"]

#: The paper's 98 % rule (§S.3.1).
FRACTION = 0.98
#: Frames in the window of the local polynomial smooth, and its degree (a quadratic keeps the
#: smoothing bias at the 98 % crossings of a simulated flask below ~0.1 of the noise error).
SMOOTH_POINTS = 11
SMOOTH_DEGREE = 2
BOOTSTRAP_SAMPLES = 400
#: The 98 % time must leave at least this share of the frames (and SMOOTH_POINTS) after it.
SETTLED_SHARE = 0.1


def time_to_fraction_of_final(time_s, values, fraction=FRACTION):
    """Last time (s) the curve rises through ``fraction`` × its value at the last time.

    ``values``: shape (N,) or (B, N) (one curve per row, on the common ``time_s``, which must
    increase); linear interpolation between samples. A curve that starts above the level gives
    ``time_s[0]``; a curve with a final value <= 0 gives NaN.
    """
    t = np.asarray(time_s, dtype=float)
    y = np.atleast_2d(np.asarray(values, dtype=float))
    final = y[:, -1]
    level = fraction * final
    below = y < level[:, None]
    last_below = y.shape[1] - 1 - np.argmax(below[:, ::-1], axis=1)
    k = np.minimum(last_below, y.shape[1] - 2)
    rows = np.arange(y.shape[0])
    y0, y1 = y[rows, k], y[rows, k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip((level - y0) / (y1 - y0), 0.0, 1.0)
    times = t[k] + share * (t[k + 1] - t[k])
    times = np.where(below.any(axis=1), times, t[0])
    times = np.where(final > 0, times, math.nan)
    return float(times[0]) if np.ndim(values) == 1 else times


def _windows(time_s, points):
    n = time_s.size
    k = min(points, n)
    start = np.clip(np.arange(n) - k // 2, 0, n - k)
    index = start[:, None] + np.arange(k)
    return index, time_s[index] - time_s[:, None]


def local_polynomial_smooth(time_s, values, weights, points=SMOOTH_POINTS, degree=SMOOTH_DEGREE):
    """Weighted local polynomial regression at every sample; returns (smooth, leverage).

    Each sample gets a polynomial of ``degree`` in (t − tᵢ) fitted to the ``points`` samples
    nearest in index (window shifted inwards at the ends) with ``weights`` (e.g. 1/σ²); its
    constant term is the smoothed value (a Savitzky–Golay filter for uneven steps).
    ``values``: shape (N,) or (B, N). ``leverage`` (N,): the weight of a sample's own value in
    its smoothed value.
    """
    t = np.asarray(time_s, dtype=float)
    index, dt = _windows(t, points)
    scale = np.abs(dt).max(axis=1, keepdims=True)
    basis = (dt / np.where(scale > 0, scale, 1.0))[..., None] ** np.arange(degree + 1)  # (N, K, D)
    weighted = basis * np.asarray(weights, dtype=float)[index][..., None]
    normal = np.einsum("nkd,nke->nde", weighted, basis)
    kernel = np.linalg.solve(normal, weighted.transpose(0, 2, 1))[:, 0, :]  # (N, K)
    smooth = np.einsum("nk,...nk->...n", kernel, np.asarray(values, dtype=float)[..., index])
    own = np.arange(t.size) - index[:, 0]
    return smooth, kernel[np.arange(t.size), own]


@dataclass(frozen=True)
class CompletionTimes:
    """98 % times of the concentration and of the yield from the data, their ratio, and errors.

    ``*_final``: the smoothed final values the 98 % refer to. ``success`` False (with
    ``reason``) when a series is too short or has not settled; values are then still given
    where they could be computed. ``*_syst``: the size-distribution model's share of the
    errors (:func:`with_model_spread`), already included in ``*_err``.
    """

    fraction: float
    t_concentration_s: float
    t_concentration_err_s: float
    t_yield_s: float
    t_yield_err_s: float
    nucleation_fraction: float
    nucleation_fraction_err: float
    concentration_final_molar: float
    yield_final: float
    n_points: int
    success: bool
    reason: str = ""
    t_concentration_syst_s: float = 0.0
    t_yield_syst_s: float = 0.0
    nucleation_fraction_syst: float = 0.0


def _spread(samples):
    finite = samples[np.isfinite(samples)]
    if finite.size < 0.9 * samples.size:
        return math.nan
    low, high = np.percentile(finite, [15.87, 84.13])
    return float(0.5 * (high - low))


def completion_times(time_s, concentration_molar, concentration_err_molar, yields, yield_err,
                     fraction=FRACTION, *, points=SMOOTH_POINTS, samples=BOOTSTRAP_SAMPLES,
                     seed=0) -> CompletionTimes:
    """98 % times (§S.3) of ``concentration_molar`` and ``yields`` against ``time_s`` (see module).

    Frames where either value or error is not finite (failed fits) or an error is <= 0 are left
    out; the errors serve as weights 1/σ² of the smooth. ``seed`` makes the bootstrap repeatable.
    """
    t = np.asarray(time_s, dtype=float)
    columns = [np.asarray(a, dtype=float) for a in (concentration_molar, concentration_err_molar,
                                                     yields, yield_err)]
    keep = np.isfinite(t) & np.all([np.isfinite(c) for c in columns], axis=0)
    keep &= (columns[1] > 0) & (columns[3] > 0)
    order = np.argsort(t[keep], kind="stable")
    t = t[keep][order]
    c, c_err, y, y_err = (col[keep][order] for col in columns)
    nan = math.nan
    if t.size < 2 * points:
        return CompletionTimes(fraction, nan, nan, nan, nan, nan, nan, nan, nan, int(t.size), False,
                               f"{t.size} usable frames, need {2 * points} for the 98 % times")
    rng = np.random.default_rng(seed)
    flips = rng.choice([-1.0, 1.0], size=(samples, t.size))
    results, finals, resampled = [], [], []
    for values, errors in ((c, c_err), (y, y_err)):
        weights = 1.0 / errors ** 2
        smooth, leverage = local_polynomial_smooth(t, values, weights, points)
        residual = (values - smooth) / np.sqrt(np.clip(1.0 - leverage, 1e-3, None))
        boot, _ = local_polynomial_smooth(t, smooth + flips * residual, weights, points)
        results.append(time_to_fraction_of_final(t, smooth, fraction))
        finals.append(float(smooth[-1]))
        resampled.append(time_to_fraction_of_final(t, boot, fraction))
    (t_c, t_y), (boot_c, boot_y) = results, resampled
    ratio = t_c / t_y if t_y > 0 else nan
    reasons = []
    after_needed = max(points, int(math.ceil(SETTLED_SHARE * t.size)))
    for name, value in (("concentration", t_c), ("yield", t_y)):
        after = int(np.count_nonzero(t > value))
        if not after >= after_needed:
            reasons.append(f"{name}: {fraction:.0%} of its last value is reached with only {after} "
                           f"frame{'' if after == 1 else 's'} after it (need {after_needed}): not settled before the run ended")
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_ratio = boot_c / boot_y
    return CompletionTimes(fraction, t_c, _spread(boot_c), t_y, _spread(boot_y), ratio,
                           _spread(boot_ratio), finals[0], finals[1], int(t.size), not reasons,
                           "; ".join(reasons))


def with_model_spread(primary: CompletionTimes, alternative: CompletionTimes) -> CompletionTimes:
    """``primary`` with half its difference from ``alternative`` added to the errors as systematic.

    SAXS sees a crystal by its V²: the number concentration of a population with a tail of small
    crystals, or with a second set of them, depends on the model assumed (S2.3's one Gaussian
    against the model each frame prefers; a few % in a simulated flask while it nucleates), and
    so do the 98 % times. Half the
    difference between the two models' times is taken as a ±1σ systematic error, added in
    quadrature. Without a usable alternative, ``primary`` is returned unchanged.
    """
    pairs = {"t_concentration": (primary.t_concentration_s, alternative.t_concentration_s),
             "t_yield": (primary.t_yield_s, alternative.t_yield_s),
             "nucleation_fraction": (primary.nucleation_fraction, alternative.nucleation_fraction)}
    spread = {name: 0.5 * abs(a - b) for name, (a, b) in pairs.items()}
    if not all(math.isfinite(v) for v in spread.values()):
        return primary
    return replace(
        primary,
        t_concentration_err_s=math.hypot(primary.t_concentration_err_s, spread["t_concentration"]),
        t_yield_err_s=math.hypot(primary.t_yield_err_s, spread["t_yield"]),
        nucleation_fraction_err=math.hypot(primary.nucleation_fraction_err,
                                           spread["nucleation_fraction"]),
        t_concentration_syst_s=spread["t_concentration"], t_yield_syst_s=spread["t_yield"],
        nucleation_fraction_syst=spread["nucleation_fraction"])


@dataclass(frozen=True)
class KineticsSummary:
    """Kinetics of one synthesis run (§S.3): 98 % times from the data, the laws beside them.

    ``times``: :class:`~ncsynth.analysis.nucleation_period.CompletionTimes` from the data
    (the primary numbers: 98 % times of concentration and yield, the nucleation fraction
    t_f(concentration)/t_f(yield), bootstrap errors). ``concentration_fit`` (S3.3) and
    ``yield_fit`` (S3.2) with their own 98 % times ``law_t_*`` (errors from the covariance,
    scaled by χ²_red where the law misfits). ``success``/``reason`` are the data times';
    ``law_note`` says which law does not describe the data or reaches 98 % only by
    extrapolation.
    """

    times: CompletionTimes
    concentration_fit: CurveFit
    yield_fit: CurveFit
    law_t_concentration_s: float
    law_t_concentration_err_s: float
    law_t_yield_s: float
    law_t_yield_err_s: float
    law_note: str


def summarize_kinetics(time_s, radius_nm, sigma_nm, concentration_molar, cd_initial_molar, beta,
                       concentration_err_molar, radius_err_nm, sigma_err_nm, fraction=FRACTION,
                       fit_delay=False, fit_beta=False, lattice_nm=CDSE_LATTICE_NM,
                       preferred=None, laws_skipped="") -> KineticsSummary:
    """The 98 % times from the data and S3.3/S3.2 fits of a run's frames (S2.5–S2.6 for the yield).

    Per-frame arrays (failed frames as NaN): ``time_s`` since injection, the Gaussian fits'
    ``radius_nm``, ``sigma_nm``, ``concentration_molar`` with their standard errors.
    ``cd_initial_molar``: Cd in the flask (scalar, or per frame after a second injection, S2.6).
    ``preferred``: optional (concentration_molar, cadmium_molar) per frame of the size model
    each frame prefers (:mod:`ncsynth.analysis.frame_model`: one skewed population, or two where
    they fit far better); when at least half the frames have it, it gives the primary numbers
    and the Gaussian fits the model's systematic error (:func:`with_model_spread`); the errors
    of the Gaussian fits serve as the weights of both. ``laws_skipped``: why S3.3 and S3.2 do
    not apply to the run (a second injection): they are not fitted, their fields NaN.
    """
    cd = np.asarray(cd_initial_molar, dtype=float)
    yields = yield_fraction(radius_nm, sigma_nm, concentration_molar, 1.0, lattice_nm) / cd
    yield_errors = yield_fraction_err(radius_nm, radius_err_nm, sigma_nm, sigma_err_nm,
                                      concentration_molar, concentration_err_molar, 1.0,
                                      lattice_nm) / cd
    times = completion_times(time_s, concentration_molar, concentration_err_molar, yields,
                             yield_errors, fraction)
    if preferred is not None and np.count_nonzero(np.isfinite(preferred[0])) >= 0.5 * np.size(time_s):
        concentration_molar = np.asarray(preferred[0], dtype=float)
        preferred_yields = np.asarray(preferred[1], dtype=float) / cd
        with np.errstate(invalid="ignore", divide="ignore"):
            yield_errors = yield_errors * preferred_yields / yields
        yields = preferred_yields
        times = with_model_spread(completion_times(time_s, concentration_molar, concentration_err_molar,
                                                   yields, yield_errors, fraction), times)
    concentration_fit = fit_buildup(time_s, concentration_molar, concentration_err_molar, fit_delay,
                                    skip=laws_skipped)
    cd_for_law = float(np.nanmedian(np.broadcast_to(cd_initial_molar, np.shape(time_s))))
    yield_fit = fit_second_order(time_s, yields, cd_for_law, beta, yield_errors,
                                 fit_beta=fit_beta, fit_delay=fit_delay, skip=laws_skipped)
    if laws_skipped:
        return KineticsSummary(times, concentration_fit, yield_fit, *(math.nan,) * 4,
                               f"S3.3 and S3.2 not fitted: {laws_skipped}")
    law_times, notes = [], []
    for name, fit, values in (("concentration", concentration_fit, concentration_molar),
                              ("yield", yield_fit, yields)):
        t_f, t_err = time_to_fraction(fit, fraction)
        law_times += [t_f, t_err]
        if fit.reason:
            notes.append(f"{name}: {fit.reason}")
        last_s = _last_usable_time(time_s, values)
        if math.isfinite(t_f) and t_f > last_s:
            notes.append(f"{name}: {fit.law} reaches {fraction:.0%} at {t_f:.4g} s by extrapolation, "
                         f"after the last usable frame ({last_s:.4g} s)")
    return KineticsSummary(times, concentration_fit, yield_fit, *law_times, "; ".join(notes))


def _last_usable_time(time_s, values) -> float:
    """Latest time (s) with a finite value; -inf if there is none."""
    t = np.asarray(time_s, dtype=float)
    usable = np.isfinite(t) & np.isfinite(np.broadcast_to(np.asarray(values, dtype=float), t.shape))
    return float(t[usable].max()) if usable.any() else -math.inf
