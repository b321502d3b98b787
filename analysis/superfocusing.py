"""From the frames after a second injection to the growth exponent n (seed 000 §S.4.3–S.4.4, §S.5).

The chain of §S.5.1, frame by frame after piston B:

1. **Two populations or one skewed one?** Each reduced pattern is fitted with two Gaussian sphere
   populations (:func:`~ncsynth.analysis.bimodal.fit_bimodal`, 7 parameters, warm-started frame to
   frame) and with one skewed population (:func:`~ncsynth.analysis.skewed.fit_skewed`, 5
   parameters): a skewed single population fits two Gaussians better than one Gaussian, so that
   is the comparison that counts. A frame is *bimodal* when the two sets are resolved (apart by
   more than the sum of their widths, |r₁ − r₂| ≥ σ₁ + σ₂, each radius with a finite relative
   error below ``MAX_RELATIVE_RADIUS_ERROR``) and the Bayesian information criterion
   BIC = χ² + k·ln N prefers them by at least ``MIN_DELTA_BIC`` ("very strong" evidence).
   A bimodal frame's larger set must also be the first set: those crystals can only dissolve
   after piston B, so a larger set holding more than ``FIRST_SET_NUMBER_RATIO`` times the
   crystals present before B (the one-population fits of the last ``BEFORE_FRAMES`` frames
   before it, times syringe B's dilution) is something else (e.g. the bulk of both sets, with
   the new set's small-crystal tail as the "second"), and the frame is not bimodal.
2. **Onset** of the new set, from the data after piston B. A new set adds crystals: the number
   of crystals (c₁ + c₂ of a bimodal frame, else the skewed population's) over that before B
   times the dilution, in running medians from ``MIXING_S`` after B, must reach
   ``NEW_SET_NUMBER_RATIO`` for ``ONSET_FRAMES`` frames; the onset is where it stays there to
   the end of the run (where it first did, if it falls back: ripening), or the first of
   ``ONSET_FRAMES`` consecutive bimodal frames, if earlier. A number that never rises is "no second population
   after piston B", whatever the two-Gaussian fits say (one population with a tail of small
   crystals also beats one Pearson III population). A new set that forms while the first one
   still nucleates (piston B seconds after A) overlaps it in size and may never be told apart:
   then the number says that it formed, and step 6 splits the sets by it.
   Without frames before B only the bimodal frames count.
3. **Window where both sets grow.** While the new set still nucleates, fresh nuclei pull its
   mean radius down and S4.15 does not hold; once it stops growing (the supersaturation is
   spent, ripening dissolves it) neither does it. On the bimodal frames from the onset, with
   running medians over ``RUNNING_FRAMES`` frames: the window starts when the new set has
   formed, the number of crystals (``number_ratio``; without frames before B the new set's
   c₂) first reaching ``SETTLED_FRACTION`` of its largest value, and ends when r₂ is largest,
   or earlier where that number falls below ``DISSOLVING_FRACTION`` of its largest value, or
   where the first set's radius r₁ has made ``GROWN_FRACTION`` of its rise (it no longer
   grows; e.g. a simulated flask whose crystals reach the top of its radius grid). No window
   (r₁ stopped before the number settled): no exponent, and the summary says why. (The total
   number, not c₂: where the sets overlap, crystals move between the two Gaussians and c₂ kept
   creeping up for 700 s after the count had settled, 20 s delay, n = 2.)
4. **n** from the pairs in the window: r₁ⁿ⁺¹ − r₂ⁿ⁺¹ = C (S4.15,
   :func:`~ncsynth.analysis.growth.fit_growth_exponent`) with the radii's standard errors and
   their correlation within a frame (~0.99: the two radii move together in a fit).
5. **Model spread.** A set with a tail of small crystals (the first set's own nucleation; the
   new set while it nucleates and when it ripens) is not a Gaussian, and the small crystals
   scatter little (V²): a Gaussian sits on the bulk, and its mean runs above the set's number
   mean (in a simulated flask the new set's by 0.03–0.08 nm, 5–10 standard errors, at χ²_red ≈ 1,
   so the pattern cannot tell the models apart). The pairs are fitted again with the first set
   skewed (:func:`~ncsynth.analysis.skewed.fit_skewed_and_gaussian`) and with both sets skewed
   (Pearson III, :func:`~ncsynth.analysis.bimodal.fit_skewed_pair`). Neither is right for
   every frame (the Pearson III pair recovers the number means when the tails are Pearson III
   shaped, and scatters where the pattern leaves the skewness loose), and the flask's
   effective exponent was found between the models' (two Gaussians 3.44, Pearson III pair
   3.81, flask 3.53; two Gaussians 3.79, pair 3.64, flask 3.56): n is the middle of the three
   exponents, half their range a systematic error added in quadrature to the two-Gaussian
   fit's error and interval.
6. **Sets never told apart** (piston B while the first set still nucleates: they overlap in
   size; two Gaussians never apart and preferred in ``ONSET_FRAMES`` frames in a row, whatever
   their numbers: two sets apart whose larger one holds more crystals than the first set
   contradict the order of the radii, and give no n), but the number says a new set formed:
   the first set is still the N₁ largest
   crystals (growth keeps the order of the radii; N₁ = the count before B times the dilution,
   as the flask's truth is split, :mod:`~ncsynth.analysis.number_split`). r₁ and r₂ are the
   means of the N₁ largest crystals and of the rest of each frame's fitted number
   distribution: the two-Gaussian fit's sum (whether resolved or not) and, as the alternative
   size model, the Pearson III population. Window as in step 3 on those pairs; n of S4.15 from
   each model with the errors from the scatter (no per-pair errors), n the middle of the two,
   half their difference a systematic as in step 5 (20 s delay, simulated beamline: the
   Pearson III split runs 0.1–0.4 above the Gaussians' in n, the flask in between).

Times in s after piston A, radii in nm, concentrations in mol/L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ncsynth.analysis.bimodal import BimodalFit, fit_bimodal
from ncsynth.analysis.frame_model import MIN_DELTA_BIC, delta_bic
from ncsynth.analysis.growth import ExponentFit, fit_growth_exponent
from ncsynth.analysis.number_split import split_fits
from ncsynth.analysis.pair_exponent import growth_exponent, with_model_spread
from ncsynth.analysis.saxs import fit_pattern
from ncsynth.analysis.skewed import SkewedFit, fit_skewed

__all__ = ["SecondInjectionAnalysis", "analyze_second_injection"]

#: A radius with a larger relative standard error does not count as resolved.
MAX_RELATIVE_RADIUS_ERROR = 0.05
#: Consecutive bimodal frames that mark the new set's onset.
ONSET_FRAMES = 3
#: Running-median length (frames) for c₂ and r₂ when choosing the window.
RUNNING_FRAMES = 7
#: The new set has formed once its number reaches this fraction of its largest value ...
SETTLED_FRACTION = 0.95
#: ... and dissolves (ripening) once it falls below this fraction after it.
DISSOLVING_FRACTION = 0.9
#: The first set has stopped growing once its radius has made this fraction of its rise.
GROWN_FRACTION = 0.98
#: Frames before piston B (the latest) whose one-population fits give the crystals present then.
BEFORE_FRAMES = 5
#: A new set has formed once the number of crystals exceeds this multiple of that before B
#: times the dilution ...
NEW_SET_NUMBER_RATIO = 1.1
#: ... and a bimodal fit whose larger set holds more than this multiple has not found the first set.
FIRST_SET_NUMBER_RATIO = 1.5
#: Frames this soon after piston B do not count the crystals: the charge is not mixed in yet (a
#: dry run's first 3 frames, 0.04–0.23 s after B, still saw the undiluted number).
MIXING_S = 1.0


@dataclass(frozen=True)
class SecondInjectionAnalysis:
    """Per-frame fits after the second injection, the window and the exponent from them.

    Arrays run over the frames after the injection (``time_s``, s after piston A). Radii, errors
    and c₂ are NaN where a frame is not ``bimodal``; ``delta_bic`` = BIC(skewed) − BIC(two);
    ``used`` marks the pairs that entered ``exponent``. ``onset_s`` (s after piston A) and
    ``window_s`` (start, end) are NaN when no second population formed; ``resolved_s``: the
    first of ``ONSET_FRAMES`` consecutive bimodal frames (NaN: never); ``number_ratio``: the
    number of crystals over ``number_before_molar``, the crystals before B times syringe B's
    dilution (mol/L, NaN without frames before B).
    """

    time_s: np.ndarray
    second_injection_s: float
    fits: tuple[BimodalFit, ...]
    skewed_fits: tuple[SkewedFit, ...]
    delta_bic: np.ndarray
    bimodal: np.ndarray
    large_radius_nm: np.ndarray
    large_radius_err_nm: np.ndarray
    small_radius_nm: np.ndarray
    small_radius_err_nm: np.ndarray
    small_concentration_molar: np.ndarray
    used: np.ndarray
    onset_s: float
    window_s: tuple[float, float]
    exponent: ExponentFit
    resolved_s: float
    number_before_molar: float
    number_ratio: np.ndarray
    split_radii_nm: np.ndarray

    @property
    def split_by_count(self) -> bool:
        """True when n came from step 6 (the sets split by the crystal count)."""
        return bool(np.isfinite(self.split_radii_nm).any())

    @property
    def second_population(self) -> bool:
        return math.isfinite(self.onset_s)

    def pairs(self):
        """(r₁, r₂, their errors) per frame (nm) of the kind n came from: the two populations'
        radii, or the count split's (step 6, no per-pair errors: NaN)."""
        if self.split_by_count:
            nan = np.full(self.time_s.size, np.nan)
            return self.split_radii_nm[:, 0], self.split_radii_nm[:, 1], nan, nan
        return (self.large_radius_nm, self.small_radius_nm, self.large_radius_err_nm,
                self.small_radius_err_nm)

    def exponent_pairs(self) -> dict:
        """What entered n: the frames' times (s after piston A), the radii's standard errors
        (nm) and their correlation, of the ``used`` pairs (to fit a true trace the same way)."""
        used = self.used
        if self.split_by_count:  # step 6: equal weights, the errors from the scatter
            return {"time_s": self.time_s[used]}
        correlation = np.array([f.radius_correlation for f in self.fits], dtype=float)
        return {"time_s": self.time_s[used], "r1_err_nm": self.large_radius_err_nm[used],
                "r2_err_nm": self.small_radius_err_nm[used], "radius_correlation": correlation[used]}

    def summary(self) -> dict:
        """JSON-friendly figures: n with its interval, the window and how many pairs gave it."""
        fit = self.exponent
        after_b = [t - self.second_injection_s for t in self.window_s]
        return {"growth_exponent": fit.n, "growth_exponent_err": fit.n_err,
                "growth_exponent_interval": [fit.n_lower, fit.n_upper],
                "growth_exponent_pairs": int(self.used.sum()),
                "growth_exponent_pairs_from": ("count split" if self.split_by_count
                                               else "two populations"),
                "growth_exponent_reason": fit.reason,
                "growth_exponent_model_spread": fit.model_spread,
                "growth_exponent_window_s": list(self.window_s),
                "growth_exponent_window_after_b_s": after_b,
                "second_population": self.second_population,
                "second_population_onset_after_b_s": self.onset_s - self.second_injection_s,
                "second_population_resolved_after_b_s": self.resolved_s - self.second_injection_s,
                "crystal_number_ratio_max": _largest(_running_median(self.number_ratio)),
                "bimodal_frames": int(self.bimodal.sum()), "frames_after_b": len(self.fits)}


