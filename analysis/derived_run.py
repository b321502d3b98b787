"""What the derived (analysis) run of a raw run holds, as
:class:`~ncsynth.analysis.run_analysis.SAXSAnalysis` writes it:

* start: ``raw_uid`` (the raw run), ``analysis`` (the settings, model, fitter version);
* stream ``fits``: one event per primary frame — ``time_s`` (mid-exposure, s after injection),
  ``frame_time`` (frame start, epoch s), radius / σ / concentration / background with their
  statistical errors (``*_err_*``) and their size-model systematic errors (``radius_syst_nm``,
  ``sigma_syst_nm``, ``concentration_syst_molar``:
  :class:`~ncsynth.analysis.frame_model.SizeModelError`; combine in quadrature),
  ``sigma_upper_nm`` (σ only an upper limit while the pattern does not resolve it, else NaN),
  ``yield_fraction`` (S2.6), ``chi2_reduced``, ``success``, ``reason``, ``temperature_c``, and
  the same frame fitted with one skewed population (``skewed_*``, ``skewness``,
  :mod:`~ncsynth.analysis.skewed`), and what the model the frame prefers holds
  (:mod:`~ncsynth.analysis.frame_model`: ``populations``, ``model_concentration_molar``,
  ``model_cadmium_molar``), which the kinetics use;
* stream ``patterns``: the same frames' background-subtracted I(q) in cm⁻¹ (arbitrary units
  without an absolute scale) with σ and the fitted model (arrays, ``kind`` normal, never
  hinted); none without a usable calibration;
* stream ``kinetics``: at the raw run's stop, the flattened
  :class:`~ncsynth.analysis.kinetics.KineticsSummary` (98 % times and nucleation fraction from
  the data, S3.3 and S3.2 beside them with their χ²_red); after a second injection the yield
  (S2.6) refers to the Cd of both syringes in the volume after both;
* stop: the raw run's exit status.

Here: its stream names, the data keys of its ``fits``, ``patterns`` and ``kinetics`` streams
with their units, a frame's fits and the kinetics summary as one event's data, and
:class:`DerivedRunDocuments`, which composes the run's documents in order.
"""

from __future__ import annotations

import math

import numpy as np
from event_model import compose_run

#: ``source`` of every derived data key (the name of the module that first wrote them).
SOURCE = "ncsynth.analysis.live"
BACKGROUND, INJECTION, PRIMARY = "background", "injection", "primary"
FITS, PATTERNS, KINETICS = "fits", "patterns", "kinetics"


def _number(units: str = "", precision: int = 6) -> dict:
    return {"dtype": "number", "dtype_numpy": "<f8", "shape": [], "source": SOURCE, "units": units,
            "precision": precision}


FIT_KEYS = {
    "time_s": _number("s"),
    "frame_time": _number("s since the epoch"),
    "radius_nm": _number("nm", 4),
    "radius_err_nm": _number("nm", 4),
    "sigma_nm": _number("nm", 4),
    "sigma_err_nm": _number("nm", 4),
    "sigma_upper_nm": _number("nm", 4),
    "concentration_molar": _number("mol/L"),
    "concentration_err_molar": _number("mol/L"),
    "radius_syst_nm": _number("nm", 4),
    "sigma_syst_nm": _number("nm", 4),
    "concentration_syst_molar": _number("mol/L"),
    "background_cm": _number("cm^-1"),
    "yield_fraction": _number("", 4),
    "chi2_reduced": _number("", 3),
    "skewed_radius_nm": _number("nm", 4),
    "skewed_sigma_nm": _number("nm", 4),
    "skewness": _number("", 3),
    "skewed_concentration_molar": _number("mol/L"),
    "skewed_chi2_reduced": _number("", 3),
    "populations": _number("", 0),
    "model_concentration_molar": _number("mol/L"),
    "model_cadmium_molar": _number("mol/L"),
    "success": {"dtype": "boolean", "dtype_numpy": "|b1", "shape": [], "source": SOURCE},
    "reason": {"dtype": "string", "shape": [], "source": SOURCE},
    "temperature_c": _number("degC", 2),
}
FIT_HINTS = ["radius_nm", "sigma_nm", "concentration_molar", "yield_fraction"]

