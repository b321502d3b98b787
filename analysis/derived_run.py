"""What the derived (analysis) run holds: its stream names, the data keys of its ``fits``,
``patterns`` and ``kinetics`` streams with their units, and the flattening of the kinetics
summary into one event (see :mod:`ncsynth.analysis.live` for how they are filled)."""

from __future__ import annotations

import math

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
