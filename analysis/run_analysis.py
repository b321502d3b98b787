"""The SAXS analysis of one hot-injection run, live or replayed, as a bluesky DocumentRouter
(seed 000 §S.2).

:class:`SAXSAnalysis` turns the run's documents into a DERIVED run, emitted through
``emit(name, doc)`` (e.g. the catalog writer, a :class:`~ncsynth.analysis.display.LiveFigure`)
(:mod:`~ncsynth.analysis.derived_run` says what it holds: a ``fits`` event per primary frame,
its ``patterns``, the ``kinetics`` at the raw run's stop).

What it reads from the raw run (as written by ``ncsynth.plans.hot_injection``): the start
document (``recipe.cd_initial_molar``, ``piston``, its ``uid``), stream ``background``
(pre-injection frames, reduced and averaged: the background of §S.2.1), stream ``injection``
(``<injector>_fire_time_<piston>``, epoch s: t = 0) and stream ``primary`` (the frames
``<det>_image`` with the heater temperature). The detector geometry and, unless given,
the calibration (Φ·T·ΔΩ_ref, see :mod:`ncsynth.analysis.reduction`) and the path length come
from the detector's configuration in the descriptor (:mod:`~ncsynth.analysis.run_calibration`).
The image is an external (``STREAM:``) data key: each frame is read from the detector's HDF5
file where the run's stream_resource/stream_datum documents put it
(:class:`~ncsynth.analysis.stream_frames.StreamFrames`); the frame start time is the
detector's ``<det>_frame_time`` reading (epoch s).

Every frame gives a ``fits`` event: frames that cannot be reduced or fitted (wrong shape, no
counts, no particles yet, an exception in the analysis) give ``success=False`` with a ``reason``
and are counted in :attr:`SAXSAnalysis.errors`; nothing raises out of a frame. A run without a
usable calibration (no geometry, no absolute scale, a mask that cannot be read) is flagged once:
one entry in :attr:`SAXSAnalysis.errors` and one logged warning with the reason, kept in the
derived start's ``analysis.calibration_error``; its frames give ``fits`` events with
``success=False`` and the reason :data:`NO_CALIBRATION`. The start's ``analysis`` also says where
K came from (``calibration_source``) and its relative uncertainty (``calibration_rel_err``,
None when not known). A run with the geometry but no absolute scale (no K, no beam monitors)
is reduced on a relative scale (K = 1: d·K·I(q), :data:`RELATIVE_UNITS`) and flagged once the
same way (``analysis.absolute_scale`` False, ``absolute_scale_error`` the reason,
``intensity_units``): radii, widths and skewness are fitted as on the absolute scale, every amount
(concentrations, background, yield, the kinetics) is NaN. Each fit warm-
starts from the previous successful one, so a run pushed through a fresh router (replay:
the stored documents in order) reproduces the live numbers exactly.

The settings are in :mod:`~ncsynth.analysis.analysis_settings`; :mod:`~ncsynth.analysis.live`
gives every raw run its own :class:`SAXSAnalysis`, live and on replay.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from concurrent.futures import BrokenExecutor
from importlib import metadata as importlib_metadata

import numpy as np
from event_model import DocumentRouter

from ncsynth.analysis.analysis_settings import AnalysisSettings
from ncsynth.analysis.derived_run import (BACKGROUND, FITS, INJECTION, PRIMARY, DerivedRunDocuments,
                                          fit_data, flatten_kinetics, raw_description)
from ncsynth.analysis.kinetics import cd_after_second_injection, yield_fraction
from ncsynth.analysis.nucleation_period import summarize_kinetics
from ncsynth.analysis import run_calibration
from ncsynth.analysis.reduction import Pattern, Reducer, average, subtract
from ncsynth.analysis.saxs import SphereFit, fit_pattern
from ncsynth.analysis.geometry import CalibrationFileError
from ncsynth.analysis.frame_model import (FrameModel, SizeModelError, preferred_model,
                                          resolved_fraction, size_model_systematic)
from ncsynth.analysis.skewed import SkewedFit, fit_skewed
from ncsynth.analysis.stream_frames import FrameFileError, StreamFrames

logger = logging.getLogger(__name__)

#: Model name recorded in the derived run (S2.1 + S2.3 + constant background).
MODEL = "gaussian_spheres"
#: Se:Cd molar ratio β of S3.2 when neither the settings nor the recipe (``extra["beta"]``) give one.
DEFAULT_BETA = 5.0

#: The ``reason`` of every frame of a run without a usable calibration (flagged once per run).
NO_CALIBRATION = "no usable calibration (see the derived run's analysis.calibration_error)"
#: Units of a relative-scale run's intensities (NXcanSAS's spelling of arbitrary units).
RELATIVE_UNITS = "a.u."

#: Why the 98 % times of a double injection are not headline numbers.
SECOND_INJECTION_KINETICS = ("two injections: the 98 % rule (§S.3) is for one, and the one-population "
                             "fits after piston B do not count the new set apart")


def _fitter_version() -> str:
    try:
        return f"ncsynth {importlib_metadata.version('ncsynth')}"
    except importlib_metadata.PackageNotFoundError:
        return "ncsynth (not installed)"


# -- the per-run analysis ---------------------------------------------------------------------------
class SAXSAnalysis(DocumentRouter):
    """Reduce, subtract, fit every primary frame of one raw run; emit the derived run.

    ``emit(name, doc)`` receives the derived run's documents, in order, on the thread that
    feeds this router; ``root_map`` as for :class:`StreamFrames`. See the module docstring for
    what is read and emitted. ``stored=True`` (replay of a stored, complete run): a frame file
    that is missing or damaged ends the analysis with :class:`FrameFileError` instead of giving
    failed fits. ``mapper`` runs the skewed fit's cold starts (:func:`~ncsynth.analysis.skewed.fit_skewed`).
    A frame goes through :meth:`_single_fit` (reduction and Gaussian fit), the skewed fit,
    :meth:`_preferred_model`, then :meth:`_record_frame` (or :meth:`_failed_frame`): a replay
    may run the skewed fits in another process
    (:class:`~ncsynth.analysis.replay_pipeline.PipelinedAnalysis`).
    """

    def __init__(self, emit, settings: AnalysisSettings | None = None, root_map: dict | None = None,
                 *, stored: bool = False, mapper=map):
        super().__init__()
        if not callable(emit):
            raise TypeError(f"emit must be a callable (name, doc), got {type(emit).__name__}")
        self.emit = emit
        self.settings = settings or AnalysisSettings()
        #: (what, message) of every failure inside the analysis
        self.errors: list[tuple[str, str]] = []
        #: fits (SphereFit) and their frame times, in frame order
        self.fits: list = []
        #: skewed single-population fits (SkewedFit) of the same frames
        self.skewed_fits: list = []
        self._last_skewed = None
        #: the preferred size model's totals (FrameModel) of the same frames
        self.frame_models: list = []
        self._last_two = None
        self._size_model = SizeModelError()
        self.times_s: list[float] = []
        self.kinetics: dict | None = None
        self._raw_start: dict | None = None
        self._streams: dict[str, str] = {}  # descriptor uid -> stream name
        self._exposure: dict[str, float] = {}  # descriptor uid -> exposure s
        self._reduction: run_calibration.RunReduction | None = None
        self._calibration_error: str | None = None  # why there is no reduction (flagged once)
        self._image_key: str | None = self.settings.image_key
        self._frame_time_key: str | None = None
        self._frames = StreamFrames(root_map, complete=stored)
        # raised, not a failed fit (a pool of the searches that broke too)
        self._fatal_errors = (FrameFileError, CalibrationFileError, BrokenExecutor) if stored else ()
        self._mapper = mapper
        self._image_descriptors: set[str] = set()  # descriptor uids with the image key
        self._temperature_key: str | None = self.settings.temperature_key
        self._background_patterns: list[Pattern] = []
        self._background: Pattern | None = None
        self._t0: float | None = None
        self._last_good = None
        self._good_frame: int | None = None  # index of the frame whose fit is _last_good
        self._skewed_frame: int | None = None  # index of the frame whose fit is _last_skewed
        self._derived = DerivedRunDocuments(emit)
        self._yields: list[float] = []
        self.cd_initial_molar: float | None = self.settings.cd_initial_molar
        #: Cd in the flask after a second injection (S2.6 with both syringes), None without one
        self.cd_after_second_molar: float | None = None
        self._t_second: float | None = None  # piston B's firing (epoch s) in a double injection
        self._cds: list[float] = []  # c_Cd of S2.6 at each frame
        self.beta: float = self.settings.beta or DEFAULT_BETA
        self.piston = "a"

    # -- documents ----------------------------------------------------------------------
    def start(self, doc):
        self._raw_start = doc
        recipe = doc.get("recipe") or {}
        self.cd_initial_molar = self.settings.cd_initial_molar or recipe.get("cd_initial_molar")
        self.beta = self.settings.beta or (recipe.get("extra") or {}).get("beta") or DEFAULT_BETA
        self.piston = str(doc.get("piston", "A")).lower()
        if doc.get("second_injection"):
            syringe_b = (recipe.get("extra") or {}).get("cd_syringe_b_molar") \
                or recipe.get("cd_precursor_molar")
            try:
                self.cd_after_second_molar = cd_after_second_injection(
                    self.cd_initial_molar, recipe.get("cd_second_molar"), syringe_b)
            except (TypeError, ValueError) as error:
                self._error("recipe", f"no yield after the second injection: {error}")

    def descriptor(self, doc):
        name = doc.get("name")
        self._streams[doc["uid"]] = name
        if name not in (BACKGROUND, PRIMARY):
            return
        image_key = self._image_key or run_calibration.image_key(doc)
        if image_key is None or image_key not in doc["data_keys"]:
            return
        self._image_key = image_key
        self._image_descriptors.add(doc["uid"])
        config = run_calibration.detector_configuration(doc, image_key)
        obj = run_calibration.object_of(doc, image_key)
        self._frame_time_key = f"{obj}_frame_time" if f"{obj}_frame_time" in doc["data_keys"] else None
        # a descriptor without the detector's configuration (e.g. a flyer's) keeps the last exposure
        known = [e for e in self._exposure.values() if math.isfinite(e)]
        self._exposure[doc["uid"]] = float(config.get(f"{obj}_exposure_time", known[-1] if known else math.nan))
        if self._reduction is None and self._calibration_error is None:
            try:
                self._reduction = run_calibration.run_reduction(self.settings, config, obj,
                                                                 locate=self._frames.locate)
            except self._fatal_errors:
                raise
            except (ValueError, TypeError, KeyError, OSError) as error:
                self._calibration_error = str(error)
                self._error("calibration", f"no usable calibration, no frame of this run is fitted: {error}")
            else:
                if self._relative_scale is not None:
                    self._error("scale", f"no absolute scale: intensities in arbitrary units, radii and widths "
                                         f"fitted, no concentrations or yields: {self._relative_scale}")
        if name == PRIMARY and self._temperature_key is None:
            self._temperature_key = next((key for key, info in doc["data_keys"].items()
                                          if key.endswith("_temperature") and info.get("dtype") == "number"),
                                         None)

    def event(self, doc):
        stream = self._streams.get(doc["descriptor"])
        if stream == INJECTION:
            key = next((k for k in doc["data"] if k.endswith(f"_fire_time_{self.piston}")), None)
            if key is not None and math.isfinite(float(doc["data"][key])):
                self._t0 = float(doc["data"][key])
            second = (self._raw_start or {}).get("second_injection") or {}
            key = next((k for k in doc["data"]
                        if k.endswith(f"_fire_time_{str(second.get('piston', '')).lower()}")), None)
            if second and key is not None and math.isfinite(float(doc["data"][key])):
                self._t_second = float(doc["data"][key])
        elif stream == BACKGROUND and doc["descriptor"] in self._image_descriptors \
                and self._calibration_error is None:
            try:
                self._background_patterns.append(self._reduce(doc))
            except self._fatal_errors:
                raise
            except Exception as error:  # a bad background frame is skipped, not fatal
                self._error("background", f"background frame {doc.get('seq_num')} skipped: {error}")
        elif stream == PRIMARY and doc["descriptor"] in self._image_descriptors:
            self._analyse_frame(doc)

    def stream_resource(self, doc):
        self._frames.stream_resource(doc)

    def stream_datum(self, doc):
        self._frames.stream_datum(doc)

    def stop(self, doc):
        self._frames.close()
        if not self._derived.opened:
            return  # no frames: no derived run
        try:
            self._emit_kinetics(doc["time"])
        except Exception as error:
            self._error("kinetics", f"kinetics summary failed: {error}")
        reason = doc.get("reason", "")
        failed = sum(not fit.success for fit in self.fits)
        notes = f"{len(self.fits)} frames, {failed} without a fit, {len(self.errors)} analysis errors"
        self._derived.stop(doc.get("exit_status", "success"), f"{reason}; {notes}" if reason else notes)

    # -- pieces -------------------------------------------------------------------------
    @property
    def _reducer(self) -> Reducer | None:
        return None if self._reduction is None else self._reduction.reducer

    @property
    def _relative_scale(self) -> str | None:
        """Why the intensities are not absolute (flagged once); None if they are or if there
        is no reduction."""
        return None if self._reduction is None else self._reduction.relative_scale

    def _reduce(self, doc) -> Pattern:
        if self._reducer is None:
            raise RuntimeError("no reduction set up (see the earlier analysis errors)")
        frame = self._frames.frame(doc["descriptor"], self._image_key, doc["seq_num"])
        return self._reducer.reduce(frame, self._exposure.get(doc["descriptor"], math.nan))

    def _analyse_frame(self, doc):
        try:
            pattern, fit = self._single_fit(doc, self._last_good)
        except Exception as error:
            self._record_frame(doc, None, *self._failed_frame(doc, error))
            return
        self._finish_frame(doc, pattern, fit)

    def _finish_frame(self, doc, pattern: Pattern, fit: SphereFit, skewed=None) -> None:
        """Record a frame from its Gaussian ``fit``, with its skewed fit (``skewed``: one made
        elsewhere, or the exception it raised there; None: made here) and preferred model."""
        try:
            if isinstance(skewed, BaseException):
                raise skewed
            if skewed is None:
                skewed = fit_skewed(pattern.q_nm, pattern.intensity_cm, pattern.sigma_cm, fit,
                                    guess=self._last_skewed, mapper=self._mapper)
            model, two = self._preferred_model(pattern, fit, skewed)
        except Exception as error:
            fit, skewed, model, two = self._failed_frame(doc, error)
        self._record_frame(doc, pattern, fit, skewed, model, two)

    def _preferred_model(self, pattern: Pattern, fit: SphereFit, skewed: SkewedFit):
        return preferred_model(pattern.q_nm, pattern.intensity_cm, pattern.sigma_cm, fit, skewed,
                               guess=self._last_two)

    def _failed_frame(self, doc, error: Exception):
        """A frame's (fit, skewed, model, two) after ``error`` in its analysis, which is raised
        again if it ends the analysis (``stored``: a frame file that cannot be read)."""
        if isinstance(error, self._fatal_errors):
            raise error
        if isinstance(error, _Uncalibrated):  # flagged once, at the descriptor
            return (SphereFit.failed(NO_CALIBRATION), SkewedFit.failed(NO_CALIBRATION),
                    FrameModel(0, math.nan, math.nan), None)
        fit = SphereFit.failed(f"analysis error: {type(error).__name__}: {error}")
        self._error("frame", f"frame {doc.get('seq_num')}: {error}")
        return fit, SkewedFit.failed(fit.reason), FrameModel(0, math.nan, math.nan), None

    def _record_frame(self, doc, pattern, fit, skewed, model, two):
        """Keep a primary frame's fits (and the warm starts of the next frame's) and emit them."""
        frame_time = float(doc["data"].get(self._frame_time_key, doc["time"]))
        exposure = self._exposure.get(doc["descriptor"], 0.0)
        time_s = frame_time + 0.5 * exposure - self._t0 if self._t0 is not None else math.nan
        temperature = doc["data"].get(self._temperature_key, math.nan) if self._temperature_key else math.nan
        if fit.success:
            self._last_good, self._good_frame = fit, len(self.fits)
        if skewed.success:
            self._last_skewed, self._skewed_frame = skewed, len(self.fits)
        self._last_two = two or self._last_two
        systematic = self._size_model.add(size_model_systematic(
            fit, skewed, two if model.populations == 2 else None), resolved_fraction(fit, skewed))
        curve = fit  # the model drawn over the pattern, on the pattern's scale
        if self._relative_scale is not None:  # radii and widths are scale-free, amounts are not
            fit, skewed, model, systematic = _without_amounts(fit, skewed, model, systematic)
        self.skewed_fits.append(skewed)
        self.frame_models.append(model)
        after_second = self._t_second is not None and frame_time + 0.5 * exposure > self._t_second
        cd = (self.cd_after_second_molar if after_second else self.cd_initial_molar) or math.nan
        yld = float(yield_fraction(fit.radius_nm, fit.sigma_nm, fit.concentration_molar, cd)) \
            if math.isfinite(cd) else math.nan
        self.fits.append(fit)
        self.times_s.append(time_s)
        self._cds.append(cd)
        self._yields.append(yld)
        self._emit_frame(doc, fit, skewed, model, systematic, time_s, frame_time, yld,
                         float(temperature), pattern, curve)

    def _single_fit(self, doc, guess: SphereFit | None) -> tuple[Pattern, SphereFit]:
        """A primary frame's reduced, background-subtracted pattern and its Gaussian fit
        (warm-started from ``guess``, the last successful one): the first stage of its analysis."""
        if self._calibration_error is not None:
            raise _Uncalibrated(NO_CALIBRATION)
        pattern = self._reduce(doc)
        if self._background is None and self._background_patterns:
            self._background = average(self._background_patterns)
        if self._background is not None:
            pattern = subtract(pattern, self._background)
        fit = fit_pattern(pattern.q_nm, pattern.intensity_cm, pattern.sigma_cm, guess=guess)
        return pattern, fit

    def _emit_frame(self, raw_event, fit, skewed, model, systematic, time_s, frame_time, yld,
                    temperature, pattern, curve):
        if not self._derived.opened:
            self._open_derived_run()
        when = raw_event["time"]
        self._derived.fits(fit_data(fit, skewed, model, systematic, time_s=time_s, frame_time=frame_time,
                                    yield_fraction=yld, temperature_c=temperature), when)
        if self._reducer is None:
            return  # no reduction, no patterns
        if pattern is None:
            nan = np.full(self._reducer.n_bins, math.nan)
            pattern = Pattern(self._reducer.q_nm, nan, nan)
        model = curve.model(pattern.q_nm) if curve.success else np.full(pattern.q_nm.shape, math.nan)
        self._derived.pattern({"time_s": time_s, "q_nm": pattern.q_nm.tolist(),
                               "intensity_cm": pattern.intensity_cm.tolist(),
                               "sigma_cm": pattern.sigma_cm.tolist(),
                               "model_cm": np.asarray(model, dtype=float).tolist()}, when)

    def _open_derived_run(self):
        raw = self._raw_start or {}
        n_bins = self._reducer.n_bins if self._reducer else 0
        analysis = {**self.settings.to_metadata(), "model": MODEL, "fitter_version": _fitter_version(),
                    "n_bins": n_bins, "cd_initial_molar": self.cd_initial_molar,
                    "cd_after_second_molar": self.cd_after_second_molar, "beta": self.beta,
                    "n_background_frames": len(self._background_patterns),
                    "background_subtracted": bool(self._background_patterns),
                    "calibration_error": self._calibration_error,
                    "calibration_source": self._reduction and self._reduction.calibration_source,
                    "calibration_rel_err": self._reduction and self._reduction.calibration_rel_err,
                    "absolute_scale": self._reducer is not None and self._relative_scale is None,
                    "absolute_scale_error": self._relative_scale if self._reducer is not None else None,
                    "intensity_units": self._intensity_units()}
        if self._reducer is not None:
            analysis.update(calibration=self._reducer.calibration, path_length_cm=self._reducer.path_length_cm,
                            geometry=self._reducer.geometry.to_dict())
        self._derived.open({"raw_uid": raw.get("uid"), "raw_scan_id": raw.get("scan_id"),
                            "raw_run": raw_description(raw), "plan_name": "saxs_analysis",
                            "analysis": analysis, "hints": {"dimensions": [(["time_s"], FITS)]}},
                           # without a reduction, no q bins: no patterns stream
                           n_bins=None if self._reducer is None else n_bins,
                           intensity_units=self._intensity_units())

    def _intensity_units(self) -> str | None:
        """The patterns' intensity units: cm⁻¹, :data:`RELATIVE_UNITS`, None without a reduction."""
        if self._reducer is None:
            return None
        return "cm^-1" if self._relative_scale is None else RELATIVE_UNITS

    def _emit_kinetics(self, when: float):
        """The ``kinetics`` stream, timed ``when`` (the raw run's stop, so replay gives the same event)."""
        def field(name):
            return np.array([getattr(fit, name) for fit in self.fits], dtype=float)

        failed = sum(not f.success for f in self.fits)
        # two injections: one population's laws fitted to two read as a meaningless chi2 and 98 %
        # time, and the new set is not counted (see §S.5's own analysis)
        second = bool((self._raw_start or {}).get("second_injection"))
        summary = summarize_kinetics(np.array(self.times_s, dtype=float), field("radius_nm"), field("sigma_nm"),
                                     field("concentration_molar"), np.array(self._cds, dtype=float),
                                     self.beta, field("concentration_err_molar"), field("radius_err_nm"),
                                     field("sigma_err_nm"), preferred=[
                                         np.array([getattr(m, name) for m in self.frame_models], dtype=float)
                                         for name in ("concentration_molar", "cadmium_molar")],
                                     laws_skipped=SECOND_INJECTION_KINETICS if second else "")
        data = flatten_kinetics(summary, len(self.fits), failed)
        if self._relative_scale is not None:  # every amount is NaN: nothing to time
            data.update(success=False, reason=f"no absolute scale: {self._relative_scale}")
        elif second:
            data.update(success=False, reason=SECOND_INJECTION_KINETICS)
        self.kinetics = data
        self._derived.kinetics(data, when)

    def _error(self, what: str, message: str) -> None:
        logger.warning("SAXS analysis of run %s: %s", (self._raw_start or {}).get("uid"), message)
        self.errors.append((what, message))

    # -- results --------------------------------------------------------------------------
    def summary(self) -> dict:
        """Last successful fit (radius nm, concentration mol/L, yield) and the counts; without an
        absolute scale concentration and yield are None and ``absolute_scale_error`` says why."""
        last = next((i for i in range(len(self.fits) - 1, -1, -1) if self.fits[i].success), None)
        amounts = last is not None and self._relative_scale is None
        return {"final_radius_nm": None if last is None else self.fits[last].radius_nm,
                "concentration_molar": self.fits[last].concentration_molar if amounts else None,
                "yield_fraction": self._yields[last] if amounts else None,
                "absolute_scale_error": self._relative_scale,
                "frames_analysed": len(self.fits),
                "frames_without_fit": sum(not f.success for f in self.fits),
                "analysis_errors": len(self.errors),
                "kinetics": self.kinetics}


def _without_amounts(fit: SphereFit, skewed: SkewedFit, model: FrameModel, systematic):
    """A relative-scale frame's fits with every amount (concentration, background, and their
    errors) NaN: only radii, widths, skewness and χ² do not depend on the absolute scale."""
    nan = math.nan
    return (dataclasses.replace(fit, concentration_molar=nan, concentration_err_molar=nan,
                                background_cm=nan, background_err_cm=nan),
            dataclasses.replace(skewed, concentration_molar=nan, background_cm=nan),
            FrameModel(model.populations, nan, nan), (*systematic[:2], nan))


class _Uncalibrated(Exception):
    """A frame of a run whose calibration is unusable (flagged once, not per frame)."""
