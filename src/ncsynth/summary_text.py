"""Summaries as read at the terminal (``ncsynth dry-run``, ``replay``, ``flow dry-run``
without ``--json``).

A few aligned lines: the run, what the live analysis found beside what the simulated flask
really held, the kinetics (seed 000 §S.3: 98 % times, nucleation fraction), the growth
exponent of a double injection (§S.5), where the figures and data went
(:func:`format_summary`; a replay adds its new analysis run); for the flow reactor's grid,
a line per point with the species found beside what the simulated outlet held
(:func:`format_flow_summary`). ``--json`` keeps every figure at full precision; this text
rounds to what the measurement supports.
"""

from __future__ import annotations

import math

from ncsynth.validation import is_finite_number

_SHOWN = {"uid", "raw_uid", "analysis_uid", "scan_id", "frames_skipped", "nucleation_window", "exit_status", "error", "frames", "wall_s", "final_radius_nm", "concentration_molar",
          "yield_fraction", "simulator_truth", "kinetics", "frames_analysed",
          "frames_without_fit", "analysis_errors", "analysis_dropped_events",
          "analysis_worker_errors", "figures", "superfocusing_figure", "data_dir",
          "recovered_runs", "growth_exponent", "growth_exponent_err", "growth_exponent_interval",
          "growth_exponent_pairs", "growth_exponent_reason", "growth_exponent_window_s",
          "growth_exponent_model_spread", "growth_exponent_pairs_from",
          "growth_exponent_window_after_b_s", "second_population", "decisions", "steering",
          "second_population_onset_after_b_s", "bimodal_frames", "frames_after_b",
          "second_population_resolved_after_b_s", "crystal_number_ratio_max",
          "absolute_scale_error", "frames_end_before_reaction"}


def _frames_end(short: dict) -> str:
    """``the last at 1.086 s of the 60 s reaction: --frames 230 reaches its end``."""
    need = short.get("frames_to_reach")
    return (f"the last at {short['last_frame_s']:.4g} s of the {short['reaction_time_s']:g} s "
            "reaction: " + (f"--frames {need} reaches its end" if need else
                            "no --frames of the schedule reaches its end"))


def format_summary(summary: dict) -> str:
    """The summary dict of :func:`ncsynth.dryrun.dry_run` as text, one item per line."""
    rows = [("run", _run_line(summary))] if "uid" in summary else []
    if summary.get("analysis_uid"):
        rows.append(("analysis run", str(summary["analysis_uid"])))
    if summary.get("error"):
        rows.append(("error", summary["error"]))
    if summary.get("frames_skipped"):
        rows.append(("skipped", summary["frames_skipped"]))
    if summary.get("frames_end_before_reaction"):
        rows.append(("frames", _frames_end(summary["frames_end_before_reaction"])))
    if summary.get("nucleation_window"):
        rows.append(("nucleation", summary["nucleation_window"]))
    truth = summary.get("simulator_truth") or {}
    # the flask when the last frame was taken (a run cut short by --frames), else at the end
    flask_now = truth.get("at_last_frame") or truth
    flask_label = (f"simulated flask at the last frame, {flask_now['time_s']:.4g} s"
                   if "time_s" in flask_now else "simulated flask")
    analysed = summary.get("frames_analysed") is not None
    for label, key, truth_key, unit in (("radius", "final_radius_nm", "mean_radius_nm", " nm"),
                                        ("concentration", "concentration_molar",
                                         "concentration_molar", " mol/L"),
                                        ("yield", "yield_fraction", "yield_fraction", "")):
        value = summary.get(key)
        text = _number(value, unit) if value is not None else \
            ("not available: no absolute scale" if summary.get("absolute_scale_error") and label != "radius"
             else "no frame fitted" if analysed else "not analysed")
        if truth_key in flask_now:
            text += f"   ({flask_label}: {_number(flask_now[truth_key], unit)})"
        rows.append((label, text))
    if summary.get("absolute_scale_error"):
        rows.append(("absolute scale", f"none: {summary['absolute_scale_error']}"))
    if summary.get("kinetics"):
        rows.append(("kinetics", _kinetics(summary["kinetics"], truth)))
        if "law_note" in summary["kinetics"]:
            rows.append(("laws", _laws(summary["kinetics"])))
    if "growth_exponent" in summary or "growth_exponent_reason" in summary:
        rows.append(("growth exponent", _growth_exponent(summary, truth)))
    if "steering" in summary:
        from ncsynth.steering_setup import steering_rows

        rows += steering_rows(summary)
    if analysed:
        rows.append(("analysis", f"{summary['frames_analysed']} frames, "
                                 f"{summary.get('frames_without_fit', 0)} without a fit, "
                                 f"{summary.get('analysis_errors', 0)} errors, "
                                 f"{summary.get('analysis_dropped_events', 0)} dropped"))
    for path in [*summary.get("figures", []), summary.get("superfocusing_figure")]:
        if path:
            rows.append(("figure", str(path)))
    if "data_dir" in summary:
        rows.append(("data", str(summary["data_dir"])))
    for run in summary.get("recovered_runs") or []:
        rows.append(("recovered", f"{run.get('uid')} {run.get('status')} "
                                  f"({run.get('events')} events)"))
    rows += [(key, str(value)) for key, value in summary.items()
             if key not in _SHOWN and value is not None]
    return _aligned(rows)


