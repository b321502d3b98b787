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

Files: the areaDetector HDF5 plugin's layout (:mod:`ncsynth.simulators.frame_file`): frames in
``/entry/data/data``, per frame ``AcquireTime`` (s) and ``TransmittedFlux`` (photons/s) in
``/entry/instrument/NDAttributes``. Errors are one line naming the configuration key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.reduction import WATER_CM, Pattern, Reducer, subtract

#: Where the standard's frames and per-frame attributes are in its file.
FRAMES = "/entry/data/data"
ATTRIBUTES = "/entry/instrument/NDAttributes"
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


def read_standard(path: str | Path, reducer: Reducer, key: str) -> Pattern:
    """The frames of the file ``path`` (see module docstring), summed and azimuthally averaged
    by ``reducer``, per transmitted photon. ValueError naming ``key`` for a missing or
    unreadable file, frames of another shape than the detector's, or missing attributes."""
    import importlib

    import h5py

    importlib.import_module("hdf5plugin")  # registers the compression filters the plugin writes

    if not Path(path).is_file():
        raise ValueError(f"{key} = {str(path)!r}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            if FRAMES not in handle:
                raise ValueError(f"{key} = {str(path)!r}: no frames at {FRAMES}")
            frames = handle[FRAMES]
            if frames.ndim != 3 or frames.shape[0] == 0:
                raise ValueError(f"{key} = {str(path)!r}: {FRAMES} holds no frames (shape {frames.shape})")
            if tuple(frames.shape[1:]) != reducer.geometry.shape:
                raise ValueError(f"{key} = {str(path)!r}: frames are {frames.shape[1]}x{frames.shape[2]}, "
                                 f"the detector (PONI and mask) is {reducer.geometry.shape[0]}x"
                                 f"{reducer.geometry.shape[1]}")
            per_frame = {}
            for name in ("AcquireTime", "TransmittedFlux"):
                dataset = handle.get(f"{ATTRIBUTES}/{name}")
                values = None if dataset is None else np.asarray(dataset[:], dtype=float)
                if values is None or values.shape != (frames.shape[0],) or not np.all(values > 0):
                    raise ValueError(f"{key} = {str(path)!r}: needs a positive {ATTRIBUTES}/{name} "
                                     f"for each of its {frames.shape[0]} frames")
                per_frame[name] = values
            total = np.zeros(frames.shape[1:], dtype=np.float64)
            for index in range(frames.shape[0]):
                total += frames[index]
    except OSError as error:
        raise ValueError(f"{key} = {str(path)!r}: cannot read it as HDF5 ({error})") from None
    try:
        pattern = reducer.integrate(total)
    except ValueError as error:
        raise ValueError(f"{key} = {str(path)!r}: {error}") from None
    return pattern.scaled(1.0 / float(np.sum(per_frame["AcquireTime"] * per_frame["TransmittedFlux"])))


def water_scale_from_files(water: str | Path, empty: str | Path | None, geometry: DetectorGeometry,
                           path_length_cm: float) -> WaterScale:
    """:class:`WaterScale` of the configuration's ``water_standard`` and ``empty_cell`` files
    (``empty`` "" or None: none) measured with ``geometry`` in a cell of path ``path_length_cm``."""
    reducer = Reducer(geometry, q_range_nm=WATER_Q_RANGE_NM, path_length_cm=path_length_cm, calibration=1.0)
    water_pattern = read_standard(water, reducer, "water_standard")
    empty_pattern = read_standard(empty, reducer, "empty_cell") if empty else None
    return scale_from_patterns(water_pattern, empty_pattern, path_length_cm)
