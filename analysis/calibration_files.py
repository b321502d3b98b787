"""The SAXS detector's calibration from the files beamline staff keep: a pyFAI PONI file
(geometry) and a mask image, as :class:`~ncsynth.analysis.geometry.DetectorGeometry`.

``geometry_from_files(poni, mask)`` reads them (one-line ValueError naming the file and
what is wrong); ``write_calibration(geometry, directory)`` writes a geometry's PONI
(pyFAI's own writer, version 2.1) and its mask (EDF through fabio, 1 = masked), which is
what ``ncsynth sim serve`` hands a ``hardware = "hutch"`` configuration.

Only what the reduction models is accepted: a flat detector perpendicular to the beam
(rot1 = rot2 = rot3 = 0) with square pixels; the photon energy is h·c/λ of the PONI's
wavelength.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ncsynth.analysis.geometry import HC_KEV_NM, DetectorGeometry, read_mask

#: Largest |rotation| (rad) taken as "no tilt".
TILT_TOLERANCE_RAD = 1e-9


def geometry_from_files(poni: str | Path, mask: str | Path | None = None) -> DetectorGeometry:
    """The geometry of the PONI file ``poni`` with the mask image ``mask`` (None: no mask)."""
    from pyFAI.io.ponifile import PoniFile

    try:
        calibration = PoniFile(str(poni))
        detector = calibration.detector
        shape = detector.max_shape
        pixel = (float(detector.pixel1), float(detector.pixel2))
        rotations = (calibration.rot1, calibration.rot2, calibration.rot3)
        wavelength_m = float(calibration.wavelength)
    except Exception as error:  # pyFAI raises many kinds for a damaged file
        raise ValueError(f"PONI file {poni}: cannot read it ({type(error).__name__}: {error})") from None
    if shape is None:
        raise ValueError(f"PONI file {poni}: the detector has no shape (max_shape)")
    if not math.isclose(pixel[0], pixel[1], rel_tol=1e-9):
        raise ValueError(f"PONI file {poni}: pixels {pixel[0]} x {pixel[1]} m are not square")
    if any(abs(float(r or 0.0)) > TILT_TOLERANCE_RAD for r in rotations):
        raise ValueError(f"PONI file {poni}: a tilted detector (rot1..3 = {rotations}) is not supported")
    if not (math.isfinite(wavelength_m) and wavelength_m > 0):
        raise ValueError(f"PONI file {poni}: no wavelength")
    geometry = DetectorGeometry(
        energy_kev=HC_KEV_NM / (wavelength_m * 1e9), distance_m=float(calibration.dist),
        shape=tuple(int(n) for n in shape), pixel_size_m=pixel[0],
        beam_center_px=(calibration.poni1 / pixel[0], calibration.poni2 / pixel[1]),
        beamstop_radius_m=0.0, gap_width_px=0, mask_file=str(mask) if mask else "")
    if mask:
        read_mask(str(mask), geometry.shape)  # a bad file is refused now, not at the first frame
    return geometry


def write_calibration(geometry: DetectorGeometry, directory: str | Path) -> tuple[Path, Path]:
    """Write ``geometry`` as ``saxs.poni`` and its mask as ``saxs_mask.edf`` in ``directory``."""
    import fabio.edfimage
    from pyFAI.io.ponifile import PoniFile

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    poni, mask = directory / "saxs.poni", directory / "saxs_mask.edf"
    with open(poni, "w") as handle:
        PoniFile(geometry.to_integrator()).write(handle)
    fabio.edfimage.EdfImage(data=geometry.mask.astype(np.int8)).write(str(mask))
    return poni, mask
