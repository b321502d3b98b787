"""Detector geometry of the in-situ SAXS set-up (seed 000 §S.1.4), shared by the
detector simulator and the reduction.

ID02 at the ESRF, 18 keV, sample-detector distance 1.0 m, a Rayonix MX170-HS
(170 mm square) read out with 8×8 binning: 480×480 pixels of 0.354 mm. The
default beam centre is a little off the detector centre (as it is on a real
set-up) so that the q range 0.1–5 nm⁻¹ of §S.1.4 is covered in every direction.

Every per-pixel quantity (q, solid angle) is taken from the pyFAI
:class:`~pyFAI.integrator.azimuthal.AzimuthalIntegrator` built by
:meth:`DetectorGeometry.to_integrator`, so a frame synthesised from
:attr:`DetectorGeometry.q_map_nm` and reduced with that same integrator agree
by construction.

Conventions
-----------
* Pixel ``(i, j)`` (row, column) covers ``[i, i+1) × [j, j+1)`` in pixel units;
  its centre is at ``(i + 0.5, j + 0.5)``. ``beam_center_px`` is in the same
  units, so the pyFAI PONI is ``beam_center_px × pixel_size_m`` (detector
  perpendicular to the beam, no tilts).
* Masks follow pyFAI: ``True`` (non-zero) means *masked* (not used).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

#: h·c in keV·nm: λ[nm] = HC_KEV_NM / E[keV].
HC_KEV_NM = 1.239841984


@dataclass(frozen=True)
class DetectorGeometry:
    """Flat detector perpendicular to the beam (seed 000 §S.1.4 defaults).

    Parameters
    ----------
    energy_kev : photon energy (18 keV ± 2 eV at ID02).
    distance_m : sample-detector distance.
    shape : (rows, columns) of the binned detector.
    pixel_size_m : edge of one binned, square pixel.
    beam_center_px : (row, column) of the direct beam, pixel units (see module docstring).
    beamstop_radius_m : radius of the round beam stop; pixels whose centre lies inside are masked.
    module_grid : (rows, columns) of detector modules; the gaps between them are masked.
    gap_width_px : width of each inter-module gap, pixels (at least one pixel in any scaled variant).
    mask_file : a mask image (any format fabio reads, or ``.npy``; non-zero = masked) used
        instead of the beam stop and gaps above; "" for none.
    """

    energy_kev: float = 18.0
    distance_m: float = 1.0
    shape: tuple[int, int] = (480, 480)
    pixel_size_m: float = 0.354e-3
    beam_center_px: tuple[float, float] = (262.3, 221.6)
    beamstop_radius_m: float = 0.9e-3
    module_grid: tuple[int, int] = (2, 2)
    gap_width_px: int = 2
    mask_file: str = ""

    def __post_init__(self):
        for name in ("energy_kev", "distance_m", "pixel_size_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DetectorGeometry.{name} must be a positive number, got {value!r}")
        if not self.beamstop_radius_m >= 0:
            raise ValueError(f"DetectorGeometry.beamstop_radius_m must be >= 0, got {self.beamstop_radius_m!r}")
        shape = tuple(self.shape)
        if len(shape) != 2 or any(int(n) != n or n < 8 for n in shape):
            raise ValueError(f"DetectorGeometry.shape must be two integers >= 8, got {self.shape!r}")
        grid = tuple(self.module_grid)
        if len(grid) != 2 or any(int(n) != n or n < 1 for n in grid):
            raise ValueError(f"DetectorGeometry.module_grid must be two integers >= 1, got {self.module_grid!r}")
        if int(self.gap_width_px) != self.gap_width_px or self.gap_width_px < 0:
            raise ValueError(f"DetectorGeometry.gap_width_px must be an integer >= 0, got {self.gap_width_px!r}")
        centre = tuple(self.beam_center_px)
        if len(centre) != 2 or not all(math.isfinite(c) for c in centre):
            raise ValueError(f"DetectorGeometry.beam_center_px must be two finite numbers, got {self.beam_center_px!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        object.__setattr__(self, "module_grid", tuple(int(n) for n in grid))
        object.__setattr__(self, "beam_center_px", tuple(float(c) for c in centre))
        object.__setattr__(self, "gap_width_px", int(self.gap_width_px))

    # -- derived scalars -------------------------------------------------------------
    @property
    def wavelength_nm(self) -> float:
        """X-ray wavelength, nm (0.0689 nm at 18 keV)."""
        return HC_KEV_NM / self.energy_kev

    @property
    def reference_solid_angle_sr(self) -> float:
        """Solid angle of a pixel at normal incidence, ``pixel_size² / distance²`` (sr).

        pyFAI's relative solid-angle correction (``correctSolidAngle=True``) divides
        by the pixel's solid angle *in units of this one*.
        """
        return (self.pixel_size_m / self.distance_m) ** 2

    # -- pyFAI -----------------------------------------------------------------------
    def to_integrator(self) -> AzimuthalIntegrator:
        """A new pyFAI integrator for this geometry, carrying :attr:`mask` on its detector."""
        detector = Detector(pixel1=self.pixel_size_m, pixel2=self.pixel_size_m,
                            max_shape=self.shape)
        detector.mask = self.mask.astype(np.int8)
        return AzimuthalIntegrator(
            dist=self.distance_m,
            poni1=self.beam_center_px[0] * self.pixel_size_m,
            poni2=self.beam_center_px[1] * self.pixel_size_m,
            detector=detector,
            wavelength=self.wavelength_nm * 1e-9,
        )

    @functools.cached_property
    def _integrator(self) -> AzimuthalIntegrator:
        return self.to_integrator()

    @functools.cached_property
    def q_map_nm(self) -> np.ndarray:
        """Scattering vector q = 4π sin(θ)/λ at every pixel centre, nm⁻¹ (from pyFAI; read-only)."""
        return _read_only(self._integrator.qArray(self.shape))

    @functools.cached_property
    def solid_angle_sr(self) -> np.ndarray:
        """Solid angle subtended by every pixel, sr (pyFAI, absolute; read-only)."""
        return _read_only(self._integrator.solidAngleArray(self.shape, absolute=True))

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """Boolean mask, True = masked: beam stop and inter-module gaps, or ``mask_file``'s
        non-zero pixels (read-only)."""
        if self.mask_file:
            return _read_only(read_mask(self.mask_file, self.shape))
        rows, cols = self.shape
        r = np.arange(rows)[:, None] + 0.5 - self.beam_center_px[0]
        c = np.arange(cols)[None, :] + 0.5 - self.beam_center_px[1]
        radius_m = np.hypot(r, c) * self.pixel_size_m
        mask = radius_m < self.beamstop_radius_m
        for axis, (n_pixels, n_modules) in enumerate(zip(self.shape, self.module_grid)):
            for k in range(1, n_modules):
                edge = round(k * n_pixels / n_modules)
                lo = edge - self.gap_width_px // 2
                band = slice(max(lo, 0), max(lo + self.gap_width_px, 0))
                if axis == 0:
                    mask[band, :] = True
                else:
                    mask[:, band] = True
        return _read_only(mask)

    def q_range_nm(self) -> tuple[float, float]:
        """(min, max) of q over the unmasked pixels, nm⁻¹."""
        q = self.q_map_nm[~self.mask]
        return float(q.min()), float(q.max())

    # -- variants and serialisation --------------------------------------------------
    def scaled(self, shape: tuple[int, int]) -> "DetectorGeometry":
        """The same detector area binned to ``shape`` (coarser or finer pixels).

        Beam centre and gaps scale with the pixels; distance, energy and beam stop
        stay, so the q range is unchanged. Requires a square pixel, i.e. both axes
        scaled by the same factor.
        """
        if self.mask_file:
            raise ValueError(f"a geometry with the mask file {self.mask_file} cannot be rebinned")
        rows, cols = (int(n) for n in shape)
        factor = rows / self.shape[0]
        if not math.isclose(cols / self.shape[1], factor, rel_tol=1e-9):
            raise ValueError(f"shape must keep the aspect ratio of {self.shape}, got {shape!r}")
        return replace(
            self,
            shape=(rows, cols),
            pixel_size_m=self.pixel_size_m / factor,
            beam_center_px=(self.beam_center_px[0] * factor, self.beam_center_px[1] * factor),
            gap_width_px=max(1, round(self.gap_width_px * factor)) if self.gap_width_px else 0,
        )

    def small(self) -> "DetectorGeometry":
        """A 120×120 variant of this geometry for fast tests."""
        return self.scaled((120, 120))

    def to_dict(self) -> dict:
        """JSON-ready description (lists for tuples); inverse of :meth:`from_dict`."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorGeometry":
        """Geometry from :meth:`to_dict` output (e.g. the detector's ``INFO?`` reply)."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DetectorGeometry fields: {sorted(unknown)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class CalibrationFileError(ValueError):
    """A calibration file (the mask) that is missing or cannot be read; names the file."""


def read_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    """The mask image at ``path`` (``.npy``, or any format fabio reads) as booleans, True =
    masked; ValueError naming the file if it cannot be read or is not ``shape``."""
    try:
        if str(path).endswith(".npy"):
            image = np.load(path, allow_pickle=False)
        else:
            import fabio  # pyFAI's image reader

            with fabio.open(path) as opened:
                image = np.array(opened.data)
    except Exception as error:  # fabio raises many kinds
        raise CalibrationFileError(f"mask file {path}: cannot read it ({type(error).__name__}: "
                                   f"{error})") from None
    if image.shape != tuple(shape):
        raise ValueError(f"mask file {path}: shape {image.shape}, the detector has {tuple(shape)}")
    return image != 0


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