def _aligned(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:>{width}}  {text}" for label, text in rows)


_FLOW_SHOWN = {"uid", "exit_status", "error", "heaters", "pumps", "residence_s", "points",
               "families", "analysis_errors", "figure", "data_dir", "wall_s",
               "acquisition_wall_s", "analysis_wall_s", "recovered_runs"}


def format_flow_summary(summary: dict) -> str:
    """The summary dict of :func:`ncsynth.flow_dryrun.flow_dry_run` as text: the run, then a
    line per grid point labelled with its nucleation/growth temperatures (°C): each species
    found in CdSe units (mmol/L, ± 1σ: fit and baseline model) with what the simulated outlet
    held in brackets, the NC exciton (nm), the McSAS volume fraction beside the outlet's and
    the volume-weighted radius (nm); a point's analysis errors under it; the figure and the
    data directory."""
    points = summary.get("points") or []
    wall = f"{summary['wall_s']} s wall" if summary.get("wall_s") is not None else ""
    if summary.get("acquisition_wall_s") is not None:
        wall += (f" (acquisition {summary['acquisition_wall_s']} s, "
                 f"analysis {summary.get('analysis_wall_s')} s)")
    head = ", ".join(filter(None, [str(summary.get("exit_status")), f"{len(points)} points", wall]))
    rows = [("run", f"{summary.get('uid')}  {head}")]
    if summary.get("error"):
        rows.append(("error", summary["error"]))
    for key in ("heaters", "pumps"):
        if summary.get(key):
            rows.append((key, ", ".join(f"{name} {state}" for name, state in summary[key].items())))
    if summary.get("residence_s") is not None:
        rows.append(("residence", f"{summary['residence_s']:g} s in the reactor"))
    if points:
        rows.append(("point", "species in CdSe units, mmol/L (simulated outlet); NC exciton; "
                              "SAXS volume fraction (outlet), volume-weighted radius"))
    for point in points:
        label = f"{point.get('nucleation_c', math.nan):g}/{point.get('growth_c', math.nan):g} °C"
        rows.append((label, _flow_point(point)))
        rows += [("error", message) for message in point.get("errors") or []]
    rows.append(("analysis", f"{summary.get('analysis_errors', 0)} errors"))
    if summary.get("figure"):
        rows.append(("figure", str(summary["figure"])))
    if summary.get("data_dir"):
        rows.append(("data", str(summary["data_dir"])))
    for run in summary.get("recovered_runs") or []:
        rows.append(("recovered", f"{run.get('uid')} {run.get('status')} "
                                  f"({run.get('events')} events)"))
    rows += [(key, str(value)) for key, value in summary.items() if key not in _FLOW_SHOWN]
    return _aligned(rows)


def _flow_point(point: dict) -> str:
    truth = point.get("truth") or {}
    found = point.get("families") or {}
    errors = point.get("families_err") or {}
    species = [f"{label} {1e3 * units:.3g}{_plus_minus_mmol(errors.get(label))} "
               f"({_flask_mmol(truth, label)})" for label, units in sorted(found.items())]
    parts = [", ".join(species) if species else "no species found"]
    exciton = point.get("nc_exciton_nm")
    if is_finite_number(exciton):
        parts.append(f"exciton {exciton:.0f} nm")
    saxs = point.get("saxs") or {}
    if saxs:
        error = saxs.get("volume_fraction_err")
        text = f"SAXS φ {_number(saxs.get('volume_fraction'))}" + (
            f" ± {error:.2g}" if is_finite_number(error) else "")
        if saxs.get("truth_volume_fraction") is not None:
            text += f" ({_number(saxs['truth_volume_fraction'])})"
        if saxs.get("describes_data") is False:  # the ± covers the noise, not the misfit
            text += (f" McSAS does not describe the pattern (χ²_red {saxs['chi2_reduced_max']:.2g}, "
                     f"p {saxs['misfit_p_value']:.1g}): φ less certain than its ±")
        parts.append(text + ", R " + _with_error(saxs.get("volume_mean_radius_nm"),
                                                 saxs.get("volume_mean_radius_err_nm"), " nm"))
    return "; ".join(parts)


def _plus_minus_mmol(error) -> str:
    return f" ± {1e3 * error:.2g}" if is_finite_number(error) else ""


def _flask_mmol(truth: dict, label: str) -> str:
    value = truth.get(label)
    return f"{1e3 * value:.3g}" if isinstance(value, (int, float)) else "?"