def _running_median(values, frames=RUNNING_FRAMES):
    half = frames // 2
    return np.array([np.median(values[max(0, k - half):k + half + 1]) for k in range(values.size)])


def _largest(values) -> float:
    return float(np.nanmax(values)) if np.isfinite(values).any() else math.nan


def _first_run(flags, frames=ONSET_FRAMES):
    """Index of the first of ``frames`` consecutive true ``flags``, or None."""
    if len(flags) < frames:
        return None
    runs = np.flatnonzero(np.convolve(flags, np.ones(frames), "valid") == frames)
    return int(runs[0]) if runs.size else None


def _rise(above):
    """Index from which ``above`` holds to the end (at least ``ONSET_FRAMES`` frames), else
    the first of ``ONSET_FRAMES`` consecutive true values, else None."""
    first = _first_run(above)
    below = np.flatnonzero(~above)
    if first is None or not below.size:
        return first
    return int(below[-1]) + 1 if above.size - 1 - below[-1] >= ONSET_FRAMES else first


def _number_before(q, intensity, sigma, before, q_range_nm) -> float:
    """Median number concentration (mol/L) of one-population fits to the frames ``before`` (NaN: none)."""
    values = [fit.concentration_molar for fit in (
        fit_pattern(q[i], intensity[i], sigma[i], q_range_nm=q_range_nm) for i in before)
        if fit.success and fit.concentration_molar > 0]
    return float(np.median(values)) if values else math.nan


