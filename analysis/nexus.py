"""A run's analysis as one NeXus/HDF5 file (seed 000 §S.2: reduced patterns and per-frame fits).

``write_fits_nexus(path, fits, patterns, raw_start=...)`` writes the ``fits`` and ``patterns``
streams of a derived run (:mod:`ncsynth.analysis.live`) for NeXus readers (silx, nexusformat/NeXpy,
DAWN) and canSAS readers::

    /entry                 NXentry, canSAS_class SASentry, definition "NXcanSAS"; title, run (raw uid),
                           start_time / end_time (ISO 8601), program_name "ncsynth" (@version)
      sasdata              NXdata, SASdata: I (frames × q, 1/cm, @uncertainties Idev), Idev, Q (1/nm),
                           Time (s after injection), Imodel (the fit, 1/cm); @I_axes "Time,Q"
      fits                 NXdata: one row per frame, the fits stream's columns with units, plus
                           heater_output_percent; radius_nm_errors etc. link the standard errors;
                           plots radius_nm against time_s
      kinetics             NXcollection: the kinetics summary (S3.2, S3.3), when given
      sasinstrument        NXinstrument: sassource (wavelength), monochromator (energy), sasdetector
      sassample            NXsample: name, thickness (path length), temperature (per frame)
      sasprocess           NXprocess: the analysis (program, version, date, settings as JSON)
      recipe               NXnote: the synthesis recipe of the start document, as JSON

Numbers are written as the derived run holds them (failed frames are NaN); every numeric field
carries a UDUNITS ``units`` attribute ("1" for dimensionless), as NXcanSAS requires.
silx (3.1) plots ``fits`` but does not take ``sasdata`` for NXdata: it reads ``I@uncertainties``
as the axes' errors (one name for two axes); its datasets still open as images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

import ncsynth
from ncsynth.analysis.geometry import HC_KEV_NM
from ncsynth.analysis.live import FIT_KEYS, KINETICS_KEYS

PATTERN_COLUMNS = ("time_s", "q_nm", "intensity_cm", "sigma_cm", "model_cm")
#: Fitted values of the fits stream and their standard errors.
FIT_ERRORS = {"radius_nm": "radius_err_nm", "sigma_nm": "sigma_err_nm",
              "concentration_molar": "concentration_err_molar"}
#: The data keys' unit spellings that UDUNITS (hence NeXus) reads differently.
_UDUNITS = {"cm^-1": "1/cm", "nm^-1": "1/nm", "": "1", "s since the epoch": "s"}


def _units(keys: dict, name: str) -> str | None:
    info = keys.get(name, {})
    if info.get("dtype") not in ("number", "integer"):
        return None
    return _UDUNITS.get(info.get("units", ""), info.get("units", ""))


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(float(epoch_s), timezone.utc).isoformat()


def _columns(table, required, what: str) -> dict[str, np.ndarray]:
    """Named columns of a mapping of arrays or an xarray Dataset (``run[stream].read()``)."""
    if not (isinstance(table, Mapping) or hasattr(table, "data_vars")):
        raise TypeError(f"{what} must be a mapping of columns or an xarray Dataset, got {type(table).__name__}")
    missing = [name for name in required if name not in table]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}")
    return {name: np.asarray(table[name]) for name in required}


def _group(parent: h5py.Group, name: str, nx_class: str, cansas_class: str | None = None) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    if cansas_class:
        group.attrs["canSAS_class"] = cansas_class
    return group


def _field(group: h5py.Group, key: str, value, units: str | None = None, **attrs) -> h5py.Dataset:
    value = np.asarray(value)
    if value.dtype.kind in "US":
        value = value.astype(h5py.string_dtype())
    elif value.dtype.kind == "b":
        value = value.astype(np.int8)  # NX_BOOLEAN as 0/1: readable by every HDF5 tool
    dataset = group.create_dataset(key, data=value)
    if units is not None:
        dataset.attrs["units"] = units
    dataset.attrs.update(attrs)
    return dataset


def hold_at(times_s, reading_times_s, readings) -> np.ndarray:
    """The latest reading at or before each of ``times_s`` (epoch s); NaN before the first reading."""
    times_s = np.asarray(times_s, dtype=float)
    reading_times_s, readings = np.asarray(reading_times_s, dtype=float), np.asarray(readings, dtype=float)
    if reading_times_s.shape != readings.shape or readings.ndim != 1:
        raise ValueError(f"reading_times_s {reading_times_s.shape} and readings {readings.shape} "
                         f"must be 1-D arrays of one length")
    if not readings.size:
        return np.full(times_s.shape, np.nan)
    order = np.argsort(reading_times_s, kind="stable")
    index = np.searchsorted(reading_times_s[order], times_s, side="right") - 1
    return np.where(index >= 0, readings[order][np.clip(index, 0, None)], np.nan)


def _check_shapes(columns: dict, shapes, what: str, default=None) -> None:
    """Raise ValueError naming the first column whose shape is not ``shapes`` (one shape, or per name)."""
    for name, column in columns.items():
        expected = shapes if isinstance(shapes, tuple) else shapes.get(name, default)
        if column.shape != expected:
            raise ValueError(f"{what} column {name!r} must have the shape {expected}, got {column.shape}")


def _common_q(q_nm: np.ndarray) -> np.ndarray:
    """The one q grid of every frame (the reducer's bins); frames without a pattern are NaN rows."""
    if q_nm.ndim != 2 or q_nm.shape[1] == 0:
        raise ValueError(f"patterns q_nm must be frames × q bins, got shape {q_nm.shape}")
    finite = q_nm[np.all(np.isfinite(q_nm), axis=1)]
    if not len(finite):
        raise ValueError("patterns hold no frame with a q grid: nothing was reduced")
    if not np.allclose(finite, finite[0], rtol=1e-12, atol=0.0):
        raise ValueError("patterns q_nm differ between frames; one q grid per run is expected")
    return finite[0]


def write_fits_nexus(path, fits, patterns, *, raw_start: dict, raw_stop: dict | None = None,
                     analysis_start: dict | None = None, kinetics=None,
                     heater_readings: tuple | None = None) -> Path:
    """Write a derived run's fits and reduced patterns to ``path`` as NeXus/HDF5 (NXcanSAS); return the path.

    fits, patterns : the derived run's ``fits`` and ``patterns`` streams (``run[stream].read()``
        or mappings of columns), one row per frame, in the same order.
    raw_start, raw_stop : the raw run's start and stop documents (uid, time, scan_id, recipe;
        exit status and end time).
    analysis_start : the derived run's start document (``analysis``: settings, geometry, path
        length, fitter version) for the instrument, sample thickness and process groups.
    kinetics : the ``kinetics`` stream (one row), written as scalars with units.
    heater_readings : ``(times_s, output_percent)``: heater output readings (epoch s, %); each
        frame gets the latest reading at or before its event time (the ``time`` column of
        ``fits``), written as ``fits/heater_output_percent``.

    The file is written beside ``path`` and renamed into place, so a failure leaves no partial file.
    """
    if not isinstance(raw_start, Mapping) or "uid" not in raw_start:
        raise ValueError(f"raw_start must be the raw run's start document (with a uid), got {raw_start!r}")
    table = _columns(fits, list(FIT_KEYS), "fits")
    n_frames = len(table["time_s"]) if table["time_s"].ndim == 1 else 0
    if n_frames == 0:
        raise ValueError(f"fits must hold at least one frame, got time_s of shape {table['time_s'].shape}")
    _check_shapes(table, (n_frames,), "fits")
    curves = _columns(patterns, PATTERN_COLUMNS, "patterns")
    q_nm = _common_q(curves["q_nm"])
    _check_shapes(curves, {"time_s": (n_frames,)}, "patterns", default=(n_frames, len(q_nm)))
    if not np.allclose(curves["time_s"], table["time_s"], equal_nan=True):
        raise ValueError("patterns and fits must hold the same frames in the same order (their time_s differ)")
    heater = None
    if heater_readings is not None:
        if "time" not in fits:
            raise ValueError("fits lacks the event time column 'time' needed to place heater_readings")
        heater = hold_at(np.asarray(fits["time"]), *heater_readings)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with h5py.File(partial, "w") as f:
            f.attrs.update(default="entry", file_name=path.name, file_time=datetime.now(timezone.utc).isoformat(),
                           creator=f"ncsynth {ncsynth.__version__}", HDF5_Version=h5py.version.hdf5_version,
                           h5py_version=h5py.version.version)
            entry = _entry(f, raw_start, raw_stop)
            frames = _fits_group(entry, table, heater)
            _sasdata(entry, frames, q_nm, curves)
            if kinetics is not None:
                _kinetics(entry, kinetics)
            analysis = (analysis_start or {}).get("analysis") or {}
            _instrument(entry, analysis, raw_start)
            _sample(entry, analysis, raw_start, frames)
            _process(entry, analysis_start or {})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _entry(f: h5py.File, start: dict, stop: dict | None) -> h5py.Group:
    entry = _group(f, "entry", "NXentry", "SASentry")
    entry.attrs.update(version="1.1", default="sasdata")
    recipe = start.get("recipe") or {}
    _field(entry, "definition", "NXcanSAS")
    _field(entry, "title", f"{recipe.get('sample', 'sample')}: {start.get('plan_name', 'run')} "
                           f"scan {start.get('scan_id')} ({start['uid'][:8]})")
    _field(entry, "run", start["uid"], name=f"scan {start.get('scan_id')}")
    _field(entry, "program_name", "ncsynth", version=ncsynth.__version__)
    if "time" in start:
        _field(entry, "start_time", _iso(start["time"]))
    if stop and "time" in stop:
        _field(entry, "end_time", _iso(stop["time"]))
        _field(entry, "exit_status", str(stop.get("exit_status", "")))
    if recipe:
        note = _group(entry, "recipe", "NXnote", "SASnote")
        _field(note, "description", "synthesis recipe of the run's start document (ncsynth.plans.Recipe)")
        _field(note, "type", "application/json")
        _field(note, "data", json.dumps(recipe))
    return entry


def _fits_group(entry: h5py.Group, table: dict, heater) -> h5py.Group:
    frames = _group(entry, "fits", "NXdata")
    frames.attrs.update(signal="radius_nm", axes="time_s", time_s_indices=np.int32(0))
    for name, values in table.items():
        extra = {"start": _iso(0.0)} if name == "frame_time" else {}
        _field(frames, name, values, _units(FIT_KEYS, name), **extra)
    for name, error in FIT_ERRORS.items():  # NXdata's FIELD_errors: the same dataset, linked
        frames[f"{name}_errors"] = frames[error]
    frames["time_s"].attrs["long_name"] = "time after injection, mid-exposure (s)"
    if heater is not None:
        _field(frames, "heater_output_percent", heater, "%")
    return frames


def _sasdata(entry: h5py.Group, frames: h5py.Group, q_nm: np.ndarray, curves: dict) -> None:
    data = _group(entry, "sasdata", "NXdata", "SASdata")
    data.attrs.update(signal="I", I_axes="Time,Q", axes=["Time", "Q"], Q_indices=np.int32(1),
                      Time_indices=np.int32(0), auxiliary_signals=["Imodel"])
    _field(data, "I", curves["intensity_cm"], "1/cm", uncertainties="Idev",
           long_name="I(q), background subtracted (1/cm)")
    _field(data, "Idev", curves["sigma_cm"], "1/cm")
    _field(data, "Q", q_nm, "1/nm", long_name="q (1/nm)")
    data["Time"] = frames["time_s"]  # the same dataset: s after injection, mid-exposure
    _field(data, "Imodel", curves["model_cm"], "1/cm", long_name="fitted model (1/cm)")


def _kinetics(entry: h5py.Group, kinetics) -> None:
    values = _columns(kinetics, list(KINETICS_KEYS), "kinetics")
    group = _group(entry, "kinetics", "NXcollection")
    for name, column in values.items():
        _field(group, name, column[-1] if column.ndim else column, _units(KINETICS_KEYS, name))


def _instrument(entry: h5py.Group, analysis: dict, start: dict) -> None:
    instrument = _group(entry, "sasinstrument", "NXinstrument", "SASinstrument")
    geometry = analysis.get("geometry") or {}
    source = _group(instrument, "sassource", "NXsource", "SASsource")
    _field(source, "radiation", "Synchrotron X-ray Source")
    _field(source, "probe", "x-ray")
    detector = _group(instrument, "sasdetector", "NXdetector", "SASdetector")
    _field(detector, "name", ", ".join(start.get("detectors") or ["SAXS detector"]))
    if not geometry:
        return
    _field(source, "incident_wavelength", HC_KEV_NM / geometry["energy_kev"], "nm")
    mono = _group(instrument, "monochromator", "NXmonochromator")
    _field(mono, "energy", geometry["energy_kev"], "keV")
    _field(mono, "wavelength", HC_KEV_NM / geometry["energy_kev"], "nm")
    pixel_m = geometry["pixel_size_m"]
    _field(detector, "SDD", geometry["distance_m"], "m")
    _field(detector, "x_pixel_size", pixel_m, "m")
    _field(detector, "y_pixel_size", pixel_m, "m")
    row, column = geometry["beam_center_px"]
    _field(detector, "beam_center_x", column * pixel_m, "m")
    _field(detector, "beam_center_y", row * pixel_m, "m")


def _sample(entry: h5py.Group, analysis: dict, start: dict, frames: h5py.Group) -> None:
    sample = _group(entry, "sassample", "NXsample", "SASsample")
    recipe = start.get("recipe") or {}
    _field(sample, "name", recipe.get("sample", "unknown"))
    if analysis.get("path_length_cm"):
        _field(sample, "thickness", analysis["path_length_cm"], "cm")
    sample["temperature"] = frames["temperature_c"]  # per frame, °C


def _process(entry: h5py.Group, analysis_start: dict) -> None:
    analysis = analysis_start.get("analysis") or {}
    process = _group(entry, "sasprocess", "NXprocess", "SASprocess")
    _field(process, "name", f"ncsynth saxs_analysis ({analysis.get('model', 'unknown model')})")
    _field(process, "program", "ncsynth.analysis.live")
    _field(process, "version", str(analysis.get("fitter_version", "unknown")))
    if "time" in analysis_start:
        _field(process, "date", _iso(analysis_start["time"]))
    _field(process, "description", "azimuthal integration, subtraction of the averaged pre-injection "
                                    "frames, Gaussian-sphere fit per frame (seed 000 §S.2)")
    if analysis:
        settings = _group(process, "settings", "NXnote")
        _field(settings, "type", "application/json")
        _field(settings, "data", json.dumps(analysis))
