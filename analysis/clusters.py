"""Magic-size clusters and nanocrystals in an absorbance spectrum (seed 002, Fig. 1, Fig. 4).

:func:`identify_clusters` tells the two kinds of CdSe absorption apart the way the seed does:

* **MSC families** — narrow peaks at fixed positions (MSC_PEAKS_NM: 350, 382, 403, 437,
  465 nm).  Around each position a Gaussian (centre within ±POSITION_TOLERANCE_NM, HWHM
  MSC_HWHM_BOUNDS_NM) on a cubic baseline is fitted over ±WINDOW_NM (scipy curve_fit); the
  baseline takes up the continuum, broad higher transitions and any NC exciton underneath;
  each found peak is then refitted with its neighbours' first-pass peaks subtracted, so
  adjacent families (CdSe-382 beside -403 in the 350 °C mixtures of Fig. 4) do not bias it.
  A family is reported when its amplitude is at least DETECTION_SIGMAS times both its fit
  standard error and the spectrum's noise, and its width is not pinned at the upper bound
  (that is a broad feature the baseline could not follow).  Its height is uncertain by the
  fit's standard error and by the baseline's shape: the same peak fitted on the
  MSC_BASELINE_ALTERNATIVES (degree 2 and 4, windows ±10 and ±18 nm) moves by the RMS of
  its shifts (:func:`_with_baseline_systematic`), added in quadrature.  On the simulator's
  spectra: position within 1 nm; CdSe-437 beside NCs within a few %, small families on an
  NC's flank (CdSe-465 under a 480 nm exciton) off by up to tens of %, with an uncertainty
  that says so (the flow grid: every amount within 3σ of the outlet's, tests/test_optical.py).
* **NC** — the broad first exciton of regular nanocrystals, whose position shifts with size.
  After subtracting the fitted MSC peaks, the spectrum is smoothed (Savitzky–Golay) and the
  longest-wavelength broad maximum (FWHM ≥ 2·NC_MIN_HWHM_NM, significant prominence) is taken
  as the first exciton (higher transitions lie to the blue); a Gaussian on a constant baseline
  from 0.5 HWHM to the blue to 3 HWHM to the red (where only its own tail absorbs: the rising
  continuum to the blue would trade off against a sloped baseline) gives position and height:
  the absorbance at the maximum above the red floor, what Yu 2003's ε is calibrated on (the
  simulator's convention too: simulators/uvvis_spectra.py).  Its systematic is the change of
  that height over NC_WINDOW_ALTERNATIVES (the blue edge at 1 HWHM, the red one at 2 and 4),
  taken as for an MSC, added in quadrature to the fit's standard error.  On the simulator's
  spectra (tests/test_optical.py): position within ~1.5 nm, amount within ~1 % noise-free,
  a few % at noise 1e-3 for the broad excitons of 2.3 nm NCs.

Amounts follow from Beer–Lambert with Yu's ε at each diameter (analysis.optical); their
uncertainty (``concentration_err_molar``) is the height's, ε taken as exact (the same ε turns
every spectrum into amounts).  The noise level is estimated from second differences (robust,
median absolute deviation).
Units: nm, absorbance (base 10), cm, mol/L.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.signal import find_peaks, savgol_filter

from .optical import (MSC_PEAKS_NM, SIZING_RANGE_NM, cdse_diameter_nm, cdse_units,
                      concentration_molar)

POSITION_TOLERANCE_NM = 3.0
MSC_HWHM_BOUNDS_NM = (1.0, 8.0)
WINDOW_NM = 14.0
BASELINE_DEGREE = 3
#: (baseline degree, half window nm) of the refits whose spread is an MSC height's systematic.
MSC_BASELINE_ALTERNATIVES = ((2, WINDOW_NM), (4, WINDOW_NM), (BASELINE_DEGREE, 10.0),
                             (BASELINE_DEGREE, 18.0))
NC_MIN_HWHM_NM = 8.0
#: The NC fit's window, (blue, red) edges in HWHM from the maximum, and the alternatives whose
#: spread is the NC height's systematic.
NC_WINDOW_HWHM = (0.5, 3.0)
NC_WINDOW_ALTERNATIVES = ((1.0, 3.0), (0.5, 2.0), (0.5, 4.0))
DETECTION_SIGMAS = 5.0
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class ClusterFamily:
    """One CdSe species found in a spectrum.

    ``kind`` is "MSC" (label "MSC-<nominal peak>") or "NC" (label "NC"); ``peak_nm`` the fitted
    first-exciton maximum, ``absorbance`` its height above the baseline, ``absorbance_err`` its
    uncertainty (fit ⊕ baseline model, 1σ), ``hwhm_nm`` its half width; ``diameter_nm`` (Yu
    2003), ``cdse_units`` per particle and ``concentration_molar`` (particles, Beer–Lambert)
    ± ``concentration_err_molar`` follow from them.
    """

    label: str
    kind: str
    peak_nm: float
    absorbance: float
    absorbance_err: float
    hwhm_nm: float
    diameter_nm: float
    cdse_units: float
    concentration_molar: float
    concentration_err_molar: float


def _gaussian(x, amplitude, centre, hwhm):
    return amplitude * np.exp(-_LN2 * ((x - centre) / hwhm) ** 2)


def _peak_on_polynomial(x, amplitude, centre, hwhm, *baseline, origin):
    return _gaussian(x, amplitude, centre, hwhm) + np.polyval(baseline, x - origin)


def noise_level(absorbance) -> float:
    """Robust white-noise σ of a spectrum: MAD of second differences / √6."""
    second = np.diff(np.asarray(absorbance, dtype=float), 2)
    return float(1.4826 * np.median(np.abs(second - np.median(second))) / math.sqrt(6.0))


def _fit(model, x, y, p0, bounds):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            values, covariance = curve_fit(model, x, y, p0=p0, bounds=bounds, maxfev=5000)
        except RuntimeError:
            return None
    errors = np.sqrt(np.clip(np.diag(covariance), 0.0, np.inf))
    return values, np.where(np.isfinite(errors), errors, np.inf)


def _fit_msc(x, y, nominal, noise):
    """(centre, amplitude, hwhm, amplitude's standard error) of a narrow peak at ``nominal`` nm,
    or None if not significant."""
    fitted = _fit_msc_on_baseline(x, y, nominal, BASELINE_DEGREE, WINDOW_NM)
    if fitted is None:
        return None
    centre, amplitude, hwhm, error = fitted
    if amplitude < DETECTION_SIGMAS * max(error, noise) or hwhm > 0.95 * MSC_HWHM_BOUNDS_NM[1]:
        return None  # not significant, or a broad feature the baseline missed
    return fitted


def _fit_msc_on_baseline(x, y, nominal, degree, window_nm):
    """(centre, amplitude, hwhm, amplitude's standard error) of the narrow peak at ``nominal``
    nm on a polynomial baseline of ``degree`` over ±``window_nm``; None where the spectrum does
    not cover the window or the fit fails."""
    inside = np.abs(x - nominal) <= window_nm
    if np.count_nonzero(inside) < 12 or x[inside].min() > nominal - 0.6 * window_nm \
            or x[inside].max() < nominal + 0.6 * window_nm:
        return None
    xs, ys = x[inside], y[inside]
    line = np.polyfit(xs - nominal, ys, degree)
    height = max(float(np.max(ys - np.polyval(line, xs - nominal))), 1e-12)
    model = lambda xx, *p: _peak_on_polynomial(xx, *p, origin=nominal)  # noqa: E731
    free = degree + 1
    start = [height, nominal, 4.0, *line]
    lower = [0.0, nominal - POSITION_TOLERANCE_NM, MSC_HWHM_BOUNDS_NM[0]] + [-np.inf] * free
    upper = [np.inf, nominal + POSITION_TOLERANCE_NM, MSC_HWHM_BOUNDS_NM[1]] + [np.inf] * free
    fitted = _fit(model, xs, ys, start, (lower, upper))
    if fitted is None:
        return None
    (amplitude, centre, hwhm, *_), errors = fitted
    return centre, amplitude, hwhm, errors[0]


def _with_baseline_systematic(fitted, alternatives):
    """``fitted`` (centre, amplitude, hwhm, standard error) with the error grown by the
    baseline model's systematic, added in quadrature: the RMS of the ``alternatives``' amplitude
    shifts (fits of the same tuples on other baselines; None, no fit could be made, left out).
    Their own statistical scatter is kept in it (conservative: on isolated peaks at noise 1e-3
    a few times the fit's error; subtracting it as Barlow 2002 does, |σ_alt² − σ²|, left
    CdSe-437 at 4.5σ from the truth on the flow grid)."""
    centre, amplitude, hwhm, error = fitted
    shifts = [amplitude - alt[1] for alt in alternatives if alt is not None]
    systematic = float(np.sqrt(np.mean(np.square(shifts)))) if shifts else 0.0
    return centre, amplitude, hwhm, math.hypot(error, systematic)


def _find_exciton(x, residual, noise):
    """(index, HWHM guess nm, Savitzky–Golay smoothed ``residual``) of the reddest broad maximum
    of ``residual``, or None: where :func:`_fit_exciton` fits, whatever its window."""
    step = float(np.median(np.diff(x)))
    window = max(5, int(round(2.0 * NC_MIN_HWHM_NM / step)) | 1)
    if window >= len(x):
        return None
    smooth = savgol_filter(residual, window, 3)
    scale = float(np.max(np.abs(smooth)))
    peaks, properties = find_peaks(smooth, prominence=max(DETECTION_SIGMAS * noise, 0.01 * scale),
                                   width=2.0 * NC_MIN_HWHM_NM / step)
    if not len(peaks):
        return None
    return int(peaks[-1]), 0.5 * float(properties["widths"][-1]) * step, smooth


def _fit_exciton(x, residual, noise, maximum, window_hwhm=NC_WINDOW_HWHM):
    """(centre, amplitude, hwhm, amplitude's standard error) of the exciton at ``maximum`` (what
    :func:`_find_exciton` found), fitted from ``window_hwhm`` = (blue, red) HWHM around it, or
    None."""
    best, hwhm_guess, smooth = maximum
    blue, red = window_hwhm
    inside = (x >= x[best] - blue * hwhm_guess) & (x <= x[best] + red * hwhm_guess)
    xs, ys = x[inside], residual[inside]
    model = lambda xx, a, c, w, b: _gaussian(xx, a, c, w) + b  # noqa: E731
    floor = float(np.min(smooth[inside]))
    start = [max(smooth[best] - floor, noise, 1e-12), x[best], hwhm_guess, floor]
    bounds = ([0.0, xs.min(), 0.5 * NC_MIN_HWHM_NM, -np.inf],
              [np.inf, xs.max(), 10.0 * hwhm_guess, np.inf])
    fitted = _fit(model, xs, ys, start, bounds)
    if fitted is None:
        return None
    (amplitude, centre, hwhm, _), errors = fitted
    return centre, amplitude, hwhm, errors[0]


def _family(label, kind, centre, amplitude, hwhm, amplitude_err, path_cm, sizing_nm):
    diameter = float(cdse_diameter_nm(sizing_nm))
    return ClusterFamily(label, kind, float(centre), float(amplitude), float(amplitude_err),
                         float(hwhm), diameter, float(cdse_units(diameter)),
                         float(concentration_molar(amplitude, diameter, path_cm)),
                         float(concentration_molar(amplitude_err, diameter, path_cm)))


def identify_clusters(wavelength_nm, absorbance, path_cm: float = 1.0) -> list[ClusterFamily]:
    """MSC families and the NC exciton in one absorbance spectrum, sorted by wavelength.

    ``wavelength_nm`` (nm, any order, ≥ 30 points) and ``absorbance`` (base 10) of the same
    length; ``path_cm`` the optical path (cm, default a 1 cm cuvette).  MSC sizes and amounts
    use the family's nominal wavelength (its diameter is fixed), the NC its fitted maximum.
    """
    x = np.asarray(wavelength_nm, dtype=float)
    y = np.asarray(absorbance, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 30:
        raise ValueError(f"wavelength_nm and absorbance must be 1-D of the same length >= 30, "
                         f"got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("wavelength_nm and absorbance must be finite")
    if not (isinstance(path_cm, (int, float)) and math.isfinite(path_cm) and path_cm > 0):
        raise ValueError(f"path_cm must be a positive number, got {path_cm!r}")
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError("wavelength_nm must not repeat values")
    noise = noise_level(y)
    first = {label: _fit_msc(x, y, nominal, noise) for label, nominal in MSC_PEAKS_NM.items()}
    lines = {label: _gaussian(x, peak[1], peak[0], peak[2])
             for label, peak in first.items() if peak is not None}
    found, residual = [], y.copy()
    for label in lines:  # refit each beside its neighbours' first-pass peaks (Fig. 4 mixtures)
        others = sum((line for other, line in lines.items() if other != label), np.zeros_like(y))
        alone, nominal = y - others, MSC_PEAKS_NM[label]
        peak = _with_baseline_systematic(
            _fit_msc(x, alone, nominal, noise) or first[label],
            [_fit_msc_on_baseline(x, alone, nominal, degree, window)
             for degree, window in MSC_BASELINE_ALTERNATIVES])
        found.append(_family(label, "MSC", *peak, path_cm, nominal))
        residual -= _gaussian(x, peak[1], peak[0], peak[2])
    in_range = (x >= SIZING_RANGE_NM[0]) & (x <= SIZING_RANGE_NM[1])
    if np.count_nonzero(in_range) >= 30:
        xs, rest = x[in_range], residual[in_range]
        maximum = _find_exciton(xs, rest, noise)
        exciton = None if maximum is None else _fit_exciton(xs, rest, noise, maximum)
        if exciton is not None and SIZING_RANGE_NM[0] <= exciton[0] <= SIZING_RANGE_NM[1]:
            exciton = _with_baseline_systematic(exciton, [
                _fit_exciton(xs, rest, noise, maximum, window)
                for window in NC_WINDOW_ALTERNATIVES])
            found.append(_family("NC", "NC", *exciton, path_cm, exciton[0]))
    return sorted(found, key=lambda family: family.peak_nm)
