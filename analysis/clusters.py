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
  (that is a broad feature the baseline could not follow).  On the simulator's spectra
  (noise 1e-3): position within 1 nm, amount within ~10 % (a few % typically; the largest
  errors for CdSe-382 on CdSe-437's broad higher transition).
* **NC** — the broad first exciton of regular nanocrystals, whose position shifts with size.
  After subtracting the fitted MSC peaks, the spectrum is smoothed (Savitzky–Golay) and the
  longest-wavelength broad maximum (FWHM ≥ 2·NC_MIN_HWHM_NM, significant prominence) is taken
  as the first exciton (higher transitions lie to the blue); a Gaussian on a constant baseline
  from 0.5 HWHM to the blue to 3 HWHM to the red (where only its own tail absorbs: the rising
  continuum to the blue would trade off against a sloped baseline) gives position and height.
  On the simulator's spectra (tests/test_optical.py): position within ~1.5 nm, amount ~5 % high
  (the continuum under the blue flank), also for the broad excitons of 2.3 nm NCs.

Amounts follow from Beer–Lambert with Yu's ε at each diameter (analysis.optical).  The noise
level is estimated from second differences (robust, median absolute deviation).
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
NC_MIN_HWHM_NM = 8.0
DETECTION_SIGMAS = 5.0
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class ClusterFamily:
    """One CdSe species found in a spectrum.

    ``kind`` is "MSC" (label "MSC-<nominal peak>") or "NC" (label "NC"); ``peak_nm`` the fitted
    first-exciton maximum, ``absorbance`` its height above the baseline, ``hwhm_nm`` its half
    width; ``diameter_nm`` (Yu 2003), ``cdse_units`` per particle and ``concentration_molar``
    (particles, Beer–Lambert) follow from them.
    """

    label: str
    kind: str
    peak_nm: float
    absorbance: float
    hwhm_nm: float
    diameter_nm: float
    cdse_units: float
    concentration_molar: float


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
    """(centre, amplitude, hwhm) of a narrow peak at ``nominal`` nm, or None if not significant."""
    inside = np.abs(x - nominal) <= WINDOW_NM
    if np.count_nonzero(inside) < 12 or x[inside].min() > nominal - 0.6 * WINDOW_NM \
            or x[inside].max() < nominal + 0.6 * WINDOW_NM:
        return None
    xs, ys = x[inside], y[inside]
    line = np.polyfit(xs - nominal, ys, BASELINE_DEGREE)
    height = max(float(np.max(ys - np.polyval(line, xs - nominal))), noise, 1e-12)
    model = lambda xx, *p: _peak_on_polynomial(xx, *p, origin=nominal)  # noqa: E731
    free = BASELINE_DEGREE + 1
    start = [height, nominal, 4.0, *line]
    lower = [0.0, nominal - POSITION_TOLERANCE_NM, MSC_HWHM_BOUNDS_NM[0]] + [-np.inf] * free
    upper = [np.inf, nominal + POSITION_TOLERANCE_NM, MSC_HWHM_BOUNDS_NM[1]] + [np.inf] * free
    fitted = _fit(model, xs, ys, start, (lower, upper))
    if fitted is None:
        return None
    (amplitude, centre, hwhm, *_), errors = fitted
    if amplitude < DETECTION_SIGMAS * max(errors[0], noise) or hwhm > 0.95 * MSC_HWHM_BOUNDS_NM[1]:
        return None  # not significant, or a broad feature the baseline missed
    return centre, amplitude, hwhm


def _fit_nc(x, residual, noise):
    """(centre, amplitude, hwhm) of the reddest broad maximum of ``residual``, or None."""
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
    best = peaks[-1]
    hwhm_guess = 0.5 * float(properties["widths"][-1]) * step
    inside = (x >= x[best] - 0.5 * hwhm_guess) & (x <= x[best] + 3.0 * hwhm_guess)
    xs, ys = x[inside], residual[inside]
    model = lambda xx, a, c, w, b: _gaussian(xx, a, c, w) + b  # noqa: E731
    floor = float(np.min(smooth[inside]))
    start = [max(smooth[best] - floor, noise, 1e-12), x[best], hwhm_guess, floor]
    bounds = ([0.0, xs.min(), 0.5 * NC_MIN_HWHM_NM, -np.inf],
              [np.inf, xs.max(), 10.0 * hwhm_guess, np.inf])
    fitted = _fit(model, xs, ys, start, bounds)
    if fitted is None:
        return None
    amplitude, centre, hwhm, _ = fitted[0]
    return centre, amplitude, hwhm


def _family(label, kind, centre, amplitude, hwhm, path_cm, sizing_nm):
    diameter = float(cdse_diameter_nm(sizing_nm))
    return ClusterFamily(label, kind, float(centre), float(amplitude), float(hwhm), diameter,
                         float(cdse_units(diameter)),
                         float(concentration_molar(amplitude, diameter, path_cm)))


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
        peak = _fit_msc(x, y - others, MSC_PEAKS_NM[label], noise) or first[label]
        found.append(_family(label, "MSC", *peak, path_cm, MSC_PEAKS_NM[label]))
        residual -= _gaussian(x, peak[1], peak[0], peak[2])
    in_range = (x >= SIZING_RANGE_NM[0]) & (x <= SIZING_RANGE_NM[1])
    if np.count_nonzero(in_range) >= 30:
        exciton = _fit_nc(x[in_range], residual[in_range], noise)
        if exciton is not None and SIZING_RANGE_NM[0] <= exciton[0] <= SIZING_RANGE_NM[1]:
            found.append(_family("NC", "NC", *exciton, path_cm, exciton[0]))
    return sorted(found, key=lambda family: family.peak_nm)