def _window(candidates, c2, r2, r1, times):
    """(first, last) index into the frames of the window where both sets grow, and "" or why
    there is none (see module); ``times`` in s after piston B. The first set has stopped
    growing once its running-median radius has made ``GROWN_FRACTION`` of its rise."""
    smooth_c2 = _running_median(c2[candidates])
    smooth_r2 = _running_median(r2[candidates])
    peak = smooth_c2.max()
    first = int(np.argmax(smooth_c2 >= SETTLED_FRACTION * peak))
    dissolving = np.flatnonzero((np.arange(candidates.size) > np.argmax(smooth_c2))
                                & (smooth_c2 < DISSOLVING_FRACTION * peak))
    last = first + int(np.argmax(smooth_r2[first:]))
    if dissolving.size:
        last = min(last, int(dissolving[0]) - 1)
    smooth_r1 = _running_median(r1[candidates])
    rise = smooth_r1.max() - smooth_r1.min()
    first_set_largest = int(np.argmax(smooth_r1 >= smooth_r1.min() + GROWN_FRACTION * rise))
    reason = ""
    if first_set_largest <= first:
        reason = (f"no window where both sets grow: the first set stopped growing "
                  f"{times[candidates[first_set_largest]]:.0f} s after piston B, before the new "
                  f"set had formed ({SETTLED_FRACTION:.0%} of its largest number "
                  f"{times[candidates[first]]:.0f} s after B)")
    last = min(last, first_set_largest)
    return candidates[first], candidates[max(last, first)], reason


