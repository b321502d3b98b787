"""A raw run's reduction: which data key holds the detector's frames, and the geometry, path
length and absolute scale its frames are reduced with (seed 000 §S.2.1).

The live analysis (:class:`~ncsynth.analysis.run_analysis.SAXSAnalysis`) reads these from the raw run's
descriptors, i.e. from the detector's configuration as the RunEngine recorded it, unless its
:class:`~ncsynth.analysis.analysis_settings.AnalysisSettings` give them:

* the geometry: the settings' ``geometry``, else the detector's ``<det>_geometry_json``;
* the absolute scale K (see :mod:`~ncsynth.analysis.reduction`, intensities in cm⁻¹): the
  settings' ``calibration``, else the detector's ``<det>_calibration``, else the beam monitors
  (``<det>_flux_ph_per_s``, ``<det>_transmission``) with the water standard's reference solid
  angle (``<det>_reference_solid_angle_sr``, its error ``..._err_sr``) or the geometry's. None of
  these: a relative scale (K = 1, arbitrary units) and the reason why;
* the path length: the settings' ``path_length_cm``, else ``<det>_thickness_cm``, else the
  4 mm of §S.2.1 (:data:`~ncsynth.analysis.reduction.DEFAULT_PATH_LENGTH_CM`).

No geometry at all is an error (:func:`run_reduction` raises; the run is flagged once).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncsynth.analysis.analysis_settings import AnalysisSettings
from ncsynth.analysis.geometry import DetectorGeometry
from ncsynth.analysis.reduction import DEFAULT_PATH_LENGTH_CM, Reducer, calibration_from_beam


@dataclass(frozen=True)
class RunReduction:
    """How one raw run's frames are reduced.

    ``calibration_source`` says where K came from, ``calibration_rel_err`` its relative
    uncertainty (None: not known), ``relative_scale`` why the intensities are not absolute
    (None: they are, in cm⁻¹)."""

    reducer: Reducer
    calibration_source: str
    calibration_rel_err: float | None
    relative_scale: str | None


def run_reduction(settings: AnalysisSettings, config: dict, obj: str,
                  locate: Callable[[Path], Path] | None = None) -> RunReduction:
    """The reduction of the frames of detector ``obj`` whose configuration (the descriptor's
    ``configuration[obj]["data"]``) is ``config``. ValueError, TypeError, KeyError or OSError
    (a mask file: :class:`~ncsynth.analysis.geometry.CalibrationFileError` if it cannot be
    read) when the run has no usable geometry or calibration. ``locate``: where a file the
    configuration names (the mask) is now (a moved data directory,
    :meth:`~ncsynth.analysis.stream_frames.StreamFrames.locate`)."""
    def configured(name: str, setting: str):
        value = config.get(f"{obj}_{name}")
        if value in (None, "") or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"the detector {obj!r} does not report {name} in its configuration; "
                             f"give the analysis setting {setting}=...")
        return value

    geometry = settings.geometry
    if geometry is None:
        geometry = DetectorGeometry.from_dict(json.loads(configured("geometry_json", "geometry")))
        if geometry.mask_file and locate is not None:
            geometry = dataclasses.replace(geometry, mask_file=str(locate(Path(geometry.mask_file))))
    relative = None
    try:
        calibration, source, rel_err = _absolute_calibration(settings, config, obj, geometry, configured)
    except (ValueError, TypeError) as error:  # geometry but no scale: relative intensities
        calibration, source, rel_err, relative = 1.0, "none (relative scale)", None, str(error)
    path = settings.path_length_cm or float(config.get(f"{obj}_thickness_cm", math.nan))
    if not (path > 0):
        path = DEFAULT_PATH_LENGTH_CM
    reducer = Reducer(geometry, n_bins=settings.n_bins, q_range_nm=settings.q_range_nm,
                      path_length_cm=path, calibration=calibration)
    return RunReduction(reducer, source, rel_err, relative)


def _absolute_calibration(settings: AnalysisSettings, config: dict, obj: str, geometry,
                          configured) -> tuple[float, str, float | None]:
    """K, where it came from and its relative uncertainty: the settings', the configuration's,
    or the beam monitors' with the water standard's or the geometry's solid angle."""
    if settings.calibration is not None:
        return settings.calibration, "analysis settings", None
    if float(config.get(f"{obj}_calibration", math.nan)) > 0:  # the beamline's K
        return float(config[f"{obj}_calibration"]), "detector configuration (calibration)", None
    water = float(config.get(f"{obj}_reference_solid_angle_sr", math.nan))
    calibration = calibration_from_beam(float(configured("flux_ph_per_s", "calibration")),
                                        float(configured("transmission", "calibration")), geometry,
                                        water if water > 0 else None)
    if water > 0:
        return (calibration, "beam monitors, water standard",
                float(config[f"{obj}_reference_solid_angle_err_sr"]) / water)
    return calibration, "beam monitors, geometry", None


def image_key(descriptor: dict) -> str | None:
    """The data key of a descriptor's detector image (external, two-dimensional), if any."""
    for key, info in descriptor["data_keys"].items():
        if info.get("external") and len(info.get("shape") or []) == 2:
            return key
    return None


def object_of(descriptor: dict, key: str) -> str:
    """The device (object name) behind a descriptor's data ``key``."""
    for obj, keys in (descriptor.get("object_keys") or {}).items():
        if key in keys:
            return obj
    return descriptor["data_keys"][key].get("object_name") or key.rsplit("_", 1)[0]


def detector_configuration(descriptor: dict, key: str) -> dict:
    """The configuration readings (``{name: value}``) of the device behind data ``key``."""
    return ((descriptor.get("configuration") or {}).get(object_of(descriptor, key)) or {}).get("data") or {}