KINETICS_KEYS = {
    "fraction": _number(""),
    "t_concentration_s": _number("s"), "t_concentration_err_s": _number("s"),
    "t_yield_s": _number("s"), "t_yield_err_s": _number("s"),
    "nucleation_fraction": _number(""), "nucleation_fraction_err": _number(""),
    "concentration_final_molar": _number("mol/L"), "yield_final": _number(""),
    "k_per_s": _number("1/s"), "k_err_per_s": _number("1/s"),
    "n_inf_molar": _number("mol/L"), "n_inf_err_molar": _number("mol/L"),
    "buildup_chi2_reduced": _number(""),
    "buildup_describes_data": {"dtype": "boolean", "dtype_numpy": "|b1", "shape": [], "source": SOURCE},
    "k2_l_per_mol_s": _number("L/(mol s)"), "k2_err_l_per_mol_s": _number("L/(mol s)"),
    "yield_inf": _number(""), "yield_inf_err": _number(""),
    "second_order_chi2_reduced": _number(""),
    "second_order_describes_data": {"dtype": "boolean", "dtype_numpy": "|b1", "shape": [],
                                    "source": SOURCE},
    "law_t_concentration_s": _number("s"), "law_t_concentration_err_s": _number("s"),
    "law_t_yield_s": _number("s"), "law_t_yield_err_s": _number("s"),
    "law_note": {"dtype": "string", "shape": [], "source": SOURCE},
    "n_frames": {"dtype": "integer", "dtype_numpy": "<i8", "shape": [], "source": SOURCE},
    "n_failed": {"dtype": "integer", "dtype_numpy": "<i8", "shape": [], "source": SOURCE},
    "success": {"dtype": "boolean", "dtype_numpy": "|b1", "shape": [], "source": SOURCE},
    "reason": {"dtype": "string", "shape": [], "source": SOURCE},
}


def pattern_keys(n_bins: int, intensity_units: str = "cm^-1") -> dict:
    """The ``patterns`` stream's data keys; ``intensity_units``: ``"cm^-1"``, or arbitrary units
    (``"a.u."``) in a run without an absolute scale (the key names keep their ``_cm``)."""
    array = {"dtype": "array", "dtype_numpy": "<f8", "shape": [n_bins], "source": SOURCE}
    return {"time_s": _number("s"),
            "q_nm": {**array, "units": "nm^-1"},
            "intensity_cm": {**array, "units": intensity_units},
            "sigma_cm": {**array, "units": intensity_units},
            "model_cm": {**array, "units": intensity_units}}


def raw_description(start: dict) -> dict:
    """What a figure's title says of a raw run (:func:`ncsynth.analysis.display.run_title`),
    from its start document: uid, scan id, sample, start time (s since the epoch), the recipe's
    injection and growth temperatures (°C), piston B's delay after A (s, §S.5; a figure marks
    it); absent items are None."""
    recipe = start.get("recipe") or {}
    return {**{key: start.get(key) for key in ("uid", "scan_id", "sample", "time")},
            **{key: recipe.get(key) for key in ("injection_temperature_c", "growth_temperature_c")},
            "second_injection_s": (start.get("second_injection") or {}).get("delay_s")}


def flatten_kinetics(summary, n_frames: int, n_failed: int) -> dict:
    """One ``kinetics`` event's data from a :class:`~ncsynth.analysis.kinetics.KineticsSummary`:
    the 98 % times from the data (primary), the laws S3.3 (``k``, ``n_inf``, ``buildup_*``) and
    S3.2 (``k2``, ``yield_inf``, ``second_order_*``) with their χ²_red and 98 % times (``law_*``)."""
    conc, yld, times = summary.concentration_fit, summary.yield_fit, summary.times

    def value(fit, name):
        return float(fit[name]) if fit.success else math.nan

    def error(fit, name):
        return float(fit.error(name)) if fit.success else math.nan

    return {
        "fraction": float(times.fraction),
        "t_concentration_s": times.t_concentration_s, "t_concentration_err_s": times.t_concentration_err_s,
        "t_yield_s": times.t_yield_s, "t_yield_err_s": times.t_yield_err_s,
        "nucleation_fraction": times.nucleation_fraction,
        "nucleation_fraction_err": times.nucleation_fraction_err,
        "concentration_final_molar": times.concentration_final_molar, "yield_final": times.yield_final,
        "k_per_s": value(conc, "rate_per_s"), "k_err_per_s": error(conc, "rate_per_s"),
        "n_inf_molar": value(conc, "amplitude"), "n_inf_err_molar": error(conc, "amplitude"),
        "buildup_chi2_reduced": float(conc.chi2_reduced), "buildup_describes_data": bool(conc.describes_data),
        "k2_l_per_mol_s": value(yld, "k2_l_per_mol_s"), "k2_err_l_per_mol_s": error(yld, "k2_l_per_mol_s"),
        "yield_inf": value(yld, "amplitude"), "yield_inf_err": error(yld, "amplitude"),
        "second_order_chi2_reduced": float(yld.chi2_reduced),
        "second_order_describes_data": bool(yld.describes_data),
        "law_t_concentration_s": summary.law_t_concentration_s,
        "law_t_concentration_err_s": summary.law_t_concentration_err_s,
        "law_t_yield_s": summary.law_t_yield_s, "law_t_yield_err_s": summary.law_t_yield_err_s,
        "law_note": summary.law_note,
        "n_frames": int(n_frames), "n_failed": int(n_failed),
        "success": bool(times.success), "reason": times.reason,
    }