def _run_line(summary: dict) -> str:
    """``uid  (scan 7)  success, 60 frames, 41.2 s wall`` with what the summary holds."""
    head = str(summary["uid"]) + (f"  scan {summary['scan_id']}" if summary.get("scan_id") else "")
    parts = [str(summary["exit_status"])] if summary.get("exit_status") else []
    if parts and summary.get("nucleation_window"):  # not a clean success
        parts[0] += " but INCOMPLETE: the nucleation window was lost"
    elif parts and summary.get("frames_skipped"):
        parts[0] += " with frames skipped"
    if summary.get("frames") is not None:
        parts.append(f"{summary['frames']} frames")
    if summary.get("wall_s") is not None:
        parts.append(f"{summary['wall_s']} s wall")
    return f"{head}  {', '.join(parts)}" if parts else head


def _number(value, unit: str = "") -> str:
    if is_finite_number(value):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def _with_error(value, error, unit: str) -> str:
    """``value ± error unit`` to the error's first two significant digits, the value to at most
    six (an error far below the value's precision is shown as it is, not as 27 decimals)."""
    if error == math.inf:  # a figure the data do not determine
        return f"{_number(value)} ± inf{unit}"
    if not (is_finite_number(error) and error > 0):
        return _number(value, unit)
    digits = max(0, 1 - int(math.floor(math.log10(error))))
    if is_finite_number(value) and value != 0:
        cap = max(0, 5 - int(math.floor(math.log10(abs(value)))))
        if digits > cap:
            return f"{value:.{cap}f} ± {error:.2g}{unit}"
    return f"{value:.{digits}f} ± {error:.{digits}f}{unit}"


def _unconstrained(value, error) -> bool:
    """Whether ``error`` is infinite or larger than ``value``: the data say nothing of it."""
    return is_finite_number(value) and (error == math.inf or (is_finite_number(error) and error > abs(value)))


def _kinetics(kinetics: dict, truth: dict) -> str:
    """The 98 % times and the nucleation fraction from the data (§S.3), the flask's beside them."""
    if not kinetics.get("success"):
        return f"not determined: {kinetics.get('reason') or 'no fit'}"
    percent = f"{kinetics.get('fraction', 0.98):.0%}"

    def item(key, unit):
        text = _with_error(kinetics[key], kinetics[_error_key(key)], unit)
        return text + (f" (flask {_number(truth[key], unit)})" if key in truth else "")

    return (f"{percent} of the concentration at {item('t_concentration_s', ' s')}, of the yield at "
            f"{item('t_yield_s', ' s')}; nucleation fraction {item('nucleation_fraction', '')}")


def _error_key(key: str) -> str:
    """Key of a figure's error: t_yield_s -> t_yield_err_s, nucleation_fraction -> ..._err."""
    return key[:-2] + "_err_s" if key.endswith("_s") else key + "_err"


def _laws(kinetics: dict) -> str:
    """The paper's laws S3.3 and S3.2: how well they fit and their 98 % times."""
    parts = []
    for law, chi2, fits, key in (("S3.3", "buildup_chi2_reduced", "buildup_describes_data",
                                  "law_t_concentration_s"),
                                 ("S3.2", "second_order_chi2_reduced", "second_order_describes_data",
                                  "law_t_yield_s")):
        if not is_finite_number(kinetics.get(chi2)):  # too few frames, or the fit failed
            parts.append(f"{law} not fitted")
            continue
        verdict = "fits" if kinetics.get(fits) else "does not describe the data"
        value, error = kinetics.get(key), kinetics.get(_error_key(key))
        if _unconstrained(value, error):  # a law fitted to a run too short to reach 98 %
            when = f"98% time not constrained ({_number(value, ' s')} ± {_number(error, ' s')})"
        else:
            when = f"98% at {_with_error(value, error, ' s')}"
        parts.append(f"{law} reduced chi2 {_number(kinetics.get(chi2))} ({verdict}), {when}")
    return "; ".join(parts)


def _growth_exponent(summary: dict, truth: dict) -> str:
    """n of S4.15 with its interval, pairs and window (§S.5), the flask's effective n beside it."""
    n = summary.get("growth_exponent")
    if n is None or not math.isfinite(n):
        if summary.get("second_population") is False:
            return "no second population after piston B"
        return f"not determined: {summary.get('growth_exponent_reason') or 'no fit'}"
    low, high = summary.get("growth_exponent_interval") or (math.nan, math.nan)
    text = (f"n = {_with_error(n, summary.get('growth_exponent_err'), '')} "
            f"(interval {low:.2f} to {high:.2f}, {summary.get('growth_exponent_pairs')} pairs")
    start, end = summary.get("growth_exponent_window_after_b_s") or (None, None)
    if start is not None:
        text += f", {start:.0f} to {end:.0f} s after piston B"
    if summary.get("growth_exponent_pairs_from") == "count split":
        text += ", sets split by the crystal count before piston B"
    spread = summary.get("growth_exponent_model_spread")
    if spread:
        text += f", size-model spread {spread:.2f} included"
    text += ")"
    effective = truth.get("growth_exponent_effective")
    if isinstance(effective, float) and math.isfinite(effective):
        text += f" (flask effective {effective:.2f})"
    return text
