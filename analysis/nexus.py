"""A run's analysis as one NeXus/HDF5 file (seed 000 §S.2: reduced patterns and per-frame fits).

``write_fits_nexus(path, fits, patterns, raw_start=...)`` writes the ``fits`` and ``patterns``
streams of a derived run (:mod:`ncsynth.analysis.derived_run`) for canSAS readers (SasView's loader
``sasdata``) and NeXus readers (silx, nexusformat/NeXpy, DAWN): one NXcanSAS SASentry per frame,
then one NXentry for the run::

    /frame_0000 … /frame_NNNN  NXentry, canSAS_class SASentry, definition "NXcanSAS", @version 1.1;
                           title (sample, scan, frame, time), run (raw uid, @name "scan N frame i")
      sasdata              NXdata, SASdata: I (1/cm, or "a.u." in a run without an absolute scale,
                           analysis.absolute_scale False; @uncertainties Idev), Idev (linked as I_errors),
                           Q (1/nm; one dataset hard-linked into every frame), Imodel (the fit,
                           I's units), Time (s after injection, scalar); @signal I, @I_axes "Q"
      sassample            NXsample, SASsample: name, thickness (path length in mm: sasdata 0.11
                           ignores the thickness unit and takes mm), temperature (the frame's, degC)
      sasinstrument        NXinstrument, SASinstrument: sassource (wavelength), monochromator
                           (energy), sasdetector; one group hard-linked into every frame
      sasprocess           NXprocess, SASprocess: the analysis (program, version, date, settings as
                           JSON); one group hard-linked into every frame
    /run                   NXentry (no canSAS_class): experiment_identifier (raw uid), entry_identifier
                           ("scan N"), experiment_description (the title), start_time / end_time
                           (ISO 8601), exit_status, program_name "ncsynth" (@version); the root's default
      fits                 NXdata: one row per frame, the fits stream's columns with units, plus
                           heater_output_percent; radius_nm_errors etc. link the standard errors;
                           plots radius_nm against time_s
      kinetics             NXcollection: the kinetics summary (S3.2, S3.3), when given
      recipe               NXnote: the synthesis recipe of the start document, as JSON

Why this layout: sasdata (0.11) loads a SASdata of many frames as the last frame repeated and
without the intensity unit; one 1-D SASdata per SASentry loads as one dataset per frame, with Q
converted to 1/Å and I in 1/cm. sasdata does not skip a non-canSAS NXentry: it files the fields of
/run (written last, and after the frames in name order too) under the last frame's ``meta_data``,
except that fields named title, run or definition would replace that frame's own, so /run has none.

silx (3.1) plots each frame's sasdata as a curve with error bars and /run/fits as radius against time.

Numbers are written as the derived run holds them (failed frames are NaN); every numeric field
carries a UDUNITS ``units`` attribute ("1" for dimensionless), as NXcanSAS requires.
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
from ncsynth.analysis.derived_run import FIT_KEYS, KINETICS_KEYS

#: The NXentry of the run (fits table, kinetics, recipe), after the frames' SASentries.
RUN_ENTRY = "run"
PATTERN_COLUMNS = ("time_s", "q_nm", "intensity_cm", "sigma_cm", "model_cm")
#: Fitted values of the fits stream and their standard errors.
FIT_ERRORS = {"radius_nm": "radius_err_nm", "sigma_nm": "sigma_err_nm",
              "concentration_molar": "concentration_err_molar"}
#: I's units in a run without an absolute scale (NXcanSAS: arbitrary units, "such as a.u.").
RELATIVE_UNITS = "a.u."
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
    analysis = (analysis_start or {}).get("analysis") or {}
    try:
        with h5py.File(partial, "w", track_order=True) as f:  # frames in order, then the run
            f.attrs.update(default=RUN_ENTRY, file_name=path.name,
                           file_time=datetime.now(timezone.utc).isoformat(),
                           creator=f"ncsynth {ncsynth.__version__}", HDF5_Version=h5py.version.hdf5_version,
                           h5py_version=h5py.version.version)
            shared: dict[str, h5py.HLObject] = {}
            for index in range(n_frames):
                _frame_entry(f, index, raw_start, analysis, analysis_start or {}, table, curves, q_nm, shared)
            entry = _run_entry(f, raw_start, raw_stop)
            _fits_group(entry, table, heater)
            if kinetics is not None:
                _kinetics(entry, kinetics)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path



def frame_entry_name(index: int) -> str:
    """The SASentry of frame ``index`` (0-based, the fits stream's row)."""
    return f"frame_{index:04d}"


def _run_entry(f: h5py.File, start: dict, stop: dict | None) -> h5py.Group:
    entry = _group(f, RUN_ENTRY, "NXentry")
    entry.attrs["default"] = "fits"
    recipe = start.get("recipe") or {}
    # NXentry's identifier fields, not title/run: sasdata reads any "title" or "run" into the frame
    # read before (the last), whatever the group
    _field(entry, "experiment_identifier", start["uid"])
    _field(entry, "entry_identifier", f"scan {start.get('scan_id')}")
    _field(entry, "experiment_description", _title(start))
    _field(entry, "program_name", "ncsynth", version=ncsynth.__version__)
    if "time" in start:
        _field(entry, "start_time", _iso(start["time"]))
    if stop and "time" in stop:
        _field(entry, "end_time", _iso(stop["time"]))
        _field(entry, "exit_status", str(stop.get("exit_status", "")))
    if recipe:
        note = _group(entry, "recipe", "NXnote")
        _field(note, "description", "synthesis recipe of the run's start document (ncsynth.plans.Recipe)")
        _field(note, "type", "application/json")
        _field(note, "data", json.dumps(recipe))
    return entry


def _title(start: dict) -> str:
    recipe = start.get("recipe") or {}
    return (f"{recipe.get('sample', 'sample')}: {start.get('plan_name', 'run')} "
            f"scan {start.get('scan_id')} ({start['uid'][:8]})")


def _frame_entry(f: h5py.File, index: int, start: dict, analysis: dict, analysis_start: dict,
                 table: dict, curves: dict, q_nm: np.ndarray, shared: dict) -> None:
    """Frame ``index`` as one NXcanSAS SASentry; Q, the instrument and the process are written once
    and hard-linked into the later frames."""
    entry = _group(f, frame_entry_name(index), "NXentry", "SASentry")
    entry.attrs.update(version="1.1", default="sasdata")
    time_s = float(table["time_s"][index])
    _field(entry, "definition", "NXcanSAS")
    _field(entry, "title", f"{_title(start)} frame {index}, {time_s:.6g} s after injection")
    _field(entry, "run", start["uid"], name=f"scan {start.get('scan_id')} frame {index}")
    data = _group(entry, "sasdata", "NXdata", "SASdata")
    data.attrs.update(signal="I", I_axes="Q", axes="Q", Q_indices=np.int32(0), auxiliary_signals=["Imodel"])
    units = "1/cm" if analysis.get("absolute_scale", True) is not False else RELATIVE_UNITS
    _field(data, "I", curves["intensity_cm"][index], units, uncertainties="Idev",
           long_name=f"I(q), background subtracted ({units})")
    data["I_errors"] = _field(data, "Idev", curves["sigma_cm"][index], units)  # NXdata's errors, for silx
    if "Q" in shared:
        data["Q"] = shared["Q"]
    else:
        shared["Q"] = _field(data, "Q", q_nm, "1/nm", long_name="q (1/nm)")
    _field(data, "Imodel", curves["model_cm"][index], units, long_name=f"fitted model ({units})")
    _field(data, "Time", time_s, "s", long_name="time after injection, mid-exposure (s)")
    _sample(entry, analysis, start, table["temperature_c"][index])
    for name, write in (("sasinstrument", lambda: _instrument(entry, analysis, start)),
                        ("sasprocess", lambda: _process(entry, analysis_start))):
        if name in shared:
            entry[name] = shared[name]
        else:
            shared[name] = write()


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


def _kinetics(entry: h5py.Group, kinetics) -> None:
    values = _columns(kinetics, list(KINETICS_KEYS), "kinetics")
    group = _group(entry, "kinetics", "NXcollection")
    for name, column in values.items():
        _field(group, name, column[-1] if column.ndim else column, _units(KINETICS_KEYS, name))


def _instrument(entry: h5py.Group, analysis: dict, start: dict) -> h5py.Group:
    instrument = _group(entry, "sasinstrument", "NXinstrument", "SASinstrument")
    geometry = analysis.get("geometry") or {}
    source = _group(instrument, "sassource", "NXsource", "SASsource")
    _field(source, "radiation", "Synchrotron X-ray Source")
    _field(source, "probe", "x-ray")
    detector = _group(instrument, "sasdetector", "NXdetector", "SASdetector")
    _field(detector, "name", ", ".join(start.get("detectors") or ["SAXS detector"]))
    if not geometry:
        return instrument
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
    return instrument


def _sample(entry: h5py.Group, analysis: dict, start: dict, temperature_c: float) -> h5py.Group:
    sample = _group(entry, "sassample", "NXsample", "SASsample")
    recipe = start.get("recipe") or {}
    _field(sample, "name", recipe.get("sample", "unknown"))
    if analysis.get("path_length_cm"):  # in mm: sasdata ignores the unit and assumes mm
        _field(sample, "thickness", float(analysis["path_length_cm"]) * 10.0, "mm")
    _field(sample, "temperature", temperature_c, "degC")  # the frame's
    return sample


def _process(entry: h5py.Group, analysis_start: dict) -> h5py.Group:
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
    return process