def fit_data(fit, skewed, model, systematic, *, time_s: float, frame_time: float,
             yield_fraction: float, temperature_c: float) -> dict:
    """One ``fits`` event's data (:data:`FIT_KEYS`, numbers as Python floats) from a frame's
    Gaussian ``fit`` (:class:`~ncsynth.analysis.saxs.SphereFit`), its ``skewed`` fit
    (:class:`~ncsynth.analysis.skewed.SkewedFit`), the preferred size ``model``
    (:class:`~ncsynth.analysis.frame_model.FrameModel`) and the size model's ``systematic``
    errors (radius nm, σ nm, concentration mol/L); ``time_s`` mid-exposure after the
    injection, ``frame_time`` the frame's start (epoch s), the yield (S2.6), the flask's °C."""
    data = {"time_s": time_s, "frame_time": frame_time,
            "radius_nm": fit.radius_nm, "radius_err_nm": fit.radius_err_nm,
            "sigma_nm": fit.sigma_nm, "sigma_err_nm": fit.sigma_err_nm,
            "sigma_upper_nm": fit.sigma_upper_nm,
            "concentration_molar": fit.concentration_molar,
            "concentration_err_molar": fit.concentration_err_molar,
            **dict(zip(("radius_syst_nm", "sigma_syst_nm", "concentration_syst_molar"), systematic)),
            "background_cm": fit.background_cm, "yield_fraction": yield_fraction,
            "chi2_reduced": fit.chi2_reduced, "skewed_radius_nm": skewed.radius_nm,
            "skewed_sigma_nm": skewed.sigma_nm, "skewness": skewed.skewness,
            "skewed_concentration_molar": skewed.concentration_molar,
            "skewed_chi2_reduced": skewed.chi2_reduced, "populations": float(model.populations),
            "model_concentration_molar": model.concentration_molar,
            "model_cadmium_molar": model.cadmium_molar,
            "success": bool(fit.success), "reason": fit.reason,
            "temperature_c": temperature_c}
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in data.items()}


class DerivedRunDocuments:
    """A derived run's documents, composed with ``event_model.compose_run`` and handed to
    ``emit(name, doc)`` in order: :meth:`open` (the start, the ``fits`` descriptor and, with
    q bins, the ``patterns`` one), then :meth:`fits` and :meth:`pattern` events,
    :meth:`kinetics` (its own stream, one event) and :meth:`stop`. The per-frame events are
    not checked against their data keys (fixed here and in :func:`fit_data`)."""

    def __init__(self, emit):
        self.emit = emit
        self._bundle = self._fits = self._patterns = None

    @property
    def opened(self) -> bool:
        return self._bundle is not None

    def open(self, metadata: dict, n_bins: int | None, intensity_units: str | None = None) -> None:
        """Start the run with ``metadata``; ``n_bins`` None: no q bins, so no patterns stream."""
        self._bundle = compose_run(metadata=metadata)
        self.emit("start", self._bundle.start_doc)
        self._fits = self._descriptor(FITS, FIT_KEYS, "fit", hints={"fit": {"fields": FIT_HINTS}})
        if n_bins is not None:
            self._patterns = self._descriptor(PATTERNS, pattern_keys(n_bins, intensity_units),
                                              "pattern", hints={"pattern": {"fields": []}})

    def fits(self, data: dict, when: float) -> None:
        self._event(self._fits, data, when)

    def pattern(self, arrays: dict, when: float) -> None:
        """A ``patterns`` event (none in a run opened without q bins)."""
        if self._patterns is not None:
            self._event(self._patterns, arrays, when)

    def kinetics(self, data: dict, when: float) -> None:
        """The ``kinetics`` stream's one event (checked against :data:`KINETICS_KEYS`)."""
        self._event(self._descriptor(KINETICS, KINETICS_KEYS, "kinetics"), data, when, validate=True)

    def stop(self, exit_status: str, reason: str) -> None:
        self.emit("stop", self._bundle.compose_stop(exit_status=exit_status, reason=reason))

    def _descriptor(self, name: str, keys: dict, obj: str, hints: dict | None = None):
        descriptor = self._bundle.compose_descriptor(name=name, data_keys=keys,
                                                     object_keys={obj: list(keys)}, hints=hints)
        self.emit("descriptor", descriptor.descriptor_doc)
        return descriptor

    def _event(self, descriptor, data: dict, when: float, validate: bool = False) -> None:
        self.emit("event", descriptor.compose_event(data=data, timestamps={k: when for k in data},
                                                    time=when, validate=validate))
