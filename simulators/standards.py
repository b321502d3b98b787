"""A water standard and its empty cell measured on the simulated SAXS detector (seed 000 §S.2.1).

What beamline staff measure before a synthesis to put the detector on absolute scale: the
flask's cell filled with water, then empty, in the same geometry, each written as the
areaDetector HDF5 plugin writes frames (:mod:`.frame_file`, with ``AcquireTime`` and both beam
monitors per frame). :func:`write_standards` gives ``water_standard.h5`` and ``empty_cell.h5``,
which the ``[detector]`` keys ``water_standard`` and ``empty_cell`` name
(:mod:`ncsynth.analysis.water_standard` reads them).

Counts model (:mod:`.detector`'s, with each measurement's own transmission)::

    water: Φ · T_water · t · ΔΩ · (d · I_water + G(q))      empty: Φ · T_empty · t · ΔΩ · G(q)

I_water = 0.0165 cm⁻¹ (flat, :data:`~ncsynth.analysis.reduction.WATER_CM`), d the cell's path
(the synthesizer's ``thickness_cm``), G(q) the cell windows' scattering (the flask background's
Porod term, :class:`.detector.SampleBackground`, per cm of path, times d). Per transmitted photon
the two differ by ΔΩ · d · I_water: the simulator's true scale is the reference pixel's solid
angle, ``geometry.reference_solid_angle_sr`` (no detector efficiency is modelled), so the K of
the analysis is exactly :func:`~ncsynth.analysis.reduction.calibration_from_beam`.

Transmissions at 18 keV (plausible, not measured): two 0.7 mm borosilicate windows
(:data:`EMPTY_TRANSMISSION`), and 4 mm of water (μ ≈ 1.1 cm⁻¹) on top
(:data:`WATER_TRANSMISSION`). The noise comes from a generator of its own (seeded), so writing
the standards does not change the frames of a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ncsynth.analysis.reduction import WATER_CM
from .detector import FRAME_DTYPE, FrameSynthesizer
from .frame_file import append_frame, open_frame_file

#: Transmission of the empty cell (two 0.7 mm glass windows at 18 keV).
EMPTY_TRANSMISSION = 0.34
#: Transmission of the cell filled with 4 mm of water: windows × exp(-1.1 cm⁻¹ · 0.4 cm).
WATER_TRANSMISSION = EMPTY_TRANSMISSION * math.exp(-1.1 * 0.4)
#: Exposure of each standard frame (s) and frames per standard.
EXPOSURE_S = 1.0
N_FRAMES = 2


def write_standards(synthesizer: FrameSynthesizer, directory: str | Path, *, seed: int | None = None,
                    exposure_s: float = EXPOSURE_S, n_frames: int = N_FRAMES,
                    water_cm: float = WATER_CM) -> dict[str, str]:
    """Measure water and the empty cell with ``synthesizer``'s geometry, beam and path; write
    ``water_standard.h5`` and ``empty_cell.h5`` in ``directory``; return the configuration keys
    ``{"water_standard": path, "empty_cell": path}``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    q = synthesizer.q_grid_nm
    windows = synthesizer.background.porod_cm_nm4 * q ** (-synthesizer.background.porod_exponent)
    written = {}
    for key, intensity, transmission in (("water_standard", water_cm + windows, WATER_TRANSMISSION),
                                         ("empty_cell", windows, EMPTY_TRANSMISSION)):
        # expected_counts carries the synthesizer's sample transmission; this cell has its own
        expected = synthesizer.expected_counts(intensity, exposure_s) * (transmission / synthesizer.transmission)
        path = directory / f"{key}.h5"
        with open_frame_file(str(path), synthesizer.geometry, FRAME_DTYPE, "2026-01-01T00:00:00",
                             swmr=False) as handle:
            for k in range(n_frames):
                append_frame(handle, rng.poisson(expected).astype(FRAME_DTYPE), float(k * exposure_s), k + 1,
                             synthesizer.flux_ph_per_s, synthesizer.flux_ph_per_s * transmission, 1,
                             exposure_s=exposure_s)
        written[key] = str(path)
    return written
