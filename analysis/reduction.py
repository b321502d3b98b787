"""2-D SAXS frames to absolute 1-D patterns (seed 000 §S.2.1).

    reducer = Reducer(geometry, calibration=calibration_from_beam(1e13, 0.25, geometry))
    sample = reducer.reduce(frame, exposure_s=0.075)           # Pattern in cm⁻¹
    net = subtract(sample, average([reducer.reduce(f, 0.075) for f in background_frames]))

Azimuthal integration is pyFAI's (one :class:`~pyFAI.integrator.azimuthal.AzimuthalIntegrator`
per :class:`Reducer`, built once from :meth:`DetectorGeometry.to_integrator
<ncsynth.analysis.geometry.DetectorGeometry.to_integrator>` with the detector mask), without
pixel splitting so that every pixel lands in exactly one q bin and the bins are statistically
independent; Poisson errors are propagated by pyFAI (``error_model="poisson"``: variance of a
pixel = its counts, floored by pyFAI at 1 count so that empty pixels keep a weight; σ of a
bin = √Σcounts / Σ(ΔΩ/ΔΩ_ref)).

Absolute scale — what the calibration factor is
-----------------------------------------------
A pixel of solid angle ΔΩ records, in an exposure of t seconds through a sample of path length
d (cm) with differential scattering cross-section per unit volume I(q) (cm⁻¹ sr⁻¹, "cm⁻¹")::

    counts = Φ · T · t · d · ΔΩ · I(q)                    (Φ photons/s on the sample, T transmission)

pyFAI's solid-angle correction divides each pixel by ΔΩ/ΔΩ_ref (ΔΩ_ref = pixel² / distance², a
pixel at normal incidence), so the bin average it returns is Φ·T·t·d·ΔΩ_ref·I(q). Hence

    I(q) [cm⁻¹] = average / (t · d · K),     K = Φ · T · ΔΩ_ref   (counts per second per unit I·d)

``calibration`` is K: the count rate a reference pixel records from a sample with I·d = 1
(e.g. 1 cm⁻¹ through 1 cm). :func:`calibration_from_beam` ``(flux_ph_per_s, transmission,
geometry, solid_angle_sr)`` gives it from the run's beam monitors (Φ, T) and ΔΩ_ref, either the
geometry's (exact for the simulated detector, whose counts follow the formula above:
``ncsynth.simulators.detector``) or as a water standard measured it per transmitted photon
(water's 0.0165 cm⁻¹ = 1.65·10⁻³ mm⁻¹, §S.2.1, ref. 7: :mod:`ncsynth.analysis.water_standard`),
so that a water calibration carries over to a sample of another transmission.

Units: q in nm⁻¹, intensities and their σ in cm⁻¹, path lengths in cm, exposures in s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ncsynth.analysis.geometry import DetectorGeometry

#: Absolute scattering cross-section of water at room temperature, cm⁻¹ (1.65·10⁻³ mm⁻¹, §S.2.1).
WATER_CM = 0.0165
#: q range of the §S.1.4 set-up, nm⁻¹.
DEFAULT_Q_RANGE_NM = (0.1, 5.0)
#: Sample path length of the flask (§S.1.4, §S.2.1), cm.
DEFAULT_PATH_LENGTH_CM = 0.4
#: pyFAI integration method: no pixel splitting (independent bins), histogram, Cython.
PYFAI_METHOD = ("no", "histogram", "cython")


@dataclass(frozen=True, eq=False)
class Pattern:
    """A 1-D SAXS pattern: q (nm⁻¹), intensity and its standard deviation (same units).

    Bins that no unmasked pixel falls in hold NaN intensity and σ. After
    :meth:`Reducer.reduce` the units are cm⁻¹; after :meth:`Reducer.integrate`, counts per
    reference pixel per exposure.
    """

    q_nm: np.ndarray
    intensity_cm: np.ndarray
    sigma_cm: np.ndarray

    def __post_init__(self):
        arrays = [np.array(getattr(self, name), dtype=float) for name in ("q_nm", "intensity_cm", "sigma_cm")]
        if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1:
            raise ValueError("Pattern q_nm, intensity_cm and sigma_cm must be 1-D arrays of one length, "
                             f"got shapes {[a.shape for a in arrays]}")
        for name, array in zip(("q_nm", "intensity_cm", "sigma_cm"), arrays):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def scaled(self, factor: float) -> "Pattern":
        """Intensity and σ multiplied by ``factor`` (q unchanged)."""
        return Pattern(self.q_nm, self.intensity_cm * factor, self.sigma_cm * abs(factor))


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_q_range(q_range_nm) -> tuple[float, float]:
    try:
        q_lo, q_hi = (float(v) for v in q_range_nm)
    except (TypeError, ValueError):
        raise ValueError(f"q_range_nm must be a (min, max) pair in nm^-1, got {q_range_nm!r}") from None
    if not (0 < q_lo < q_hi and math.isfinite(q_hi)):
        raise ValueError(f"q_range_nm must satisfy 0 < min < max, got {q_range_nm!r}")
    return q_lo, q_hi


def default_n_bins(geometry: DetectorGeometry, q_range_nm=DEFAULT_Q_RANGE_NM) -> int:
    """Linear q bins one pixel's q step wide over ``q_range_nm`` (finer bins alias the pixel rings).

    The q step of a pixel at the beam centre is (4π/λ)·sin(½·atan(pixel/distance)).
    """
    q_lo, q_hi = _check_q_range(q_range_nm)
    step = 4 * math.pi / geometry.wavelength_nm * math.sin(
        0.5 * math.atan(geometry.pixel_size_m / geometry.distance_m))
    return max(10, int((q_hi - q_lo) / step))


def calibration_from_beam(flux_ph_per_s: float, transmission: float, geometry: DetectorGeometry,
                          solid_angle_sr: float | None = None) -> float:
    """Calibration factor K = Φ · T · ΔΩ_ref (see module docstring) from the beam itself.

    ``flux_ph_per_s``: photons/s on the sample; ``transmission``: of flask + sample (0..1];
    ``solid_angle_sr``: ΔΩ_ref as a water standard measured it (sr,
    :mod:`ncsynth.analysis.water_standard`); None: the geometry's (pixel/distance)², exact for
    the simulated detector.
    """
    flux = _check_positive("flux_ph_per_s", flux_ph_per_s)
    if not (isinstance(transmission, (int, float)) and 0 < transmission <= 1):
        raise ValueError(f"transmission must be in (0, 1], got {transmission!r}")
    if not isinstance(geometry, DetectorGeometry):
        raise TypeError(f"geometry must be a DetectorGeometry, got {type(geometry).__name__}")
    if solid_angle_sr is None:
        return flux * float(transmission) * geometry.reference_solid_angle_sr
    return flux * float(transmission) * _check_positive("solid_angle_sr", solid_angle_sr)


class Reducer:
    """Frame → absolute 1-D pattern for one detector geometry (see module docstring).

    Parameters
    ----------
    geometry : detector geometry; its pyFAI integrator (with the mask) is built once here.
    n_bins : linear q bins over ``q_range_nm`` (default :func:`default_n_bins`: one pixel step).
    q_range_nm : (min, max) q of the pattern, nm⁻¹ (§S.1.4: 0.1–5).
    path_length_cm : sample path length d, cm (4 mm flask, §S.2.1).
    calibration : K = Φ·T·ΔΩ_ref, counts per second per unit I·d (:func:`calibration_from_beam`).
    """

    def __init__(self, geometry: DetectorGeometry, *, n_bins: int | None = None,
                 q_range_nm=DEFAULT_Q_RANGE_NM, path_length_cm: float = DEFAULT_PATH_LENGTH_CM,
                 calibration: float):
        if not isinstance(geometry, DetectorGeometry):
            raise TypeError(f"geometry must be a DetectorGeometry, got {type(geometry).__name__}")
        self.q_range_nm = _check_q_range(q_range_nm)
        if n_bins is None:
            n_bins = default_n_bins(geometry, self.q_range_nm)
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
            raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
        self.geometry = geometry
        self.n_bins = int(n_bins)
        self.path_length_cm = _check_positive("path_length_cm", path_length_cm)
        self.calibration = _check_positive("calibration", calibration)
        self.integrator = geometry.to_integrator()
        self.q_nm = self._mean_bin_q()

    def _integrate(self, image: np.ndarray, error_model: str | None):
        return self.integrator.integrate1d(image, self.n_bins, unit="q_nm^-1", correctSolidAngle=True,
                                           radial_range=self.q_range_nm, method=PYFAI_METHOD,
                                           error_model=error_model)

    def _mean_bin_q(self) -> np.ndarray:
        """Solid-angle-weighted mean pixel q of every bin (the q at which the bin's average of a
        smooth I(q) is taken); the bin centre for empty bins."""
        relative_solid_angle = self.geometry.solid_angle_sr / self.geometry.reference_solid_angle_sr
        result = self._integrate(self.geometry.q_map_nm * relative_solid_angle, None)
        filled = np.asarray(result.count) > 0
        q = np.asarray(result.radial, dtype=float).copy()
        q[filled] = np.asarray(result.intensity, dtype=float)[filled]
        return q

    def integrate(self, frame) -> Pattern:
        """Azimuthal average of ``frame`` (counts, shape ``geometry.shape``): counts per reference
        pixel per exposure, with Poisson σ. Raises ValueError for a frame of the wrong shape or
        with negative or non-finite pixels."""
        image = np.asarray(frame)
        if image.shape != self.geometry.shape:
            raise ValueError(f"frame must have the detector shape {self.geometry.shape}, got {image.shape}")
        if image.dtype.kind not in "uif":
            raise ValueError(f"frame must hold numeric counts, got dtype {image.dtype}")
        if image.dtype.kind != "u":
            valid = image[~self.geometry.mask]
            if not np.all(np.isfinite(valid)) or np.any(valid < 0):
                raise ValueError("frame holds negative or non-finite counts in unmasked pixels")
        result = self._integrate(image, "poisson")
        filled = np.asarray(result.count) > 0
        intensity = np.where(filled, np.asarray(result.intensity, dtype=float), np.nan)
        sigma = np.where(filled, np.asarray(result.sigma, dtype=float), np.nan)
        return Pattern(self.q_nm, intensity, sigma)

    def reduce(self, frame, exposure_s: float) -> Pattern:
        """``frame`` (counts in ``exposure_s`` seconds) → I(q) in cm⁻¹ with Poisson σ."""
        exposure = _check_positive("exposure_s", exposure_s)
        return self.integrate(frame).scaled(1.0 / (exposure * self.path_length_cm * self.calibration))

    @staticmethod
    def subtract(pattern: Pattern, background: Pattern) -> Pattern:
        """Same as the module function :func:`subtract`."""
        return subtract(pattern, background)

    @staticmethod
    def average(patterns: Sequence[Pattern]) -> Pattern:
        """Same as the module function :func:`average`."""
        return average(patterns)


def _check_same_q(patterns: Sequence[Pattern]) -> None:
    for other in patterns[1:]:
        if other.q_nm.shape != patterns[0].q_nm.shape or not np.allclose(other.q_nm, patterns[0].q_nm,
                                                                            rtol=1e-9, atol=0):
            raise ValueError("patterns must share the same q bins (reduce them with one Reducer)")


def subtract(pattern: Pattern, background: Pattern) -> Pattern:
    """``pattern − background`` bin by bin; σ added in quadrature (independent frames)."""
    for name, value in (("pattern", pattern), ("background", background)):
        if not isinstance(value, Pattern):
            raise TypeError(f"{name} must be a Pattern, got {type(value).__name__}")
    _check_same_q([pattern, background])
    return Pattern(pattern.q_nm, pattern.intensity_cm - background.intensity_cm,
                   np.hypot(pattern.sigma_cm, background.sigma_cm))


def average(patterns: Sequence[Pattern]) -> Pattern:
    """Mean of independent patterns on the same q bins; σ = √(Σσᵢ²)/n."""
    patterns = list(patterns)
    if not patterns:
        raise ValueError("patterns must hold at least one Pattern, got none")
    if not all(isinstance(p, Pattern) for p in patterns):
        raise TypeError("patterns must all be Pattern instances")
    _check_same_q(patterns)
    n = len(patterns)
    intensity = np.mean([p.intensity_cm for p in patterns], axis=0)
    sigma = np.sqrt(np.sum([p.sigma_cm ** 2 for p in patterns], axis=0)) / n
    return Pattern(patterns[0].q_nm, intensity, sigma)