def analyze_second_injection(time_s, q_nm, intensity_cm, sigma_cm, second_injection_s: float, *,
                             q_range_nm=None, dilution: float = 1.0) -> SecondInjectionAnalysis:
    """Fit every frame after ``second_injection_s`` (s after piston A) and n from S4.15 (see module).

    ``time_s``: frame times (s after piston A), shape (N,); ``q_nm`` (nm⁻¹): shape (M,) or
    (N, M); ``intensity_cm``, ``sigma_cm`` (cm⁻¹): shape (N, M). Frames are fitted in time
    order, each warm-started from the previous successful fits. ``dilution``: the factor
    (0, 1] by which syringe B dilutes what the flask held (S2.5: 1 − c₂/c_B; 1 if unknown).
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
    after = np.flatnonzero(time_s > second_injection_s)
    after = after[np.argsort(time_s[after], kind="stable")]
    before = np.flatnonzero(time_s <= second_injection_s)
    before = before[np.argsort(time_s[before], kind="stable")][-BEFORE_FRAMES:]
    if not 0 < dilution <= 1:
        raise ValueError(f"dilution must be in (0, 1], got {dilution!r}")
    number_before = _number_before(q, intensity, sigma, before, q_range_nm) * dilution
    fits, skewed_fits, guess, skewed_guess = [], [], None, None
    for i in after:
        fit = fit_bimodal(q[i], intensity[i], sigma[i], guess=guess, q_range_nm=q_range_nm)
        skewed = (fit_skewed(q[i], intensity[i], sigma[i], fit.single, guess=skewed_guess,
                             q_range_nm=q_range_nm)
                  if fit.single is not None else SkewedFit.failed(fit.reason))
        fits.append(fit)
        skewed_fits.append(skewed)
        guess = fit if fit.success else guess
        skewed_guess = skewed if skewed.success else skewed_guess
    delta_bics = np.array([delta_bic(f, s) for f, s in zip(fits, skewed_fits)])
    apart = np.array([_resolved(f) for f in fits], dtype=bool) & (delta_bics >= MIN_DELTA_BIC)
    not_first_set = apart & np.array([not f.concentration1_molar
                                      <= FIRST_SET_NUMBER_RATIO * number_before for f in fits])
    if not math.isfinite(number_before):  # nothing to compare the larger set with
        not_first_set[:] = False
    bimodal = apart & ~not_first_set
    number_ratio = np.array([(f.concentration1_molar + f.concentration2_molar if b
                              else sk.concentration_molar if sk.success
                              else f.single.concentration_molar if f.single is not None
                              else math.nan) for f, sk, b in zip(fits, skewed_fits, bimodal)]
                            ) / number_before
    number_ratio[time_s[after] - second_injection_s < MIXING_S] = math.nan

    def column(name):
        return np.array([getattr(f, name) if b else np.nan for f, b in zip(fits, bimodal)])

    r1, e1, r2, e2 = (column(n) for n in ("radius1_nm", "radius1_err_nm", "radius2_nm", "radius2_err_nm"))
    c2 = column("concentration2_molar")
    times = time_s[after]
    after_b = times - second_injection_s
    used = np.zeros(after.size, dtype=bool)
    resolved = _first_run(bimodal)
    counted = math.isfinite(number_before)
    smooth_ratio = _running_median(number_ratio)
    risen = _rise(smooth_ratio >= NEW_SET_NUMBER_RATIO) if counted else None
    formed = risen is not None if counted else resolved is not None
    onset = min((k for k in (resolved, risen) if k is not None), default=None) if formed else None
    nan = math.nan
    rejected = (f" ({int(not_first_set.sum())} more rejected: their larger set held over "
                f"{FIRST_SET_NUMBER_RATIO:g}x the crystals left from before piston B)"
                if not_first_set.any() else "")
    told_apart = (f"two populations beat one skewed population (delta BIC >= {MIN_DELTA_BIC:g}) "
                  f"in {int(bimodal.sum())} of {after.size} frames{rejected}"
                  + ("" if resolved is not None else f", never {ONSET_FRAMES} in a row"))
    split = np.full((after.size, 2), nan)
    exponent, window = None, (nan, nan)
    if not formed:
        number = (f"the number of crystals stayed below {NEW_SET_NUMBER_RATIO:g}x that "
                  f"before it times syringe B's dilution (at most "
                  f"{_largest(smooth_ratio):.2f}x); " if counted else "")
        exponent = ExponentFit.failed(f"no second population after piston B: {number}{told_apart}")
    elif resolved is not None:
        candidates = np.flatnonzero(bimodal & (np.arange(after.size) >= resolved))
        first, last, no_window = _window(candidates, number_ratio if counted else c2, r2, r1, after_b)
        if no_window:
            exponent = ExponentFit.failed(no_window)
        else:
            used[first:last + 1] = bimodal[first:last + 1]
            window = (float(times[first]), float(times[last]))
            if used.sum() < 3:
                exponent = ExponentFit.failed(f"only {int(used.sum())} pairs in the window where "
                                              f"both sets grow, need at least 3", int(used.sum()))
            else:
                pick = after[used]
                exponent = growth_exponent(q[pick], intensity[pick], sigma[pick],
                                           [f for f, u in zip(fits, used) if u],
                                           q_range_nm=q_range_nm)
        if not exponent.success:  # say how rarely the two sets were told apart at all
            exponent = replace(exponent, reason=f"{exponent.reason}; two sets told apart in "
                                                f"{int(bimodal.sum())} of {after.size} frames "
                                                f"after piston B{rejected}")
    never_apart = _first_run(apart) is None
    if formed and resolved is None:
        reason = (f"a second set formed (the number of crystals rose above "
                  f"{NEW_SET_NUMBER_RATIO:g}x that before piston B times its dilution "
                  f"{after_b[onset]:.0f} s after B, to {_largest(smooth_ratio):.1f}x) but was "
                  f"never told apart from the first ({told_apart})")
        exponent = ExponentFit.failed(f"{reason}: the data cannot constrain n")
        if counted and never_apart:  # step 6: split by the count
            split_fit, split_used, split_radii, split_window = _split_exponent(
                fits, skewed_fits, number_before, number_ratio, after_b)
            exponent = split_fit if split_fit.success else ExponentFit.failed(
                f"{reason} and {split_fit.reason}: the data cannot constrain n")
            if split_fit.success:
                used, split = split_used, split_radii
                window = tuple(float(times[k]) for k in split_window)
    return SecondInjectionAnalysis(
        times, float(second_injection_s), tuple(fits), tuple(skewed_fits), delta_bics, bimodal,
        r1, e1, r2, e2, c2, used, nan if onset is None else float(times[onset]), window,
        exponent, nan if resolved is None else float(times[resolved]), number_before,
        number_ratio, split)


def _split_exponent(fits, skewed_fits, number_before, number_ratio, after_b):
    """Step 6: n from the ``number_before`` largest crystals and the rest of each frame's
    fitted distribution, two Gaussians and one Pearson III (see the module). Returns
    (ExponentFit, used frames, (frames, 2) radii r₁, r₂ of the two Gaussians' split (NaN
    where unused), (first, last) window frame)."""
    nan = math.nan
    gaussians, pearson = split_fits(fits, skewed_fits, number_before)
    used = np.zeros(len(fits), dtype=bool)
    frames = np.flatnonzero(np.isfinite(gaussians).all(axis=1) & np.isfinite(pearson).all(axis=1)
                            & np.isfinite(number_ratio))
    if frames.size < 3:
        return (ExponentFit.failed(f"only {frames.size} frames could be split by the count"),
                used, np.full_like(gaussians, nan), (0, 0))
    first, last, no_window = _window(frames, number_ratio, gaussians[:, 1], gaussians[:, 0],
                                     after_b)
    if no_window:
        return ExponentFit.failed(no_window), used, np.full_like(gaussians, nan), (first, last)
    used[frames[(frames >= first) & (frames <= last)]] = True
    if used.sum() < 3:
        return (ExponentFit.failed(f"only {int(used.sum())} split pairs in the window where both "
                                   f"sets grow, need at least 3", int(used.sum())),
                np.zeros_like(used), np.full_like(gaussians, nan), (first, last))
    fit = with_model_spread(fit_growth_exponent(*gaussians[used].T),
                            [fit_growth_exponent(*pearson[used].T)])
    radii = np.where(used[:, None], gaussians, nan)
    return fit, used, radii, (first, last)


def _resolved(fit: BimodalFit) -> bool:
    """Both radii of ``fit`` determined and the two sets apart (see the module docstring)."""
    if not fit.success:
        return False
    apart = fit.radius1_nm - fit.radius2_nm >= fit.sigma1_nm + fit.sigma2_nm
    precise = all(np.isfinite(e) and 0 < e <= MAX_RELATIVE_RADIUS_ERROR * r
                  for r, e in ((fit.radius1_nm, fit.radius1_err_nm),
                               (fit.radius2_nm, fit.radius2_err_nm)))
    return bool(apart and precise and fit.concentration1_molar > 0 and fit.concentration2_molar > 0)
