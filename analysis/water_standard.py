"""Absolute scale from a water standard (seed 000 §S.2.1, ref. 7): the configuration's
``water_standard`` and ``empty_cell`` frame files.

Per transmitted photon, a pixel of solid angle ΔΩ behind a sample of path d (cm) records
d · ΔΩ · I(q) counts (:mod:`ncsynth.analysis.reduction`). pyFAI's solid-angle correction
refers every pixel to the reference pixel, so the azimuthal average of a frame divided by
Σ t · Φ_T (exposure s × transmitted flux photons/s, summed over its frames) is d · S · I(q),
with S the reference pixel's solid angle (sr) as the detector sees it (efficiency included).
Water scatters a flat I_water = 0.0165 cm⁻¹ at low q (1.65·10⁻³ mm⁻¹, §S.2.1), so::

    S = [ water / Σ(t·Φ_T)_water  −  empty cell / Σ(t·Φ_T)_empty ] / (d · I_water)

each measurement normalised by its own transmitted flux (transmission-corrected), the σ-weighted
mean over ``q_range_nm`` (1–4 nm⁻¹: above the windows' Porod scattering, below water's rise).
Its uncertainty is the weighted mean's, scaled by √χ²_red when the bins scatter more than their
Poisson σ. A sample run's K (counts/s per unit I·d, the ``calibration`` of the reduction) is then
Φ · T · S with the run's own monitors (:func:`~ncsynth.analysis.reduction.calibration_from_beam`
given ``solid_angle_sr``), so a water calibration carries over to a sample of any transmission.
The 0.0165 cm⁻¹ is water's at room temperature; it falls by ~0.1 % per °C below 25 °C.

The standards' frames, exposures and transmitted fluxes come from an areaDetector HDF5 file, any
frame file fabio reads (EDF, with header keys), or a stored raw run of the catalog
(:mod:`ncsynth.analysis.standard_frames`). Errors are one line naming the configuration key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.reduction import WATER_CM, Pattern, Reducer, subtract
from ncsynth.analysis.standard_frames import HeaderKeys, read_frames

#: q range over which water is taken as flat, nm⁻¹.
WATER_Q_RANGE_NM = (1.0, 4.0)


@dataclass(frozen=True)
class WaterScale:
    """The reference pixel's solid angle S (sr) measured with water, its standard uncertainty,
    and the χ²_red of the flat level over ``n_bins`` q bins."""

    solid_angle_sr: float
    error_sr: float
    chi2_reduced: float
    n_bins: int

    @property
    def relative_error(self) -> float:
        return self.error_sr / self.solid_angle_sr


def scale_from_patterns(water: Pattern, empty: Pattern | None, path_length_cm: float, *,
                        q_range_nm=WATER_Q_RANGE_NM, water_cm: float = WATER_CM,
                        key: str = "water_standard") -> WaterScale:
    """:class:`WaterScale` from ``water`` and ``empty`` (None: no empty cell), both azimuthal
    averages per transmitted photon (:meth:`Reducer.integrate` / Σ t·Φ_T); ``path_length_cm``:
    the cell's path d. ValueError (naming ``key``) if fewer than 3 bins are usable or the net
    water signal is not positive."""
    net = water if empty is None else subtract(water, empty)
    q_lo, q_hi = q_range_nm
    keep = (net.q_nm >= q_lo) & (net.q_nm <= q_hi) & np.isfinite(net.intensity_cm) & (net.sigma_cm > 0)
    if np.count_nonzero(keep) < 3:
        raise ValueError(f"{key}: fewer than 3 usable q bins in {q_lo:g}-{q_hi:g} nm^-1")
    level, sigma = net.intensity_cm[keep] / (path_length_cm * water_cm), net.sigma_cm[keep] / (path_length_cm * water_cm)
    weights = sigma ** -2.0
    mean = float(np.sum(weights * level) / np.sum(weights))
    chi2 = float(np.sum(weights * (level - mean) ** 2) / max(level.size - 1, 1))
    error = math.sqrt(1.0 / float(np.sum(weights))) * math.sqrt(max(chi2, 1.0))
    if not mean > 0:
        raise ValueError(f"{key}: water minus empty cell gives no positive signal "
                         f"({mean * path_length_cm * water_cm:.3g} counts per transmitted photon)")
    return WaterScale(mean, error, chi2, int(level.size))


def read_standard(source: str | Path, reducer: Reducer, key: str, *, headers: HeaderKeys = HeaderKeys(),
                  catalog=None) -> Pattern:
    """The frames ``source`` names (an areaDetector HDF5 file, a fabio frame file or glob of
    them, or ``"run:<scan id or uid>"``: :mod:`~ncsynth.analysis.standard_frames`), summed and
    azimuthally averaged by ``reducer``, per transmitted photon. ValueError naming ``key``."""
    frames = read_frames(source, reducer.geometry.shape, key, headers=headers, catalog=catalog)
    try:
        pattern = reducer.integrate(frames.total)
    except ValueError as error:
        raise ValueError(f"{key} = {str(source)!r}: {error}") from None
    return pattern.scaled(1.0 / frames.photons)


def water_scale_from_files(water: str | Path, empty: str | Path | None, geometry: DetectorGeometry,
                           path_length_cm: float, *, headers: HeaderKeys = HeaderKeys(),
                           catalog=None) -> WaterScale:
    """:class:`WaterScale` of the configuration's ``water_standard`` and ``empty_cell``
    (``empty`` "" or None: none) measured with ``geometry`` in a cell of path ``path_length_cm``;
    ``headers`` and ``catalog`` as :func:`~ncsynth.analysis.standard_frames.read_frames` takes them."""
    reducer = Reducer(geometry, q_range_nm=WATER_Q_RANGE_NM, path_length_cm=path_length_cm, calibration=1.0)
    water_pattern = read_standard(water, reducer, "water_standard", headers=headers, catalog=catalog)
    empty_pattern = read_standard(empty, reducer, "empty_cell", headers=headers, catalog=catalog) \
        if empty else None
    return scale_from_patterns(water_pattern, empty_pattern, path_length_cm)
