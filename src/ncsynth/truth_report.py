"""``ncsynth validate RUN``: a dry run's measured headline numbers against the simulated truth.

A dry run keeps what the simulated flask really held (:mod:`ncsynth.flask_truth`:
``<data dir>/truth/<uid>.json``, the headline truth and the truth at every frame's
mid-exposure). This module sets the run's latest analysis beside it, with pulls
(measured − true)/error:

* the 98 % times of concentration and yield and the nucleation fraction (§S.3);
* per-frame pulls of the radius, the width and the concentration (Gaussian fits, S2.1–S2.3,
  against the flask's number-weighted mean radius, standard deviation and number
  concentration; statistical and size-model errors in quadrature; a width given as an upper
  limit has none), mean and spread in the windows 1–5 s, 5–60 s and after 60 s: a spread near
  1 says the errors are honest, a mean far from 0 a bias the size-model error does not cover;
  the noise std (statistical errors only) says whether those match the scatter;
* after a second injection, the growth exponent (S4.15) against the effective exponent of
  the flask's two sets over the same window (§S.5; the analysis is re-run, ~1 min).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ncsynth.flask_truth import FlaskTrace, effective_growth_exponent, stored_truth, truth_path
from ncsynth.runs import RunError, derived_run, raw_run, second_injection_analysis

#: Time windows (s after injection) of the per-frame pulls.
PULL_WINDOWS_S = ((1.0, 5.0), (5.0, 60.0), (60.0, math.inf))
#: Neighbours whose mean a pull's noise is measured against.
NEIGHBOURS = 8
HEADLINE = (("t_concentration_s", "t_concentration_err_s", "98% concentration, s"),
            ("t_yield_s", "t_yield_err_s", "98% yield, s"),
            ("nucleation_fraction", "nucleation_fraction_err", "nucleation fraction"))


def frame_pulls(time_s, measured, errors, true_time_s, truth, windows=PULL_WINDOWS_S,
                systematic=None) -> list:
    """(window, frames, pull mean, pull std, noise std) of ``measured`` ± ``errors`` against
    ``truth`` (sampled at ``true_time_s``, interpolated to ``time_s``), per time window; frames
    without a finite value or error are left out. ``systematic``: per-frame systematic errors
    (the fits' size-model errors), added in quadrature to ``errors`` for the pull mean and std.
    The noise std is that of each statistical pull (``errors`` alone) about the mean of its
    ``NEIGHBOURS`` neighbours (scaled by 1/√(1 + 1/k)): it leaves out a bias that drifts
    slowly (the model's), so it alone says whether the statistical errors match the scatter."""
    t = np.asarray(time_s, dtype=float)
    true = np.interp(t, np.asarray(true_time_s, dtype=float), np.asarray(truth, dtype=float),
                     left=math.nan, right=math.nan)
    statistical = np.asarray(errors, dtype=float)
    total = statistical if systematic is None else np.hypot(statistical, systematic)
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.asarray(measured, dtype=float) - true
        pulls, noise = deviation / total, deviation / statistical
    rows = []
    for low, high in windows:
        inside = (t >= low) & (t < high) & np.isfinite(pulls) & np.isfinite(noise)
        values = pulls[inside]
        rows.append(((low, high), int(values.size),
                     float(values.mean()) if values.size else math.nan,
                     float(values.std()) if values.size > 1 else math.nan,
                     _noise_std(noise[inside])))
    return rows


def _noise_std(pulls):
    """Std of each pull about the mean of its ``NEIGHBOURS`` nearest neighbours (see above)."""
    k = NEIGHBOURS
    if pulls.size <= k:
        return math.nan
    start = np.clip(np.arange(pulls.size) - k // 2, 0, pulls.size - k - 1)
    window = pulls[start[:, None] + np.arange(k + 1)]            # k + 1 values, self included
    neighbours = (window.sum(axis=1) - pulls) / k
    return float(np.std(pulls - neighbours) / math.sqrt(1.0 + 1.0 / k))


def validate_run(catalog, ref, root) -> dict:
    """Measured against true for a stored dry run ``ref`` (see the module docstring)."""
    run = raw_run(catalog, ref)
    start = run.metadata["start"]
    truth = stored_truth(root, start["uid"])
    if truth is None:
        raise RunError(f"run {start['uid'][:8]} has no simulated truth "
                       f"({truth_path(root, start['uid'])} missing): only dry runs record one")
    derived = derived_run(catalog, start["uid"])
    if derived is None:
        raise RunError(f"run {start['uid'][:8]} has not been analysed; run `ncsynth replay` first")
    kinetics = {key: np.asarray(value).ravel()[-1]
                for key, value in derived["kinetics"].read().items()} if "kinetics" in derived else {}
    headline = [(label, float(kinetics.get(key, math.nan)), float(kinetics.get(err, math.nan)),
                 float(truth["headline"].get(key, math.nan))) for key, err, label in HEADLINE]
    reason = ""
    kinetics_reason = "" if kinetics.get("success", True) else str(kinetics.get("reason", ""))
    if "second_injection" in start:
        analysis = second_injection_analysis(catalog, start["uid"])
        measured = analysis.summary()
        headline.append(("growth exponent n", measured["growth_exponent"],
                         measured["growth_exponent_err"], _effective_exponent(truth, analysis)))
        reason = measured["growth_exponent_reason"]
    fits = derived["fits"].read()
    frames = truth["frames"]
    measured = {key: np.asarray(fits[key], dtype=float) for key in fits.keys()
                if key not in ("reason", "success")}
    if "sigma_upper_nm" in measured:  # a width given as an upper limit has no pull
        measured["sigma_nm"] = np.where(np.isfinite(measured["sigma_upper_nm"]), math.nan,
                                        measured["sigma_nm"])
    pulls = {name: frame_pulls(measured["time_s"], measured[key], measured[err], frames["time_s"],
                               frames[true], systematic=measured.get(syst))
             for name, key, err, syst, true in (
                 ("radius", "radius_nm", "radius_err_nm", "radius_syst_nm", "mean_radius_nm"),
                 ("sigma", "sigma_nm", "sigma_err_nm", "sigma_syst_nm", "std_radius_nm"),
                 ("concentration", "concentration_molar", "concentration_err_molar",
                  "concentration_syst_molar", "concentration_molar"))}
    return {"uid": start["uid"], "headline": headline, "frame_pulls": pulls,
            "growth_exponent_reason": reason, "kinetics_reason": kinetics_reason}


def _effective_exponent(truth: dict, analysis) -> float:
    """The flask's effective n at the pairs the re-run analysis used (the stored headline
    value belongs to the pairs of the analysis at the time of the dry run)."""
    if not analysis.used.any():
        return math.nan
    trace = FlaskTrace(**{key: np.asarray(value, dtype=float)
                          for key, value in truth["frames"].items()},
                       second_injection_s=float(truth.get("second_injection_s", math.nan)))
    return effective_growth_exponent(trace, **analysis.exponent_pairs())


def format_validation(report: dict) -> str:
    """:func:`validate_run`'s result as aligned text lines; a number the analysis did not give
    (NaN) reads "not determined" (or "-"), a window without frames "no frames"."""
    lines = [f"run {report['uid']}: measured against the simulated flask",
             f"{'':22} {'measured':>22} {'flask':>10} {'pull':>6}"]
    for label, value, error, truth in report["headline"]:
        pull = (value - truth) / error if error and math.isfinite(error) and error > 0 else math.nan
        measured = (f"{value:>12.4g} ± {error:<7.2g}" if math.isfinite(value)
                    else f"{'not determined':>22}")
        lines.append(f"{label:22} {measured} {_number(truth, '>10.4g')} {_number(pull, '>6.2f')}")
    if report.get("kinetics_reason"):  # times of the last values, not of a plateau: why
        shown = any(math.isfinite(value) for label, value, _, _ in report["headline"]
                    if label != "growth exponent n")
        lines.append("  98% times not determined by the analysis"
                     + (" (98% of the last values shown)" if shown else "")
                     + f": {report['kinetics_reason']}")
    if report.get("growth_exponent_reason"):  # no n: why, in one line
        lines.append(f"  n not measured: {report['growth_exponent_reason']}")
    lines.append("per-frame pulls in windows of s after injection: frames, mean, std (statistical "
                 f"and size-model errors), noise std (statistical, about a drifting bias; needs "
                 f"more than {NEIGHBOURS} frames)")
    for name, rows in report["frame_pulls"].items():
        cells = [f"{low:g}-{high:g} s: " + (
            f"{count} {mean:+.2f} {_number(std, '.2f')} {_number(noise, '.2f')}" if count
            else "no frames") for (low, high), count, mean, std, noise in rows]
        lines.append(f"  {name:14} " + "; ".join(cells))
    return "\n".join(lines)


def _number(value: float, spec: str) -> str:
    """``value`` formatted by ``spec``, or "-" in the same width if it is not finite."""
    return format(value, spec) if math.isfinite(value) else format("-", re.match(r"[<>^]?\d*", spec)[0])
